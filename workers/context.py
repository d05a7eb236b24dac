"""What a task receives as its first argument."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, TypedDict

from arq.connections import ArqRedis

from config.queues import QueueName
from config.settings import PostroomSettings
from workers.store.priority import Priority

if TYPE_CHECKING:
    from workers.runtime import Runtime
    from workers.store.progress import ProgressReporter

# What a task calls to wait for a start slot under a named rate limit (runner/throttle.py).
ThrottleFunction = Callable[[str], Awaitable[None]]


class JobContext(TypedDict):
    """arq's per-job ctx plus postroom's: where the job runs and which try this is."""

    redis: ArqRedis
    job_id: str
    job_try: int
    enqueue_time: datetime
    score: int
    # The job's priority, as it was enqueued (or retried) with: for follow-up jobs of its own.
    priority: Priority
    queue: QueueName
    task: str
    settings: PostroomSettings
    runtime: Runtime
    # `await ctx["progress"](percentage=..., step=..., current_step=..., total_steps=..., data=...)`
    progress: ProgressReporter
    # `await ctx["throttle"]("sms")`: wait for a start slot under the named rate limit
    # (POSTROOM_RATE_LIMITS__SMS), or be deferred to it; at once when the name has no limit.
    throttle: ThrottleFunction


# The ctx keys of postroom's own bookkeeping (not for tasks): a run's lease token
# (worker_scripts.CLAIM), which fences its writes; the flag set when its worker learnt that
# another worker took the job over; what the claim found: the lease token of the job's run
# that never finished (its worker died or lost its lease), and how many such runs it had.
LEASE_TOKEN = "lease_token"
LEASE_LOST = "lease_lost"
LOST_BY = "lost_by"
RECOVERIES = "recoveries"
