"""The typed client a web app enqueues through: validated payloads, idempotent ids, bulk sends."""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from arq.connections import ArqRedis
from arq.jobs import SerializationError, deserialize_result
from redis.exceptions import RedisError

from config.queues import QueueName
from config.settings import PostroomSettings, load_settings
from workers.connection.cluster_connection import connect_cluster
from workers.connection.connections import create_pool, describe, redis_settings
from workers.connection.redis_refusal import refusal
from workers.connection.refusal_grace import named_refusal
from workers.errors import PostroomError
from workers.observe.trace_gate import tracing_for
from workers.registry import JobRequest, Task, TaskRegistry, registry
from workers.store.cancellation import CancelOutcome, cancel_job
from workers.store.dead_letter import DeadLetterStore
from workers.store.enqueue import Checkpoint, NewJob, write_jobs
from workers.store.enqueue_batch import EnqueueBatcher
from workers.store.job_listing import CleanState, JobPage, clean_jobs, list_jobs
from workers.store.job_status import JobInfo, JobState, read_job_info, read_job_payload
from workers.store.keys import Keys, QueueKeys
from workers.store.priority import Priority
from workers.store.queue_stats import QueueStats, read_queue_stats, read_queues_stats
from workers.store.sealing import PayloadSealer
from workers.store.serialization import dumps, loads
from workers.store.worker_health import live_workers

if TYPE_CHECKING:  # only the worker side counts enqueues: the client need not load prometheus
    from workers.observe.metrics import EnqueueMetrics
    from workers.observe.tracing import Tracing

R = TypeVar("R")


class JobFailedError(PostroomError):
    """Raised by `JobHandle.result()` when the job failed; carries the error it stored."""

    def __init__(self, job_id: str, error: Any) -> None:
        self.job_id = job_id
        self.error = error
        super().__init__(f"job {job_id} failed: {error}")


