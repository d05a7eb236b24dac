"""The Worker's hot path: woken by enqueues, and its scripts survive Redis forgetting them."""

from __future__ import annotations

from typing import Any

import tests.observed_tasks as observed
from config.queues import QueueName
from config.settings import PostroomSettings
from tests.conftest import eventually, running_worker
from tests.sample_tasks import Greeting, echo, occupy
from workers.client import PostroomClient
from workers.store.enqueue import Checkpoint
from workers.store.keys import Keys
from workers.store.queue_stats import read_queue_stats
from workers.store.scripts import lua_string

# Far longer than any test may run: a job that starts at all was started by a wake-up.
NEVER = 3600.0


def _polling_every(settings: PostroomSettings, poll_delay: float) -> PostroomSettings:
    queues = settings.queues.model_validate({"message_delivery": {"poll_delay": poll_delay}})
    return settings.model_copy(update={"queues": queues})


async def _worker_blocks_on_wake_list(client: PostroomClient) -> bool:
    """True once a connection sits in BLPOP on the delivery queue's wake list (CLIENT LIST)."""
    clients: list[dict[str, Any]] = await client.redis.client_list()
    return any(c["cmd"] == "blpop" and "b" in c["flags"] for c in clients)


def _greeting(n: int) -> Any:
    return echo.call(Greeting(messageId=f"m{n}", text=f"hello {n}"))


async def test_an_idle_worker_starts_a_new_job_without_waiting_for_its_poll_tick(
    settings: PostroomSettings,
) -> None:
    settings = _polling_every(settings, NEVER)
    async with await PostroomClient.connect(settings) as client:
        async with running_worker(settings, queues=[QueueName.DELIVERY]):
            await eventually(lambda: _worker_blocks_on_wake_list(client), "the worker is idle")
            job = await client.enqueue(_greeting(1))
            result = await job.result(timeout=30)
            # Idle again, it is woken again.
            await eventually(lambda: _worker_blocks_on_wake_list(client), "the worker is idle")
            again = await client.enqueue(_greeting(2))
            second = await again.result(timeout=30)
        woken = await client.redis.llen(client.keys.of(QueueName.DELIVERY).wake)
    assert result["text"] == "hello 1"
    assert second["text"] == "hello 2"
    assert woken == 0  # each token was taken by the worker it woke


async def test_a_job_claimed_behind_the_wait_as_the_queue_pauses_is_put_back_try_refunded(
    settings: PostroomSettings,
) -> None:
    """An idle worker's claim waits in Redis behind its BLPOP (one round trip per wake-up);
    a job it takes after the queue stopped taking jobs goes back, its try not spent."""
    settings = _polling_every(settings, NEVER)
    serving = running_worker(settings, queues=[QueueName.DELIVERY])
    async with await PostroomClient.connect(settings) as client, serving as supervisor:
        await eventually(lambda: _worker_blocks_on_wake_list(client), "the worker is idle")
        worker = supervisor.workers[QueueName.DELIVERY]
        await client.pause(QueueName.DELIVERY)
        worker.allow_pick_jobs = False  # as the supervisor does once it reads the flag
        job = await client.enqueue(occupy.call(key=f"{settings.key_prefix}:o", seconds=0))
        keys = client.keys.of(QueueName.DELIVERY)

        async def put_back() -> bool:
            # Claimed (its try counted), then released (refunded): the counter reads 0.
            return await client.redis.get(keys.tries(job.job_id)) == b"0" and not worker.tasks

        await eventually(put_back, "the claimed job is put back")
        assert await client.redis.zscore(keys.queue, job.job_id) is not None
        assert await client.redis.zcard(keys.active) == 0
        assert not await client.redis.exists(keys.running(job.job_id))
        await client.resume(QueueName.DELIVERY)
        assert await job.result(timeout=30) == 1  # its first try, run after the resume


