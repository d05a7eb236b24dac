"""What anyone holding a job id can learn: its state, progress, tries, and result or error.

Everything is read in one round trip from the keys the runtime already keeps (arq's job,
result, in-progress and retry keys, the queue's score, postroom's progress and dead letter).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix, result_key_prefix
from arq.constants import retry_key_prefix as retry_prefix
from arq.jobs import JobResult, deserialize_job_raw, deserialize_result
from pydantic import BaseModel

from config.queues import QueueName
from workers.dead_letter import DeadLetter
from workers.keys import Keys
from workers.priority import Priority, is_waiting, priority_of
from workers.progress import Progress
from workers.serialization import loads


class JobState(StrEnum):
    QUEUED = "queued"  # ready, waiting for a free worker
    DEFERRED = "deferred"  # waiting for its `delay`/`at`
    RUNNING = "running"
    RETRYING = "retrying"  # a try failed; waiting out its backoff
    COMPLETE = "complete"
    FAILED = "failed"  # ended without a result and without a dead letter (arq gave up)
    DEAD_LETTERED = "dead-lettered"
    CANCELLED = "cancelled"


class JobInfo(BaseModel):
    job_id: str
    state: JobState
    queue: QueueName | None = None
    task: str | None = None
    priority: Priority | None = None
    tries: int = 0
    enqueued_at: datetime | None = None
    finished_at: datetime | None = None
    progress: Progress | None = None
    result: Any = None
    error: str | None = None


def queue_of(queue_key: str) -> QueueName | None:
    """The queue of an arq queue key (`<prefix>:queue:<name>`)."""
    name = queue_key.rpartition(":")[2]
    return QueueName(name) if name in QueueName._value2member_map_ else None


def _error_text(result: Any) -> str:
    if isinstance(result, dict) and "error" in result:
        return f"{result['error']}: {result.get('message', '')}".rstrip(": ")
    return str(result)


async def locate(redis: ArqRedis, keys: Keys, job_id: str) -> tuple[QueueName, float] | None:
    """The queue a job waits or runs in, and its score there."""
    async with redis.pipeline(transaction=False) as pipe:
        for queue in QueueName:
            pipe.zscore(keys.queue(queue), job_id)
        scores = await pipe.execute()
    for queue, score in zip(QueueName, scores, strict=True):
        if score is not None:
            return queue, score
    return None


async def read_job_info(redis: ArqRedis, keys: Keys, job_id: str) -> JobInfo | None:
    """The job's state now, or None if no trace of it is left (or it never existed)."""
    [info] = await read_job_infos(redis, keys, [job_id])
    return info


# The keys read per job, in the order `_job_info` takes their values.
_READS_PER_JOB = 6 + len(QueueName)


async def read_job_infos(
    redis: ArqRedis, keys: Keys, job_ids: Sequence[str]
) -> list[JobInfo | None]:
    """Many jobs' states in one round trip (a page of a listing), in the order asked."""
    if not job_ids:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.get(keys.dead_record(job_id))
            pipe.get(result_key_prefix + job_id)
            pipe.exists(in_progress_key_prefix + job_id)
            pipe.get(retry_prefix + job_id)
            pipe.get(job_key_prefix + job_id)
            pipe.get(keys.progress(job_id))
            for queue in QueueName:
                pipe.zscore(keys.queue(queue), job_id)
        replies = await pipe.execute()
    return [
        _job_info(job_id, replies[i * _READS_PER_JOB : (i + 1) * _READS_PER_JOB])
        for i, job_id in enumerate(job_ids)
    ]


def _job_info(job_id: str, replies: Sequence[Any]) -> JobInfo | None:
    dead, result, running, tries, job, progress_raw, *scores = replies
    progress = Progress.model_validate(loads(progress_raw)) if progress_raw else None
    if dead is not None:
        letter = DeadLetter.model_validate(loads(dead))
        return JobInfo(
            job_id=job_id,
            state=JobState.DEAD_LETTERED,
            queue=letter.queue,
            task=letter.task,
            priority=letter.priority,
            tries=letter.tries,
            enqueued_at=letter.enqueued_at,
            finished_at=letter.failed_at,
            progress=progress,
            error=f"{letter.errors[-1].type}: {letter.errors[-1].message}",
        )
    if result is not None:
        return _finished(job_id, result, progress)
    located = [(q, s) for q, s in zip(QueueName, scores, strict=True) if s is not None]
    if not located:
        return None
    queue, score = located[0]
    info = JobInfo(
        job_id=job_id,
        state=JobState.QUEUED,
        queue=queue,
        priority=priority_of(score),
        tries=int(tries or 0),
        progress=progress,
    )
    if job is not None:
        function, _, _, _, enqueue_ms = deserialize_job_raw(job, deserializer=loads)
        info.task, info.enqueued_at = function, datetime.fromtimestamp(enqueue_ms / 1000, UTC)
    if running:
        info.state = JobState.RUNNING
    elif is_waiting(score) and score > time.time() * 1000:
        info.state = JobState.RETRYING if info.tries else JobState.DEFERRED
    return info


def _result_state(stored: JobResult) -> JobState:
    if stored.success:
        return JobState.COMPLETE
    cancelled = isinstance(stored.result, dict) and stored.result.get("error") in {
        "CancelledError",
        "JobCancelledError",
    }
    return JobState.CANCELLED if cancelled else JobState.FAILED


def finished_state(raw: bytes) -> JobState:
    """Complete, failed or cancelled: the state a stored result tells."""
    return _result_state(deserialize_result(raw, deserializer=loads))


def _finished(job_id: str, raw: bytes, progress: Progress | None) -> JobInfo:
    stored = deserialize_result(raw, deserializer=loads)
    return JobInfo(
        job_id=job_id,
        state=_result_state(stored),
        queue=queue_of(stored.queue_name),
        task=stored.function,
        tries=stored.job_try,
        enqueued_at=stored.enqueue_time,
        finished_at=stored.finish_time,
        progress=progress,
        result=stored.result if stored.success else None,
        error=None if stored.success else _error_text(stored.result),
    )


async def read_job_payload(redis: ArqRedis, keys: Keys, job_id: str) -> dict[str, Any] | None:
    """A job's arguments, from its job data (waiting or running), its dead letter or its
    result, whichever is kept."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.get(job_key_prefix + job_id)
        pipe.get(keys.dead_record(job_id))
        pipe.get(result_key_prefix + job_id)
        job, dead, result = await pipe.execute()
    if job is not None:
        _, _, kwargs, _, _ = deserialize_job_raw(job, deserializer=loads)
        return dict(kwargs)
    if dead is not None:
        payload = DeadLetter.model_validate(loads(dead)).payload
        return payload if isinstance(payload, dict) else {"payload": payload}
    if result is not None:
        return dict(deserialize_result(result, deserializer=loads).kwargs)
    return None
