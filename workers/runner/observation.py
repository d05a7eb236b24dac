"""Each run's metrics and log lines: the one place that sees a job start and end.

A run logs at DEBUG when it starts and once when it ends: INFO when it completed, was
cancelled, put back by a shutdown or deferred by a rate limit, WARNING when it will be retried
or was lost to another worker, ERROR when it was dead-lettered. Each line carries the queue,
task, job id and try as record fields (see logs.py) and, on failure, the error's type and
message as error_text.shown has it: with payloads sealed, a task's own message (which may quote
its payload) stays with the sealed try error unless POSTROOM_LOG_ERROR_DETAILS=true. Never the
payload.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from config.queues import QueueName
from workers.error_text import shown
from workers.observe.masking import masked_text
from workers.observe.metrics import JobCounts
from workers.runtime import Runtime
from workers.store.outcome import RunOutcome
from workers.store.priority import OFFSET, is_waiting, priority_of

logger = logging.getLogger(__name__)


def due_ms(score: float) -> float:
    """When the job claimed with `score` could start: its enqueue time, or the time it waited
    for (a delay, a retry's backoff), which a ready score keeps once promoted into its band."""
    if is_waiting(score):  # a plain millisecond score (a stock arq client)
        return score
    return score + OFFSET[priority_of(score)]


@dataclass(slots=True)
class StartedRun:
    """A started run: what its end needs to log and count."""

    counts: JobCounts
    task: str
    started: float
    payload: Any = None  # its arguments: what masking hides is kept out of its error's text


class JobObserver:
    """Counts and logs the runs of one queue's jobs in a worker process."""

    def __init__(self, queue: QueueName, runtime: Runtime) -> None:
        self.queue = queue
        self.runtime = runtime
        self.metrics = runtime.metrics
        self.gauges = runtime.metrics.queue(queue)
        self.details = runtime.settings.error_details

    def fields(self, task: str, ctx: dict[str, Any]) -> dict[str, Any]:
        """A job line's record fields (built only for a line that is logged)."""
        return {
            "queue": self.queue.value,
            "task": task,
            "job_id": ctx["job_id"],
            "job_try": ctx["job_try"],
        }

    def describe(self, error: BaseException | None, payload: Any = None) -> str:
        """An error's message for a log line (error_text.shown), without what masking hides
        of the job's `payload` (masking.masked_text)."""
        if error is None:
            return ""
        return masked_text(shown(error, details=self.details), payload)

    def started(self, task: str, ctx: dict[str, Any], payload: Any = None) -> StartedRun:
        counts = self.metrics.task(self.queue, task)
        counts.started += 1
        counts.latency.observe(max(time.time() - due_ms(ctx["score"]) / 1000, 0.0))
        self.gauges.in_flight += 1
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("job started", extra=self.fields(task, ctx))
        return StartedRun(counts, task, time.perf_counter(), payload)

    def ended(self, run: StartedRun, ctx: dict[str, Any], outcome: RunOutcome) -> None:
        """Count and log a run's end."""
        counts = run.counts
        self.gauges.in_flight -= 1
        duration = time.perf_counter() - run.started
        label = outcome.kind
        if label == "completed":  # the common case first, its line only when logged
            counts.duration.observe(duration)
            counts.completed += 1
            if logger.isEnabledFor(logging.INFO):
                fields = self.fields(run.task, ctx)
                fields.update(outcome=label, duration=round(duration, 6))
                logger.info("job completed in %.3fs", duration, extra=fields)
            return
        # a recovered run's try was refunded: ctx["job_try"] is read now, not at the start
        fields = self.fields(run.task, ctx)
        if label == "lost":
            fields.update(outcome=label, duration=duration)
            logger.warning(
                "job left after %.3fs to the worker that took it over (this one lost its "
                "lease while it could not reach Redis)",
                duration,
                extra=fields,
            )
            return
        if label == "put_back":
            fields.update(outcome=label, duration=duration)
            logger.info("job put back after %.3fs (shutdown)", duration, extra=fields)
            return
        if label == "deferred":  # a rate limit held it back: no try spent, nothing failed
            counts.deferred += 1
            fields.update(outcome=label, duration=round(duration, 6))
            logger.info("job deferred after %.3fs (%s)", duration, outcome.detail, extra=fields)
            return
        counts.duration.observe(duration)
        fields.update(outcome=label, duration=round(duration, 6))
        if label == "cancelled":
            counts.cancelled += 1
            logger.info("job cancelled after %.3fs", duration, extra=fields)
            return
        error = outcome.exception
        fields["error_type"] = type(error).__name__
        counts.failed += 1
        if label == "retried":
            counts.retried += 1
            logger.warning(
                "job failed after %.3fs (%s: %s); %s",
                duration,
                fields["error_type"],
                self.describe(error, run.payload),
                outcome.detail,
                extra=fields,
            )
        else:
            counts.dead_lettered += 1
            logger.error(
                "job dead-lettered after %.3fs (%s: %s); %s",
                duration,
                fields["error_type"],
                self.describe(error, run.payload),
                outcome.detail,
                extra=fields,
            )
