"""What anyone holding a job id can learn: its state, progress, tries, and result or error.

Everything is read in one round trip from the keys the runtime already keeps (the job's
payload, result, lease and try counter, its score in the queue, its progress and dead letter;
see keys.py).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson
from arq.connections import ArqRedis
from arq.jobs import JobResult, SerializationError, deserialize_result
from pydantic import BaseModel, Field, ValidationError

from config.queues import QueueName
from workers.store.dead_letter import opened_error, problem_of, read_dead_letter
from workers.store.job_record import MalformedJobRecord, malformed_payload, parse_job_record
from workers.store.keys import Keys, QueueKeys
from workers.store.priority import Priority, is_waiting, priority_of
from workers.store.progress import Progress
from workers.store.scripts import RedisClient
from workers.store.sealing import NO_SEALER, PayloadSealer, SealError
from workers.store.serialization import loads


class JobState(StrEnum):
    QUEUED = "queued"  # ready, waiting for a free worker
    DEFERRED = "deferred"  # waiting for its `delay`/`at`
    RUNNING = "running"
    RETRYING = "retrying"  # a try failed; waiting out its backoff
    COMPLETE = "complete"
    FAILED = "failed"  # ended without a result or dead letter: only records of older versions
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
    # A failed job's arguments, opened: what the views mask out of its error (masked_job).
    payload: Any = Field(default=None, exclude=True, repr=False)
    # Why a stored record of the job cannot be read (its job record, result, dead letter or
    # progress); what that record would have told is left unset. A queued job with a
    # malformed job record is dead-lettered as "malformed" when a worker claims it.
    malformed: str | None = None


def _error_text(result: Any) -> str:
    if isinstance(result, dict) and "error" in result:
        return f"{result['error']}: {result.get('message', '')}".rstrip(": ")
    return str(result)


async def locate(redis: RedisClient, keys: Keys, job_id: str) -> tuple[QueueKeys, float] | None:
    """The queue (partition) a job waits or runs in, and its score there."""
    partitions = keys.every_partition()
    async with redis.pipeline(transaction=False) as pipe:
        for qk in partitions:
            pipe.zscore(qk.queue, job_id)
        scores = await pipe.execute()
    for qk, score in zip(partitions, scores, strict=True):
        if score is not None:
            return qk, score
    return None


async def read_job_info(
    redis: ArqRedis,
    keys: Keys,
    job_id: str,
    queue: QueueName | None = None,
    sealer: PayloadSealer = NO_SEALER,
) -> JobInfo | None:
    """The job's state now, or None if no trace of it is left (or it never existed); its
    sealed progress, result and error opened with `sealer` (noted as sealed without the key)."""
    [info] = await read_job_infos(redis, keys, [job_id], queue, sealer)
    return info


# The keys read per job and queue, in the order `_job_info` takes their values.
_READS = 7


async def read_job_infos(
    redis: ArqRedis,
    keys: Keys,
    job_ids: Sequence[str],
    queue: QueueName | None = None,
    sealer: PayloadSealer = NO_SEALER,
) -> list[JobInfo | None]:
    """Many jobs' states in one round trip (a page of a listing), in the order asked.

    Job ids are unique per queue, so without a `queue` every queue (and partition) is looked
    in, and the first (in `QueueName` order) that holds a trace of the job answers.
    """
    if not job_ids:
        return []
    queues = keys.every_partition(QueueName if queue is None else [queue])
    async with redis.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            for qk in queues:
                pipe.get(qk.dead_record(job_id))
                pipe.get(qk.result(job_id))
                pipe.zscore(qk.queue, job_id)
                pipe.zscore(qk.active, job_id)  # the end of its run's lease
                pipe.get(qk.tries(job_id))
                pipe.get(qk.job(job_id))
                pipe.get(qk.progress(job_id))
        replies = await pipe.execute()
    now_ms = time.time() * 1000
    per_job = _READS * len(queues)
    infos: list[JobInfo | None] = []
    for i, job_id in enumerate(job_ids):
        found = None
        for j, qk in enumerate(queues):
            at = i * per_job + j * _READS
            found = _job_info(job_id, qk.queue_name, replies[at : at + _READS], sealer, now_ms)
            if found is not None:
                break
        infos.append(found)
    return infos


def _progress(
    raw: bytes | None, job_id: str, queue: QueueName, sealer: PayloadSealer
) -> tuple[Progress | None, str | None]:
    """The job's last progress, or why its record cannot be read (or opened)."""
    if not raw:
        return None, None
    try:
        return Progress.model_validate(sealer.open(loads(raw), job_id, queue, "progress")), None
    except (orjson.JSONDecodeError, ValidationError) as exc:
        return None, f"malformed progress record: {problem_of(exc)}"
    except SealError as exc:
        return None, f"unreadable progress record: {exc}"


