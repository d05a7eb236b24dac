"""Running a job: retries with backoff, dead letters with every error, nothing ever dropped."""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

import pytest

from config.queues import BackoffPolicy, QueueName
from config.settings import PostroomSettings
from tests.conftest import running_worker
from tests.sample_tasks import Greeting, echo
from workers.client import JobFailedError, PostroomClient
from workers.context import JobContext
from workers.errors import PermanentError
from workers.registry import Task, TaskRegistry
from workers.store.enqueue import NewJob, write_jobs
from workers.store.job_status import JobState

# Short enough that three tries take a moment; the cap must not be below the base.
QUICK = BackoffPolicy(base=0.05, cap=0.05, jitter=False)


class Failing:
    """A fresh registry of tasks that fail in the ways the tests need."""

    def __init__(self) -> None:
        self.tasks = TaskRegistry()
        reg = self.tasks.task

        @reg(queue=QueueName.DELIVERY, name="tests.always_fails", max_tries=3, backoff=QUICK)
        async def always_fails(ctx: JobContext, note: str) -> None:
            raise RuntimeError(f"try {ctx['job_try']} failed ({note})")

        @reg(queue=QueueName.DELIVERY, name="tests.permanent", max_tries=3, backoff=QUICK)
        async def permanent(ctx: JobContext, note: str) -> None:
            raise PermanentError(f"cannot ever work ({note})")

        @reg(queue=QueueName.DELIVERY, name="tests.fails_once", max_tries=3, backoff=QUICK)
        async def fails_once(ctx: JobContext, key: str) -> int:
            if await ctx["redis"].incr(key) == 1:
                raise RuntimeError("first try fails")
            return ctx["job_try"]

        @reg(queue=QueueName.DELIVERY, name="tests.gated", max_tries=1, backoff=QUICK)
        async def gated(ctx: JobContext, key: str) -> int:
            await ctx["redis"].rpush(f"{key}:ran", ctx["job_id"])
            if not await ctx["redis"].exists(f"{key}:open"):
                raise RuntimeError("gate closed")
            return ctx["job_try"]

        self.always_fails = always_fails
        self.permanent = permanent
        self.fails_once = fails_once
        self.gated = gated


@pytest.fixture
def failing() -> Failing:
    return Failing()


async def _dead_letter_after_failure(client: PostroomClient, job: Any) -> Any:
    """The job's failure is stored after its dead letter, so waiting for it is enough."""
    with pytest.raises(JobFailedError):
        await job.result(timeout=30)
    letter = await client.dead_letters.get(job.job_id)
    assert letter is not None
    return letter


async def test_job_failing_every_try_is_dead_lettered_with_every_error(
    settings: PostroomSettings, client: PostroomClient, failing: Failing
) -> None:
    async with running_worker(settings, tasks=failing.tasks, queues=[QueueName.DELIVERY]):
        job = await client.enqueue(failing.always_fails.call("doomed"))
        letter = await _dead_letter_after_failure(client, job)
    assert letter.reason == "max-tries"
    assert letter.task == "tests.always_fails"
    assert letter.queue == QueueName.DELIVERY
    assert letter.tries == 3
    assert letter.payload == {"note": "doomed"}
    assert [e.attempt for e in letter.errors] == [1, 2, 3]
    assert {e.type for e in letter.errors} == {"RuntimeError"}
    assert letter.errors[2].message == "try 3 failed (doomed)"
    assert await client.dead_letters.count(QueueName.DELIVERY) == 1
    assert [d.job_id for d in await client.dead_letters.list(QueueName.DELIVERY)] == [job.job_id]
    # The per-try error list is folded into the letter, not left behind.
    assert not await client.redis.exists(client.keys.of(QueueName.DELIVERY).try_errors(job.job_id))


async def test_permanent_error_is_dead_lettered_after_one_try(
    settings: PostroomSettings, client: PostroomClient, failing: Failing
) -> None:
    async with running_worker(settings, tasks=failing.tasks, queues=[QueueName.DELIVERY]):
        job = await client.enqueue(failing.permanent.call("bad address"))
        letter = await _dead_letter_after_failure(client, job)
    assert letter.reason == "permanent"
    assert letter.tries == 1
    assert [(e.attempt, e.type) for e in letter.errors] == [(1, "PermanentError")]


async def test_job_failing_once_is_retried_and_its_result_returned(
    settings: PostroomSettings, client: PostroomClient, failing: Failing
) -> None:
    key = f"{settings.key_prefix}:fails-once"
    async with running_worker(settings, tasks=failing.tasks, queues=[QueueName.DELIVERY]):
        job = await client.enqueue(failing.fails_once.call(key))
        assert await job.result(timeout=30) == 2
    assert await client.dead_letters.get(job.job_id) is None
    assert not await client.redis.exists(client.keys.of(QueueName.DELIVERY).try_errors(job.job_id))