@dataclass(frozen=True)
class JobHandle(Generic[R]):
    """A queued job. `created` is False when its id was already taken (the existing job)."""

    job_id: str
    task: Task[Any, R]
    created: bool
    client: PostroomClient
    keys: QueueKeys | None = None  # its partition's, once known (every one is looked in)

    @property
    def redis(self) -> ArqRedis:
        return self.client.redis

    async def info(self) -> JobInfo | None:
        """State, progress, tries, result or error; None once nothing of the job is left."""
        return await self.client.job_info(self.job_id)

    async def status(self) -> JobState | None:
        info = await self.info()
        return None if info is None else info.state

    async def cancel(self) -> CancelOutcome:
        return await self.client.cancel(self.job_id)

    async def _stored_result(self) -> bytes | None:
        if self.keys is not None:
            raw: bytes | None = await self.redis.get(self.keys.result(self.job_id))
            return raw
        parts = self.client.keys.partitions_of(self.task.queue)
        async with self.redis.pipeline(transaction=False) as pipe:
            for qk in parts:
                pipe.get(qk.result(self.job_id))
            found = [raw for raw in await pipe.execute() if raw is not None]
        return found[0] if found else None

    async def result(self, timeout: float | None = None, poll: float = 0.02) -> R:  # noqa: ASYNC109
        """Wait for the result, validated as the task's return type; raises on failure."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = poll
        while True:
            raw = await self._stored_result()
            if raw is not None:
                try:
                    stored = deserialize_result(raw, deserializer=loads)
                except SerializationError as exc:
                    raise JobFailedError(self.job_id, f"malformed result record: {exc}") from exc
                # SealError (naming the job) when its seal does not open with the keys held.
                result = self.client.sealer.open(
                    stored.result, self.job_id, self.task.queue, "result"
                )
                if not stored.success:
                    raise JobFailedError(self.job_id, result)
                return self.task.returns.validate_python(result)
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {self.job_id} has no result after {timeout}s")
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.5)


def new_job_id() -> str:
    """A random UUID (version 4) as 32 hex digits, as `uuid.uuid4().hex` writes it, without
    building the UUID object (a fifth of an enqueue's own CPU)."""
    n = int.from_bytes(os.urandom(16), "big")
    n = (n & ~(0xC000 << 48)) | (0x8000 << 48)  # the RFC 4122 variant
    n = (n & ~(0xF000 << 64)) | (4 << 76)  # version 4
    return f"{n:032x}"


def redis_url(settings: PostroomSettings) -> str:
    """The Redis a client talks to, for messages and logs, never with its credentials: the
    Cluster, the sentinels, `REDIS_URL` (or `REDIS_HOST`), else the embedded one."""
    if settings.redis_cluster:
        return f"the Redis Cluster at {','.join(settings.redis_cluster)}"
    return describe(redis_settings(settings))


def redis_named(settings: PostroomSettings) -> str:
    """`redis_url` as a message says it: "Redis at redis://host:6379/0"."""
    where = redis_url(settings)
    return where if settings.redis_cluster else f"Redis at {where}"


class PostroomClient:
    """Enqueue tasks from any asyncio app; build it from the same settings as the workers."""

    def __init__(
        self,
        redis: ArqRedis,
        settings: PostroomSettings,
        tasks: TaskRegistry = registry,
        *,
        metrics: EnqueueMetrics | None = None,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.tasks = tasks
        # Counts the jobs this client writes (postroom_jobs_enqueued_total), when given.
        self.metrics = metrics
        self.keys = Keys.of_settings(settings)
        # Writes the jobs of concurrent enqueues together, one round trip at a time.
        self.writer = EnqueueBatcher(redis)
        # Seals each job's payload before it is written (store/sealing.py), opens results
        # and what the dead letters hand out.
        self.sealer = PayloadSealer.of_settings(settings)
        self.dead_letters = DeadLetterStore(
            redis, self.keys, settings.dead_letter_retention, self.sealer
        )
        # With POSTROOM_TRACING, each enqueue is a span whose trace context the job carries.
        self.tracing: Tracing | None = tracing_for(settings)

    @classmethod
    async def connect(
        cls,
        settings: PostroomSettings | None = None,
        tasks: TaskRegistry = registry,
        *,
        retries: int | None = None,
        metrics: EnqueueMetrics | None = None,
    ) -> PostroomClient:
        """Connect to the Cluster, the sentinels' primary, `REDIS_URL`, or the embedded Redis a
        local worker started.

        `retries` (arq's default 5, a second apart) bounds how long an unreachable Redis is
        waited for; a command-line tool passes 0 to fail at once.
        """
        settings = settings or load_settings()
        if settings.redis_cluster:
            # PostroomClient types its connection as ArqRedis; what it sends is what
            # RedisCluster has too (every script and transaction in one queue's slot).
            cluster = cast(ArqRedis, await connect_cluster(settings))
            return cls(cluster, settings, tasks, metrics=metrics)
        target = redis_settings(settings)
        if retries is not None:
            target.conn_retries = retries
        try:
            redis = await create_pool(target, job_serializer=dumps, job_deserializer=loads)
        except (RedisError, OSError) as exc:
            refused = refusal(exc, settings, f"Redis at {describe(target)}")
            if refused is not None:
                raise refused from None
            raise
        return cls(redis, settings, tasks, metrics=metrics)

    async def close(self) -> None:
        await self.writer.close()
        await self.redis.aclose()

    async def __aenter__(self) -> PostroomClient:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def enqueue(
        self,
        request: JobRequest[R],
        *,
        job_id: str | None = None,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        priority: Priority | None = None,
    ) -> JobHandle[R]:
        """Queue one job. A taken `job_id` returns the existing job with `created=False`.

        `delay` or `at` hold it back until then; `priority` (default normal) orders it among
        the queue's ready jobs.
        """
        if job_id is not None or delay is not None or at is not None or priority is not None:
            request = request.with_options(job_id=job_id, delay=delay, at=at, priority=priority)
        [handle] = await self.enqueue_many([request])
        return handle

    async def enqueue_many(
        self, requests: Iterable[JobRequest[Any]], *, checkpoint: Checkpoint | None = None
    ) -> list[JobHandle[Any]]:
        """Queue many jobs in one round trip (bulk sends); answers in the same order.

        Calls made from many coroutines at once share round trips (`EnqueueBatcher`), each
        still answered for its own jobs. A `checkpoint` key is set in the same transaction
        (see `Checkpoint`). With `POSTROOM_ENQUEUE_WAIT_REPLICAS`, it answers once the jobs
        are on that many replicas (else NotReplicatedError: retry with the same ids).
        """
        now = int(time.time() * 1000)
        jobs = [self._new_job(request, now) for request in requests]
        try:
            if self.tracing is None:
                created = await self._write([job for job, _ in jobs], checkpoint)
            else:  # each job under its span, carrying its trace context
                write = functools.partial(self._write, checkpoint=checkpoint)
                created = await self.tracing.sent([job for job, _ in jobs], write)
        except RedisError as exc:
            # Refused credentials or permissions (revoked while running) never mend by
            # retrying: say which variable to fix.
            refused = named_refusal(exc, self.settings, redis_named(self.settings))
            if refused is None:
                raise
            raise refused from None
        if self.metrics is not None:
            self.metrics.enqueued(
                (task.queue, task.name) for (_, task), new in zip(jobs, created, strict=True) if new
            )
        return [
            JobHandle(job.job_id, task, new, self, job.keys)
            for (job, task), new in zip(jobs, created, strict=True)
        ]

    async def _write(self, jobs: list[NewJob], checkpoint: Checkpoint | None) -> list[bool]:
        """Coalesced with other callers' writes (`EnqueueBatcher`), unless a checkpoint or
        a replica wait needs a call of its own."""
        replicas = self.settings.enqueue_wait_replicas
        if checkpoint is None and not replicas:
            return await self.writer.write(jobs)
        return await write_jobs(
            self.redis,
            jobs,
            checkpoint=checkpoint,
            replicas=replicas,
            replica_timeout_ms=int(self.settings.enqueue_wait_timeout * 1000),
        )

    async def enqueue_payload(
        self,
        task_name: str,
        payload: Mapping[str, Any],
        *,
        job_id: str | None = None,
        priority: Priority | None = None,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
    ) -> JobHandle[Any]:
        """Queue a task by name with an untyped payload (from an HTTP body), validated first."""
        request = self.tasks.get(task_name).request(payload)
        return await self.enqueue(request, job_id=job_id, priority=priority, delay=delay, at=at)

    async def pause(self, queue: QueueName) -> None:
        """Stop `queue`'s workers starting jobs (running ones finish; enqueueing still works)."""
        await self.redis.set(self.keys.of(queue).paused, b"1")

    async def resume(self, queue: QueueName) -> None:
        await self.redis.delete(self.keys.of(queue).paused)

    async def is_paused(self, queue: QueueName) -> bool:
        return bool(await self.redis.exists(self.keys.of(queue).paused))

    def job(self, job_id: str, task: Task[Any, R]) -> JobHandle[R]:
        """A handle to a job enqueued earlier, e.g. by another process."""
        return JobHandle(job_id, task, False, self)

    async def job_info(self, job_id: str) -> JobInfo | None:
        """Any job's state, progress, tries, result or error, by id alone."""
        return await read_job_info(self.redis, self.keys, job_id, sealer=self.sealer)

    async def cancel(self, job_id: str) -> CancelOutcome:
        """Cancel a job: "cancelled" if it had not started (it never will), "stopping" if it
        runs (its worker stops it within about a second), "not-found" if it already ended.
        A cancelled job is not retried."""
        return await cancel_job(self.redis, self.keys, job_id, self.settings.keep_result)

    async def queue_stats(self, queue: QueueName) -> QueueStats:
        return await read_queue_stats(self.redis, self.keys, queue)

    async def queues_stats(
        self, queues: Iterable[QueueName] = tuple(QueueName)
    ) -> list[QueueStats]:
        """Many queues' numbers (all six by default) in one round trip."""
        return await read_queues_stats(self.redis, self.keys, list(queues))

    async def list_jobs(
        self, queue: QueueName, state: JobState, *, offset: int = 0, limit: int = 50
    ) -> JobPage:
        """A page of `queue`'s jobs in `state` (queued in start order, finished newest first)."""
        return await list_jobs(
            self.redis, self.keys, queue, state, offset=offset, limit=limit, sealer=self.sealer
        )

    async def clean(self, queue: QueueName, state: CleanState, older_than: float = 0) -> int:
        """Delete `queue`'s finished jobs of `state` older than `older_than` seconds."""
        return await clean_jobs(self.redis, self.keys, self.dead_letters, queue, state, older_than)

    async def job_payload(self, job_id: str) -> dict[str, Any] | None:
        """The arguments a job was enqueued with, while its job data, result or dead letter
        is kept."""
        return await read_job_payload(self.redis, self.keys, job_id, sealer=self.sealer)

    async def live_workers(self, queues: Iterable[QueueName]) -> dict[str, int]:
        """How many worker processes serve each of `queues` right now."""
        return await live_workers(self.redis, self.keys, queues)

    def _new_job(self, request: JobRequest[Any], now_ms: int) -> tuple[NewJob, Task[Any, Any]]:
        task = request.task
        due = now_ms
        if request.at is not None:
            at = request.at if request.at.tzinfo else request.at.replace(tzinfo=UTC)
            due = int(at.timestamp() * 1000)
        elif request.delay is not None:
            seconds = (
                request.delay.total_seconds()
                if isinstance(request.delay, timedelta)
                else request.delay
            )
            due = now_ms + int(seconds * 1000)
        job_id = request.job_id or new_job_id()
        job = NewJob(
            job_id=job_id,
            keys=self.keys.route(task.queue, request.route_key(job_id)),
            task=task.name,
            kwargs=self.sealer.seal(request.kwargs, job_id, task.queue, "kwargs"),
            due_ms=due,
            enqueue_ms=now_ms,
            priority=request.priority,
        )
        return job, task