async def test_a_delayed_job_leaves_no_wake_token(client: PostroomClient) -> None:
    """Only a job ready now wakes a worker; a delayed one is promoted by a later claim."""
    await client.enqueue(_greeting(1), delay=NEVER)
    wake = client.keys.of(QueueName.DELIVERY).wake
    assert await client.redis.llen(wake) == 0
    await client.enqueue(_greeting(2))
    await client.enqueue(_greeting(3))
    assert await client.redis.llen(wake) == 1  # one token, however many jobs


async def test_jobs_run_after_redis_forgets_every_script(settings: PostroomSettings) -> None:
    """SCRIPT FLUSH (or a restart) makes EVALSHA answer NOSCRIPT: the scripts are loaded again
    by the client's single, bulk and checkpointed enqueues and by the worker's claim and finish."""
    worker = running_worker(settings, queues=[QueueName.DELIVERY])
    async with await PostroomClient.connect(settings) as client, worker:
        first = await client.enqueue(_greeting(1))
        assert (await first.result(timeout=30))["text"] == "hello 1"

        await client.redis.script_flush()
        single = await client.enqueue(_greeting(2))
        assert (await single.result(timeout=30))["text"] == "hello 2"

        await client.redis.script_flush()
        bulk = await client.enqueue_many([_greeting(n) for n in (3, 4, 5)])
        texts = [(await job.result(timeout=30))["text"] for job in bulk]

        await client.redis.script_flush()
        key = Keys(settings.key_prefix).of(QueueName.DELIVERY).checkpoint("chunk")
        mark = Checkpoint(key, "chunk-1", 60_000)
        [checked] = await client.enqueue_many([_greeting(6)], checkpoint=mark)
        assert (await checked.result(timeout=30))["text"] == "hello 6"
        checkpoint = await client.redis.get(mark.key)
    assert texts == ["hello 3", "hello 4", "hello 5"]
    assert all(job.created for job in [first, single, *bulk, checked])
    assert checkpoint == b"chunk-1"


async def test_names_baked_into_the_finish_script_read_back_byte_for_byte(
    client: PostroomClient,
) -> None:
    """Quotes, backslashes, brackets and non-ASCII cannot end the Lua literal early."""
    nasty = "a\"b\\c]]d\n'e\x00é"
    echoed = await client.redis.eval(f"return {lua_string(nasty)}", 0)
    assert echoed == nasty.encode()


async def test_runs_ending_together_are_each_accounted_for_once(settings: PostroomSettings) -> None:
    """Finishes are written in batches (one script call for all the runs that ended while the
    last batch was in flight): completed, retried and dead-lettered runs of one burst each
    leave their result and counters, and nothing of their runs behind."""
    succeeding = [observed.succeeds.call(_secret(f"ok-{n}")) for n in range(150)]
    retrying = [
        observed.fails_once.call(_secret(f"{settings.key_prefix}:retry-{n}")) for n in range(50)
    ]
    refused = [observed.rejected.call(_secret(f"no-{n}")) for n in range(20)]
    stats_key = Keys(settings.key_prefix)
    delivery = stats_key.of(QueueName.DELIVERY)
    async with await PostroomClient.connect(settings) as client:
        jobs = await client.enqueue_many([*succeeding, *retrying, *refused])
        async with running_worker(settings, queues=[QueueName.DELIVERY]):

            async def all_ended() -> bool:
                stats = await read_queue_stats(client.redis, stats_key, QueueName.DELIVERY)
                return stats.completed + stats.dead_lettered == 220

            await eventually(all_ended, "every run has ended")
            stats = await read_queue_stats(client.redis, stats_key, QueueName.DELIVERY)
            results = [await job.result(timeout=30) for job in jobs[:200]]
            leftovers = [key async for key in client.redis.scan_iter(match=delivery.running("*"))]
    assert (stats.completed, stats.retried, stats.dead_lettered) == (200, 50, 20)
    assert stats.failed == 70  # every failed try: 50 retried, 20 dead-lettered
    assert (stats.waiting, stats.active, stats.delayed, stats.dead_lettered_now) == (0, 0, 0, 20)
    assert results == [len(f"ok-{n}") for n in range(150)] + [2] * 50
    assert leftovers == []


def _secret(key: str) -> Any:
    return observed.Secret(key=key, content=key, api_key="k")