async def test_retried_dead_letter_runs_again_under_the_same_job_id(
    settings: PostroomSettings, client: PostroomClient, failing: Failing
) -> None:
    key = f"{settings.key_prefix}:gate"
    async with running_worker(settings, tasks=failing.tasks, queues=[QueueName.DELIVERY]):
        job = await client.enqueue(failing.gated.call(key))
        letter = await _dead_letter_after_failure(client, job)
        assert letter.reason == "max-tries"

        await client.redis.set(f"{key}:open", 1)
        assert await client.dead_letters.retry(job.job_id)
        # A fresh try budget: the retried job is on its first try again.
        assert await job.result(timeout=30) == 1
    ran = await client.redis.lrange(f"{key}:ran", 0, -1)
    assert ran == [job.job_id.encode()] * 2
    assert await client.dead_letters.get(job.job_id) is None
    assert await client.dead_letters.count(QueueName.DELIVERY) == 0


async def test_retry_of_an_unknown_dead_letter_does_nothing(client: PostroomClient) -> None:
    assert not await client.dead_letters.retry(f"missing-{uuid.uuid4().hex}")


async def test_undecodable_job_is_dead_lettered_with_its_raw_bytes(
    settings: PostroomSettings, client: PostroomClient
) -> None:
    job_id = f"garbage-{uuid.uuid4().hex}"
    garbage = b"\x00\xffnot json at all\x80"
    await client.redis.set(client.keys.of(QueueName.DELIVERY).job(job_id), garbage, px=600_000)
    await client.redis.zadd(client.keys.of(QueueName.DELIVERY).queue, {job_id: time.time() * 1000})

    async with running_worker(settings, queues=[QueueName.DELIVERY]):
        letter = await _dead_letter_after_failure(client, client.job(job_id, echo))
    assert letter.reason == "malformed"
    assert letter.task is None
    assert letter.queue == QueueName.DELIVERY
    assert base64.b64decode(letter.payload["raw_base64"]) == garbage
    assert letter.errors[-1].message.startswith("malformed job record: not JSON")


async def test_job_for_an_unregistered_task_is_dead_lettered_with_the_task_name(
    settings: PostroomSettings, client: PostroomClient
) -> None:
    now = int(time.time() * 1000)
    job = NewJob(
        job_id=f"unknown-{uuid.uuid4().hex}",
        keys=client.keys.of(QueueName.DELIVERY),
        task="tests.never_registered",
        kwargs={"to": "someone"},
        due_ms=now,
        enqueue_ms=now,
    )
    assert await write_jobs(client.redis, [job]) == [True]

    async with running_worker(settings, queues=[QueueName.DELIVERY]):
        letter = await _dead_letter_after_failure(client, client.job(job.job_id, echo))
    assert letter.reason == "undeliverable"
    assert letter.task == "tests.never_registered"
    assert letter.payload == {"args": [], "kwargs": {"to": "someone"}}
    assert "tests.never_registered" in letter.errors[-1].message


async def test_job_whose_record_expired_in_the_queue_is_dead_lettered_as_expired(
    settings: PostroomSettings, client: PostroomClient
) -> None:
    # A queue entry whose job record is gone (it waited past its expiry): nothing to run,
    # but the id is not dropped without a trace.
    job_id = f"expired-{uuid.uuid4().hex}"
    await client.redis.zadd(client.keys.of(QueueName.DELIVERY).queue, {job_id: time.time() * 1000})

    async with running_worker(settings, queues=[QueueName.DELIVERY]):
        letter = await _dead_letter_after_failure(client, client.job(job_id, echo))
    assert letter.reason == "expired"
    assert letter.payload is None and letter.task is None
    assert "expired" in letter.errors[-1].message
    info = await client.job_info(job_id)
    assert info is not None and info.state == JobState.DEAD_LETTERED
    stats = await client.queue_stats(QueueName.DELIVERY)
    assert (stats.dead_lettered, stats.waiting, stats.delayed, stats.active) == (1, 0, 0, 0)


async def test_raising_job_start_hook_does_not_stop_the_job(
    settings: PostroomSettings, client: PostroomClient, caplog: pytest.LogCaptureFixture
) -> None:
    tasks = TaskRegistry()
    marker = f"{settings.key_prefix}:hook-ran"

    async def broken_hook(ctx: dict[str, Any]) -> None:
        await ctx["redis"].incr(marker)
        raise RuntimeError("hook bug")

    tasks.hooks.on_job_start.append(broken_hook)
    hooked_echo: Task[Any, dict[str, str]] = tasks.task(
        queue=QueueName.DELIVERY, name="tests.echo"
    )(echo.function)

    async with running_worker(settings, tasks=tasks, queues=[QueueName.DELIVERY]):
        first = await client.enqueue(hooked_echo.call(Greeting(messageId="h1", text="one")))
        assert (await first.result(timeout=30))["text"] == "one"
        second = await client.enqueue(hooked_echo.call(Greeting(messageId="h2", text="two")))
        assert (await second.result(timeout=30))["text"] == "two"
    assert int(await client.redis.get(marker)) == 2
    assert any("on_job_start hook" in r.getMessage() for r in caplog.records)
