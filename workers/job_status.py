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

import orjson
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix, result_key_prefix
from arq.constants import retry_key_prefix as retry_prefix
from arq.jobs import JobResult, SerializationError, deserialize_result
from pydantic import BaseModel, ValidationError

from config.queues import QueueName
from workers.dead_letter import problem_of, read_dead_letter
from workers.job_record import MalformedJobRecord, malformed_payload, parse_job_record
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
    MALFORMED = "malformed"  # it ended, but its stored result cannot be read (see `malformed`)


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
    # Why a stored record of the job cannot be read (its job record, result, dead letter or
    # progress); what that record would have told is left unset. A queued job with a
    # malformed job record is dead-lettered as "malformed" when a worker claims it.
    malformed: str | None = None


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


def _progress(raw: bytes | None) -> tuple[Progress | None, str | None]:
    """The job's last progress, or why its record cannot be read."""
    if not raw:
        return None, None
    try:
        return Progress.model_validate(loads(raw)), None
    except (orjson.JSONDecodeError, ValidationError) as exc:
        return None, f"malformed progress record: {problem_of(exc)}"


def _job_info(job_id: str, replies: Sequence[Any]) -> JobInfo | None:
    dead, result, running, tries, job, progress_raw, *scores = replies
    progress, unreadable = _progress(progress_raw)
    located = [(q, s) for q, s in zip(QueueName, scores, strict=True) if s is not None]
    if dead is not None:
        letter = read_dead_letter(job_id, dead, located[0][0] if located else QueueName.DELIVERY)
        last = letter.errors[-1] if letter.errors else None
        return JobInfo(
            job_id=job_id,
            state=JobState.DEAD_LETTERED,
            queue=None if letter.malformed and not located else letter.queue,
            task=letter.task,
            priority=letter.priority,
            tries=letter.tries,
            enqueued_at=letter.enqueued_at,
            finished_at=letter.failed_at or None,
            progress=progress,
            error=letter.malformed or (last and f"{last.type}: {last.message}"),
            malformed=letter.malformed or unreadable,
        )
    if result is not None:
        info = _finished(job_id, result, progress)
        info.malformed = info.malformed or unreadable
        return info
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
        malformed=unreadable,
    )
    if job is not None:
        try:
            record = parse_job_record(job)
        except MalformedJobRecord as exc:
            info.malformed = str(exc)
        else:
            info.task = record.task
            info.enqueued_at = datetime.fromtimestamp(record.enqueue_ms / 1000, UTC)
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


# What a result record of the wrong shape raises, in arq's decoding or in JobInfo's fields.
_UNREADABLE = (SerializationError, ValueError, TypeError, AttributeError)


def finished_state(raw: bytes) -> JobState:
    """Complete, failed or cancelled: the state a stored result tells (malformed if none)."""
    try:
        return _result_state(deserialize_result(raw, deserializer=loads))
    except _UNREADABLE:
        return JobState.MALFORMED


def _finished(job_id: str, raw: bytes, progress: Progress | None) -> JobInfo:
    try:
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
    except _UNREADABLE as exc:
        why = f"malformed result record: {exc.__cause__ or exc}"
        return JobInfo(
            job_id=job_id, state=JobState.MALFORMED, progress=progress, error=why, malformed=why
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
        try:
            return parse_job_record(job).kwargs
        except MalformedJobRecord:
            return malformed_payload(job)  # what its dead letter will keep
    if dead is not None:
        payload = read_dead_letter(job_id, dead, QueueName.DELIVERY).payload
        return payload if isinstance(payload, dict) else {"payload": payload}
    if result is not None:
        try:
            kwargs = deserialize_result(result, deserializer=loads).kwargs
            return dict(kwargs) if isinstance(kwargs, dict) else {"payload": kwargs}
        except SerializationError:
            return malformed_payload(result)
    return None
