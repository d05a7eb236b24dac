"""Writing jobs into arq's queues: one script call per job, many per round trip.

Writing a job that is ready now also leaves a wake token in its queue's wake list (at most
one), which an idle worker waits on with BLPOP: it starts the job at once instead of at its
next poll tick (see QueueWorker._wait).

Redis replicates asynchronously: a primary that dies right after a write may take it along.
With `replicas`, the write and a WAIT share one connection (WAIT counts the replicas that
have every write of its own connection), so an answered enqueue is on that many replicas.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from arq.jobs import SerializationError, serialize_job
from redis.asyncio import Redis
from redis.crc import key_slot

from workers.errors import NotReplicatedError
from workers.store.keys import QueueKeys
from workers.store.priority import Priority, job_score
from workers.store.scripts import LuaScript, RedisClient, run_batch
from workers.store.serialization import dumps

# A job id is taken while its job or its result exists (arq's own rule); taking it is one
# atomic step instead of arq's WATCH/EXISTS/MULTI, so a bulk enqueue can pipeline it. `once`,
# if given, is a marker (a cron tick) that outlives the job and result. A ready job's score is
# negative (see priority.py). Returns 1 if written, 0 if the id (or the marker) was taken.
# The other scripts that queue a job (a checkpointed chunk below, a dead letter's retry)
# start with this function (lua/enqueue_function.lua).


# KEYS: job, result, queue, its wake list, and optionally the "once" marker. ARGV: payload,
# its TTL, score, id, the marker's TTL.
ENQUEUE = LuaScript.file("enqueue_function", "enqueue")

# Jobs and their checkpoint in one atomic step: each job as ENQUEUE, then the checkpoint set.
# KEYS: the checkpoint, then each job's ENQUEUE keys (4, or 5 with a marker). ARGV: the
# checkpoint's value and TTL, then 5 per job: ENQUEUE's, the marker's TTL '' when it has none.
# Returns each job's 1 or 0.
ENQUEUE_WITH_CHECKPOINT = LuaScript.file("enqueue_function", "enqueue_with_checkpoint")

# How long a queued job's data outlives its start time: far beyond any retry schedule, so
# that a job waiting behind a long outage is still there (arq's default is one day).
JOB_TTL_EXTRA_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class NewJob:
    """One job to write: arq's payload format, so a stock arq worker could read it too."""

    job_id: str
    keys: QueueKeys  # its queue's
    task: str
    kwargs: dict[str, Any]
    due_ms: int
    enqueue_ms: int
    priority: Priority = Priority.NORMAL
    once_key: str | None = None  # one of `keys` (its queue's hash tag)
    once_ttl_ms: int = 0
    # The W3C trace context of the enqueue's span (`traceparent`, `tracestate`) when tracing
    # is on: the record's own field `tc`, outside the arguments (job_record.py).
    trace: dict[str, str] | None = None

    def payload(self) -> bytes:
        if self.trace is None:
            return serialize_job(
                self.task, (), self.kwargs, None, self.enqueue_ms, serializer=dumps
            )
        record: dict[str, Any] = {
            "t": None,
            "f": self.task,
            "a": [],
            "k": self.kwargs,
            "et": self.enqueue_ms,
            "tc": self.trace,
        }
        try:
            return dumps(record)
        except Exception as exc:  # as arq's serialize_job
            raise SerializationError(f"unable to serialize job {self.task!r}") from exc

    def ttl_ms(self) -> int:
        return max(self.due_ms - self.enqueue_ms, 0) + JOB_TTL_EXTRA_MS

    def score(self) -> float:
        return job_score(self.priority, self.due_ms, self.enqueue_ms)


def enqueue_call(job: NewJob) -> tuple[list[str], list[Any]]:
    """ENQUEUE's KEYS and ARGV for `job`."""
    keys = [job.keys.job(job.job_id), job.keys.result(job.job_id), job.keys.queue, job.keys.wake]
    args: list[Any] = [job.payload(), job.ttl_ms(), repr(job.score()), job.job_id]
    if job.once_key is not None:
        keys.append(job.once_key)
        args.append(job.once_ttl_ms)
    return keys, args


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A key set in the same atomic step as a bulk enqueue: "these jobs are written".

    A task that fans out in chunks (batch-send) records its progress this way, so a retry
    resumes after the last chunk written, never re-sending one whose children already ran and
    whose results were since deleted.
    """

    key: str
    value: str
    ttl_ms: int

    def check_slot(self, jobs: Sequence[NewJob]) -> None:
        """A script stays within one Redis Cluster slot: the jobs' queue's, which must hold
        the checkpoint too (keys.QueueKeys.checkpoint)."""
        slot = key_slot(self.key.encode())
        for job in jobs:
            if key_slot(job.keys.queue.encode()) != slot:
                raise ValueError(
                    f"checkpoint {self.key!r} is not under the hash tag of queue "
                    f"{job.keys.queue_name.value} ({job.keys.tag}): a checkpoint and its jobs "
                    "are written by one script, so they must be keys of one queue "
                    "(use keys.QueueKeys.checkpoint)"
                )


async def write_jobs(
    redis: RedisClient,
    jobs: Sequence[NewJob],
    *,
    checkpoint: Checkpoint | None = None,
    replicas: int = 0,
    replica_timeout_ms: int = 1000,
) -> list[bool]:
    """Write `jobs` in one round trip; each answer says whether that job was new.

    With a `checkpoint`, the jobs and the checkpoint are one script call
    (ENQUEUE_WITH_CHECKPOINT): atomic, and so all of the checkpoint's queue's slot (ValueError
    otherwise), which runs on a Cluster too.
    With `replicas`, it returns only once that many replicas have the writes, and raises
    NotReplicatedError when they do not within `replica_timeout_ms` (one server only).
    """
    if not jobs:
        return []
    if replicas:
        if not isinstance(redis, Redis):  # a Cluster: WAIT would go to any node
            raise ValueError("POSTROOM_ENQUEUE_WAIT_REPLICAS needs one server or Sentinel")
        async with redis.client() as connection:  # one connection: see the module's doc
            created = await write_jobs(connection, jobs, checkpoint=checkpoint)
            confirmed = int(await connection.execute_command("WAIT", replicas, replica_timeout_ms))  # type: ignore[no-untyped-call]
        if confirmed < replicas:
            ids = [job.job_id for job in jobs]
            raise NotReplicatedError(ids, replicas, confirmed, replica_timeout_ms)
        return created
    if checkpoint is None:
        if len(jobs) == 1:
            return [bool(await ENQUEUE(redis, *enqueue_call(jobs[0])))]
        return [
            bool(reply)
            for reply in await run_batch(redis, ENQUEUE, [enqueue_call(j) for j in jobs])
        ]
    checkpoint.check_slot(jobs)
    keys: list[str] = [checkpoint.key]
    args: list[Any] = [checkpoint.value, checkpoint.ttl_ms]
    for job in jobs:
        job_keys, job_args = enqueue_call(job)
        keys += job_keys
        args += job_args if job.once_key is not None else [*job_args, ""]
    return [bool(reply) for reply in await ENQUEUE_WITH_CHECKPOINT(redis, keys, args)]
