"""How a run ended, as one value: decided once (execution.py), then logged and counted
(observation.py) and written with all its bookkeeping in one script call (worker_scripts.FINISH).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

from config.queues import QueueName
from workers.store.dead_letter import DeadLetter, Reason, TryError, try_error
from workers.store.priority import priority_of

# "put_back": stopped by a shutdown, back in its queue with its try refunded; "deferred": held
# back by a rate limit (its own, or its provider's 429), due again later with its try
# refunded; "lost": its worker lost the lease and another worker runs the job now, so nothing
# of this run is written.
Outcome = Literal[
    "completed", "retried", "dead_lettered", "cancelled", "put_back", "deferred", "lost"
]


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """A run's end and everything its writing needs."""

    kind: Outcome
    detail: str = ""  # what the end line adds: the next try, a dead letter's reason
    result: Any = None  # "completed": the task's return value
    exception: BaseException | None = None  # what ended it, stored as its failed result
    retry_in_s: float = 0.0  # "retried", "deferred": how long until it runs again
    error: TryError | None = None  # the failed try's, kept with the job or its dead letter
    letter: DeadLetter | None = None  # "dead_lettered": the letter, FINISH adds its errors

    @property
    def ended(self) -> bool:
        """Whether the job is done (a result is stored) rather than due to run again."""
        return self.kind in ("completed", "dead_lettered", "cancelled")


COMPLETED = RunOutcome("completed")
PUT_BACK = RunOutcome("put_back")
LOST = RunOutcome("lost")


def deferred(delay_s: float, why: str, exc: BaseException | None = None) -> RunOutcome:
    """A run a rate limit held back: due again in `delay_s` seconds, its try not spent."""
    delay_s = max(delay_s, 0.001)
    detail = f"{why}; again in {delay_s:.2f}s"
    return RunOutcome("deferred", detail, exception=exc, retry_in_s=delay_s)


def completed(result: Any) -> RunOutcome:
    return COMPLETED if result is None else RunOutcome("completed", result=result)


def dead_lettered(
    *,
    job_id: str,
    queue: QueueName,
    task: str | None,
    payload: Any,
    reason: Reason,
    job_try: int,
    enqueued_at: float | None,
    score: int,
    exc: BaseException,
) -> RunOutcome:
    """A run's end as a dead letter (its errors: the try errors kept so far and this one's,
    which FINISH adds)."""
    letter = DeadLetter(
        job_id=job_id,
        task=task,
        queue=queue,
        payload=payload,
        reason=reason,
        tries=job_try,
        errors=[],
        enqueued_at=enqueued_at,
        failed_at=time.time(),
        priority=priority_of(score),
    )
    return RunOutcome(
        "dead_lettered",
        f"reason {reason}, after {job_try} tries",
        exception=exc,
        error=try_error(job_try, exc),
        letter=letter,
    )
