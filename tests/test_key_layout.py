"""Every key lives under its deployment's prefix and its queue's hash tag
(workers/store/keys.py)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, datetime

from redis.crc import key_slot

import tests.observed_tasks as observed
from config.queues import QueueName
from config.settings import PostroomSettings
from tests.conftest import eventually, running_worker
from tests.sample_tasks import Greeting, echo
from tests.test_cron import _minutely_registry
from workers.client import PostroomClient
from workers.runner.cron import CronScheduler
from workers.store.keys import Keys


def _deployment(settings: PostroomSettings) -> PostroomSettings:
    return settings.model_copy(update={"key_prefix": f"dep-{uuid.uuid4().hex[:8]}"})


async def test_two_prefixes_on_one_redis_never_see_each_others_jobs_or_cron_ticks(
    settings: PostroomSettings,
) -> None:
    a, b = _deployment(settings), _deployment(settings)
    async with (
        await PostroomClient.connect(a) as client_a,
        await PostroomClient.connect(b) as client_b,
    ):
        first = await client_a.enqueue(
            echo.call(Greeting(messageId="a", text="hello a")), job_id="send:m1"
        )
        second = await client_b.enqueue(
            echo.call(Greeting(messageId="b", text="hello b")), job_id="send:m1"
        )
        assert (first.created, second.created) == (True, True)

        upto = datetime(2026, 11, 22, 12, 0, 30, tzinfo=UTC).timestamp()
        for client in (client_a, client_b):
            scheduler = CronScheduler(
                client.redis, client.keys, list(_minutely_registry()), max_lateness=120
            )
            assert await scheduler.enqueue_ticks(upto - 60, upto) == 1

        async with running_worker(a, queues=[QueueName.DELIVERY]):
            assert (await first.result(timeout=30))["text"] == "hello a"
        # B's job is untouched by A's worker: still queued under B's keys.
        info = await client_b.job_info("send:m1")
        assert info is not None and info.state == "queued"
        assert await client_b.redis.zcard(client_b.keys.of(QueueName.DELIVERY).queue) == 1


async def test_every_key_a_job_leaves_is_under_the_prefix_and_one_slot_per_queue(
    settings: PostroomSettings, client: PostroomClient
) -> None:
    """Completed, retried, dead-lettered and progress-reporting jobs on two queues: each key
    they leave (results, dead letters, try errors, counters, indexes) hashes to its queue's
    slot, as a Redis Cluster requires of the scripts that touch them together."""
    fails_once = f"{settings.key_prefix}:retry"
    secret = observed.Secret(key=fails_once, content="c", api_key="k")
    await client.enqueue_many(
        [
            observed.succeeds.call(secret),
            observed.fails_once.call(secret),
            observed.rejected.call(secret),
        ]
    )
    delayed = await client.enqueue(echo.call(Greeting(messageId="x", text="x")), delay=3600)
    async with running_worker(settings, queues=[QueueName.DELIVERY]):

        async def ended() -> bool:
            stats = await client.queue_stats(QueueName.DELIVERY)
            return stats.completed + stats.dead_lettered == 2 + 1

        await eventually(ended, "the three ready jobs ended")
    assert delayed.created
    await client.pause(QueueName.CLEANUP)

    slots: dict[str, set[int]] = defaultdict(set)
    async for raw in client.redis.scan_iter(match=f"*{settings.key_prefix}*", count=1000):
        key = raw.decode()
        if key.startswith("{"):
            tag = key[1 : key.index("}")]
            assert tag.startswith(f"{settings.key_prefix}:"), key
            slots[tag].add(key_slot(raw))
        else:
            assert key.startswith(f"{settings.key_prefix}:"), key
    keys = Keys(settings.key_prefix)
    tags = {keys.of(q).tag[1:-1] for q in (QueueName.DELIVERY, QueueName.CLEANUP)}
    assert set(slots) == tags
    assert all(len(s) == 1 for s in slots.values()), slots
    assert [k async for k in client.redis.scan_iter(match="arq:*")] == []
