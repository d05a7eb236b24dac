"""Concurrent enqueues from one client coalesce into few pipelined writes, each caller still
answered for its own jobs: created or not (a duplicate job id), or its own error."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.exceptions import ResponseError

from config.queues import QueueName
from config.settings import PostroomSettings
from tests.conftest import running_worker
from tests.sample_tasks import Greeting, echo
from workers.client import JobHandle, PostroomClient
from workers.registry import registry
from workers.store.priority import Priority

CALLERS = 300


async def _script_calls(client: PostroomClient) -> int:
    stats: dict[str, Any] = await client.redis.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def test_many_concurrent_enqueues_coalesce_and_each_caller_learns_if_its_job_was_created(
    settings: PostroomSettings, client: PostroomClient
) -> None:
    ids = [f"coalesce-{n}" for n in range(CALLERS)]
    ids[CALLERS // 2] = ids[10]  # a duplicate job id inside the same write
    taken = "coalesce-taken"
    assert (
        await client.enqueue(echo.call(Greeting(messageId="t", text="t")), job_id=taken)
    ).created

    before = await _script_calls(client)
    handles = await asyncio.gather(
        *(
            client.enqueue(
                echo.call(Greeting(messageId=f"m{n}", text=f"text-{n}")),
                job_id=job_id,
                priority=Priority.HIGH if n % 3 == 0 else None,
            )
            for n, job_id in enumerate(ids)
        ),
        client.enqueue(echo.call(Greeting(messageId="again", text="again")), job_id=taken),
    )
    writes = await _script_calls(client) - before

    *mine, again = handles
    assert [h.job_id for h in mine] == ids
    assert [h.created for h in mine] == [n != CALLERS // 2 for n in range(CALLERS)]
    assert not again.created and again.job_id == taken
    # The first caller writes alone; everyone who came during its round trip, together.
    assert writes <= 3, writes
    queue = client.keys.of(QueueName.DELIVERY).queue
    assert await client.redis.zcard(queue) == CALLERS  # 299 new ids and the one taken before

    async with running_worker(settings, queues=[QueueName.DELIVERY]):
        duplicate = mine[CALLERS // 2]
        assert (await duplicate.result(timeout=60))["text"] == "text-10"  # the first write's
        assert (await again.result(timeout=60))["text"] == "t"
        results = await asyncio.gather(*(h.result(timeout=60) for h in mine[:20]))
    assert [r["text"] for r in results] == [f"text-{n}" for n in range(20)]


async def test_concurrent_enqueues_each_get_their_own_error(client: PostroomClient) -> None:
    """A queue whose key Redis cannot use fails its callers only; the others' jobs are written."""
    broken = client.keys.of(QueueName.CLEANUP).queue
    await client.redis.set(broken, b"not a sorted set")
    probe = registry.get(f"tests.probe.{QueueName.CLEANUP.value}")

    async def enqueue(n: int) -> JobHandle[Any] | BaseException:
        try:
            if n % 10 == 5:
                return await client.enqueue(probe.call())
            return await client.enqueue(echo.call(Greeting(messageId=f"m{n}", text="x")))
        except ResponseError as exc:
            return exc

    answers = await asyncio.gather(*(enqueue(n) for n in range(100)))

    failed = [n for n, a in enumerate(answers) if isinstance(a, BaseException)]
    assert failed == [n for n in range(100) if n % 10 == 5]
    assert all("WRONGTYPE" in str(answers[n]) for n in failed)
    created = [a for a in answers if isinstance(a, JobHandle)]
    assert len(created) == 90 and all(h.created for h in created)
    assert await client.redis.zcard(client.keys.of(QueueName.DELIVERY).queue) == 90


async def test_a_lost_script_is_loaded_again_and_coalesced_enqueues_still_answer(
    client: PostroomClient,
) -> None:
    """SCRIPT FLUSH (or a Redis restart) between writes: NOSCRIPT, load, write once."""
    await client.enqueue(echo.call(Greeting(messageId="warm", text="w")))
    await client.redis.script_flush()
    handles = await asyncio.gather(
        *(client.enqueue(echo.call(Greeting(messageId=f"m{n}", text="x"))) for n in range(50))
    )
    assert all(h.created for h in handles)
    assert await client.redis.zcard(client.keys.of(QueueName.DELIVERY).queue) == 51


async def test_a_cancelled_caller_leaves_the_others_answered(client: PostroomClient) -> None:
    first = asyncio.create_task(client.enqueue(echo.call(Greeting(messageId="a", text="a"))))
    await asyncio.sleep(0)  # the first write is on the wire
    waiting = [
        asyncio.create_task(client.enqueue(echo.call(Greeting(messageId=f"w{n}", text="w"))))
        for n in range(10)
    ]
    await asyncio.sleep(0)
    waiting[3].cancel()
    done = await asyncio.gather(first, *waiting, return_exceptions=True)
    assert isinstance(done[4], asyncio.CancelledError)
    assert all(isinstance(h, JobHandle) and h.created for i, h in enumerate(done) if i != 4)
    # The connection is still in step: the next enqueue gets its own answer.
    assert (await client.enqueue(echo.call(Greeting(messageId="z", text="z")))).created


@pytest.mark.parametrize("burst", [1, 2500])
async def test_enqueue_many_from_concurrent_callers_keeps_each_callers_order(
    client: PostroomClient, burst: int
) -> None:
    """Bulk calls share writes too, never split, each answered in its own order."""
    calls = [
        client.enqueue_many(
            [
                echo.call(Greeting(messageId=f"{c}-{n}", text="b")).with_options(
                    job_id=f"bulk-{c}-{n % (burst // 2 + 1)}"
                )
                for n in range(burst)
            ]
        )
        for c in range(4)
    ]
    answers = await asyncio.gather(*calls)
    for c, handles in enumerate(answers):
        assert [h.job_id for h in handles] == [
            f"bulk-{c}-{n % (burst // 2 + 1)}" for n in range(burst)
        ]
        unique = burst // 2 + 1 if burst > 1 else 1
        assert sum(h.created for h in handles) == unique
