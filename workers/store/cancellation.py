"""Cancelling a job by id: a waiting job is removed at once, a running one is stopped.

A waiting job is taken out of its queue atomically with the claim script's view of it (both
are scripts), so it can never start afterwards. A running job is listed for its worker, whose
supervisor cancels the task within about a second (Supervisor._maintain); arq then stores it
as aborted, and postroom does not retry it.
"""

from __future__ import annotations

import contextlib
import time
from typing import Literal

from arq.jobs import serialize_result

from workers.errors import PostroomError
from workers.store.job_record import JobRecord, MalformedJobRecord, parse_job_record
from workers.store.job_status import locate
from workers.store.keys import Keys
from workers.store.scripts import LuaScript, RedisClient
from workers.store.serialization import dumps

CancelOutcome = Literal["cancelled", "stopping", "not-found"]

# How long a cancel request for a running job waits for its worker to act on it.
REQUEST_TTL_MS = 60_000

# KEYS: queue, active set, job, try counter, result, cancel requests, stats, result index (all of
# one queue: keys.QueueKeys).
# ARGV: job id, the cancelled result, its ttl ms, now ms.
_CANCEL = LuaScript.file("clock", "cancel")


class JobCancelledError(PostroomError):
    """Stored as the result of a job cancelled before it started."""


async def cancel_job(
    redis: RedisClient, keys: Keys, job_id: str, keep_result: float
) -> CancelOutcome:
    """Cancel a waiting or running job; a cancelled job is never retried."""
    located = await locate(redis, keys, job_id)
    if located is None:
        return "not-found"
    qk, _ = located
    queue = qk.queue_name
    raw = await redis.get(qk.job(job_id))
    record = JobRecord("<unknown>", [], {}, 0, 0)
    if raw is not None:
        with contextlib.suppress(MalformedJobRecord):  # a malformed job is cancelled too
            record = parse_job_record(raw)
    function, args, kwargs, tries, enqueue_ms, _ = record
    now = int(time.time() * 1000)
    result = serialize_result(
        function,
        tuple(args),
        kwargs,
        tries or 0,
        enqueue_ms,
        False,
        JobCancelledError("cancelled before it started"),
        now,
        now,
        f"{job_id}:{function}",
        queue.value,
        job_id,
        serializer=dumps,
    )
    answer = await _CANCEL(
        redis,
        [
            qk.queue,
            qk.active,
            qk.job(job_id),
            qk.tries(job_id),
            qk.result(job_id),
            qk.cancel_requests,
            qk.stats,
            qk.results,
        ],
        [job_id, result or b"", max(int(keep_result * 1000), 1), now],
    )
    return {0: "not-found", 1: "cancelled", 2: "stopping"}[int(answer)]  # type: ignore[return-value]