def _job_info(
    job_id: str, queue: QueueName, replies: Sequence[Any], sealer: PayloadSealer, now_ms: float
) -> JobInfo | None:
    dead, result, score, lease_end, tries, job, progress_raw = replies
    if dead is None and result is None and score is None:
        return None
    progress, unreadable = _progress(progress_raw, job_id, queue, sealer)
    if dead is not None:
        letter = read_dead_letter(job_id, dead, queue)
        last = opened_error(sealer, letter.errors[-1], job_id, queue) if letter.errors else None
        return JobInfo(
            job_id=job_id,
            state=JobState.DEAD_LETTERED,
            queue=letter.queue,
            task=letter.task,
            priority=letter.priority,
            tries=letter.tries,
            enqueued_at=letter.enqueued_at,
            finished_at=letter.failed_at or None,
            progress=progress,
            error=letter.malformed or (last and f"{last.type}: {last.message}"),
            malformed=letter.malformed or unreadable,
            payload=sealer.shown(letter.payload, job_id, letter.queue, "kwargs") if last else None,
        )
    if result is not None:
        info = _finished(job_id, queue, result, progress, sealer)
        info.malformed = info.malformed or unreadable
        return info
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
    if lease_end is not None and lease_end > now_ms:  # a run holds a live lease
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


def _finished(
    job_id: str, queue: QueueName, raw: bytes, progress: Progress | None, sealer: PayloadSealer
) -> JobInfo:
    try:
        stored = deserialize_result(raw, deserializer=loads)
        stored.result = sealer.shown(stored.result, job_id, queue, "result")
        return JobInfo(
            job_id=job_id,
            state=_result_state(stored),
            queue=queue,
            task=stored.function,
            tries=stored.job_try,
            enqueued_at=stored.enqueue_time,
            finished_at=stored.finish_time,
            progress=progress,
            result=stored.result if stored.success else None,
            error=None if stored.success else _error_text(stored.result),
            payload=None
            if stored.success
            else sealer.shown(stored.kwargs, job_id, queue, "kwargs"),
        )
    except _UNREADABLE as exc:
        why = f"malformed result record: {exc.__cause__ or exc}"
        return JobInfo(
            job_id=job_id,
            state=JobState.MALFORMED,
            queue=queue,
            progress=progress,
            error=why,
            malformed=why,
        )


async def read_job_payload(
    redis: ArqRedis,
    keys: Keys,
    job_id: str,
    queue: QueueName | None = None,
    sealer: PayloadSealer = NO_SEALER,
) -> dict[str, Any] | None:
    """A job's arguments, from its job data (waiting or running), its dead letter or its
    result, whichever is kept (in `queue`, or the first queue that keeps one), opened with
    `sealer` (without the key: `{"sealed": why}`)."""
    found = await _stored_payload(redis, keys, job_id, queue)
    if found is None:
        return None
    payload, q = found
    opened = sealer.shown(payload, job_id, q, "kwargs")
    if isinstance(opened, str):  # it stayed sealed: say why
        return {"sealed": opened}
    return opened if isinstance(opened, dict) else {"payload": opened}


async def _stored_payload(
    redis: ArqRedis, keys: Keys, job_id: str, queue: QueueName | None
) -> tuple[Any, QueueName] | None:
    queues = keys.every_partition(QueueName if queue is None else [queue])
    async with redis.pipeline(transaction=False) as pipe:
        for qk in queues:
            pipe.get(qk.job(job_id))
            pipe.get(qk.dead_record(job_id))
            pipe.get(qk.result(job_id))
        replies = await pipe.execute()
    for at, qk in enumerate(queues):
        q = qk.queue_name
        job, dead, result = replies[3 * at : 3 * at + 3]
        if job is not None:
            try:
                return parse_job_record(job).kwargs, q
            except MalformedJobRecord:
                return malformed_payload(job), q  # what its dead letter will keep
        if dead is not None:
            return read_dead_letter(job_id, dead, q).payload, q
        if result is not None:
            try:
                kwargs = deserialize_result(result, deserializer=loads).kwargs
                return (dict(kwargs) if isinstance(kwargs, dict) else {"payload": kwargs}), q
            except SerializationError:
                return malformed_payload(result), q
    return None
