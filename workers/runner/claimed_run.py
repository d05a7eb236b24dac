"""A claimed job: what the claim script read for its run, and the writing of its end.

A run's end is one call of the queue's FINISH script (worker_scripts.finish_script), built
from the run's `RunOutcome`: the result, the retry's score, the try's error, the dead letter
and the counters, fenced by the run's lease token.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, NamedTuple

from arq.jobs import serialize_result
from arq.utils import timestamp_ms

from config.queues import QueueName
from workers.connection.transient import is_transient
from workers.store.dead_letter import sealed_error
from workers.store.keys import QueueKeys
from workers.store.outcome import RunOutcome
from workers.store.scripts import ScriptBatcher
from workers.store.sealing import PayloadSealer, SealError
from workers.store.serialization import UNDELIVERABLE_TASK, dumps

logger = logging.getLogger(__name__)

# The counters each outcome moves (see QueueStats), space separated as finish_script takes
# them: `failed` counts every failed try, `deferred` every run a rate limit held back. A run
# put back by a shutdown moves none.
COUNTERS = {
    "completed": "completed",
    "retried": "retried failed",
    "dead_lettered": "dead_lettered failed",
    "cancelled": "cancelled",
    "put_back": "",
    "deferred": "deferred",
}
# What FINISH does with the job, by outcome: end it (with a result), end it as a dead
# letter, schedule its next try, defer it with its try refunded, or put it back with its try
# refunded.
WHAT = {
    "completed": "finish",
    "cancelled": "finish",
    "dead_lettered": "dead",
    "retried": "retry",
    "put_back": "release",
    "deferred": "defer",
}


class Claim(NamedTuple):
    """One claimed job, with what the claim script read for its run."""

    job_id: str
    score: int
    payload: bytes | None  # None: the job's data expired
    job_try: int
    lost_by: str | None  # the lease token of this job's run that never finished, if one did
    token: str  # this run's lease token: it fences every write the run makes
    recoveries: int  # how many of the job's runs never finished
    partition: int = 0  # the queue's partition it was claimed from


class Run(NamedTuple):
    """A claimed job decoded: its task (or serialization.UNDELIVERABLE_TASK) and arguments."""

    name: str
    kwargs: dict[str, Any]  # opened
    job_try: int
    enqueue_ms: int
    stored: Any = None  # the kwargs as stored (sealed), kept so in its result and dead letter
    trace: dict[str, str] | None = None  # the enqueue's trace context (job_record.py)


def decode(
    claim: Claim,
    decoder: Callable[[bytes], dict[str, Any]],
    sealer: PayloadSealer,
    queue: QueueName,
) -> Run | None:
    """The claimed job's run; None when its record expired (it waited past its expiry).

    The decoder (serialization.job_decoder) turns a malformed record, or one naming no task
    of the queue, into a run of UNDELIVERABLE_TASK, which dead-letters it with the reason;
    sealed kwargs that do not open (tampered, another job's) become one too, as unsealable."""
    if claim.payload is None:
        return None
    record = decoder(claim.payload)
    job_try = claim.job_try
    if record["t"] and record["t"] > job_try:  # arq's `_job_try` enqueue option
        job_try = record["t"]
    stored, trace = record["k"], record.get("tc")
    if record["f"] == UNDELIVERABLE_TASK:
        return Run(record["f"], stored, job_try, record["et"], stored, trace)
    try:
        kwargs = sealer.open(stored, claim.job_id, queue, "kwargs")
        if not isinstance(kwargs, dict):
            raise SealError(f"the sealed kwargs of job {claim.job_id!r} are not an object")
    except SealError as exc:
        unsealable = {
            "task": record["f"],
            "reason": str(exc),
            "payload": stored,
            "malformed": False,
            "unsealable": True,
        }
        return Run(UNDELIVERABLE_TASK, unsealable, job_try, record["et"], unsealable, trace)
    return Run(record["f"], kwargs, job_try, record["et"], stored, trace)


class EndWriter:
    """Writes runs' ends, batched into calls of the queue's FINISH script."""

    def __init__(
        self, keys: QueueKeys, finish: ScriptBatcher, keep_result_s: float, sealer: PayloadSealer
    ) -> None:
        self.keys = keys
        self.finish = finish
        self.keep_result_ms = max(int(keep_result_s * 1000), 0)
        self.sealer = sealer

    def call(
        self, claim: Claim, run: Run | None, outcome: RunOutcome, start_ms: int
    ) -> tuple[Any, ...]:
        """The FINISH call of a run's end. A retry waits out of its band and keeps its
        priority, and its error is kept; a dead letter is stored with every try's error; the
        result joins the queue's result index; the counters move; the job leaves the active
        set."""
        now = timestamp_ms()
        result = b""
        if outcome.ended and self.keep_result_ms:
            result = self._result(claim, run, outcome, start_ms, now)
        # The retry's score: its due time, in the waiting band (see priority.py).
        incr = int(outcome.retry_in_s * 1000) + (now - claim.score) if outcome.retry_in_s else 0
        error = b""
        if outcome.error is not None:
            error = dumps(
                sealed_error(self.sealer, outcome.error, claim.job_id, self.keys.queue_name)
            )
        return (
            claim.job_id,
            claim.token,
            WHAT[outcome.kind],
            result,
            max(self.keep_result_ms, 1),
            incr,
            now,
            COUNTERS[outcome.kind],
            error,
            letter_head(outcome),
        )

    def _result(
        self, claim: Claim, run: Run | None, outcome: RunOutcome, start_ms: int, now: int
    ) -> bytes:
        """The result record, in arq's encoding (the client reads it with arq's decoder)."""
        name = "<unknown>" if run is None else run.name
        success = outcome.kind == "completed"
        result = outcome.result if success else outcome.exception
        if outcome.kind != "cancelled":  # a cancel's JobCancelledError says it was one
            result = self.sealer.seal(result, claim.job_id, self.keys.queue_name, "result")
        data: bytes | None = serialize_result(
            function=name,
            args=(),
            kwargs={} if run is None else run.stored,
            job_try=claim.job_try if run is None else run.job_try,
            enqueue_time_ms=0 if run is None else run.enqueue_ms,
            success=success,
            result=result,
            start_ms=start_ms,
            finished_ms=now,
            ref=f"{claim.job_id}:{name}",
            queue_name=self.keys.queue_name.value,
            job_id=claim.job_id,
            serializer=dumps,
        )
        return data or b""

    async def write(self, claim: Claim, call: tuple[Any, ...]) -> None:
        """Write a run's end, however long Redis is away: repeated with backoff while the
        errors are transient (a restart, a failover), so a run is never left without its
        outcome. Fenced by the run's lease token, a repeat cannot write it twice, nor over
        another worker's run of the job; when this worker stops first, the job's lease
        lapses and another worker runs it again."""
        delay, failures = 0.05, 0
        while True:
            try:
                refused = await asyncio.shield(self.finish.submit(call))
            except Exception as exc:
                if not is_transient(exc):
                    raise
                failures += 1
                if failures == 1:
                    logger.warning(
                        "job %s: its end could not be written (%s: %s); retrying until Redis "
                        "answers",
                        claim.job_id,
                        type(exc).__name__,
                        exc,
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            if claim.job_id.encode() in refused:
                # After a failure the first call may have been written with its reply lost.
                logger.log(
                    logging.INFO if failures else logging.WARNING,
                    "job %s: its end was not written: %s",
                    claim.job_id,
                    "written before, or the job was taken over meanwhile"
                    if failures
                    else "another worker took the job over (this run's lease had lapsed)",
                )
            elif failures:
                logger.info("job %s: its end was written after %d failures", claim.job_id, failures)
            return


def letter_head(outcome: RunOutcome) -> bytes:
    """A dead letter's JSON up to its list of errors, which FINISH completes from the try
    errors it keeps (so a letter is written in the same script as the run's end)."""
    if outcome.letter is None:
        return b""
    return outcome.letter.model_dump_json(exclude={"errors"}).encode()[:-1] + b',"errors":['
