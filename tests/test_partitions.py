"""Partitioned queues (`POSTROOM_QUEUES__<QUEUE>__PARTITIONS`): one queue over many slots.

On a three-primary cluster the partitions of message-delivery spread over every primary and
the workers drain them all; on one server, a lowered partition count strands nothing, and
lookups, dead letters and their retry find a job in whichever partition holds it.
"""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from config.errors import ConfigError
from config.queues import BackoffPolicy, QueueName
from config.settings import PostroomSettings, load_settings
from tests.conftest import running_worker
from tests.servers.cluster import LocalCluster
from workers.client import JobFailedError, PostroomClient
from workers.cluster_client import connect_cluster_client
from workers.context import JobContext
from workers.registry import TaskRegistry
from workers.store.job_status import JobState
from workers.store.queue_stats import read_partition_stats

QUICK = BackoffPolicy(base=0.05, cap=0.05, jitter=False)


def partitioned(partitions: int, **settings: Any) -> dict[str, Any]:
    return {
        "queues": {"message_delivery": {"partitions": partitions}},
        "key_prefix": f"test-{uuid.uuid4().hex[:10]}",
        "shutdown_grace": 5,
        **settings,
    }


def count_keys(node: redis.Redis, pattern: str) -> int:
    """How many keys of `pattern` one Cluster node holds (its share of the queue)."""
    with node:
        return sum(1 for _ in node.scan_iter(pattern, count=1000))


def with_partitions(settings: PostroomSettings, partitions: int) -> PostroomSettings:
    queues = load_settings(queues={"message_delivery": {"partitions": partitions}}).queues
    return settings.model_copy(update={"queues": queues})


def delivery_tasks() -> TaskRegistry:
    tasks = TaskRegistry()

    @tasks.task(queue=QueueName.DELIVERY, name="tests.deliver", partition_by="chat")
    async def deliver(ctx: JobContext, chat: str, n: int) -> int:
        return n

    @tasks.task(queue=QueueName.DELIVERY, name="tests.refuse", max_tries=1, backoff=QUICK)
    async def refuse(ctx: JobContext, n: int) -> int:
        if not await ctx["redis"].exists(f"allow:{n}"):
            raise RuntimeError(f"not yet ({n})")
        return n

    return tasks


async def test_cluster_partitions_of_a_queue_spread_over_every_primary_and_all_drain(
    redis_cluster: LocalCluster, tmp_path: Path
) -> None:
    host, port = redis_cluster.startup_nodes[0]
    settings = load_settings(**partitioned(8, redis_cluster=f"{host}:{port}", data_dir=tmp_path))
    tasks = delivery_tasks()
    deliver = tasks.get("tests.deliver")
    async with await connect_cluster_client(settings, tasks) as client:
        handles = await client.enqueue_many(
            [deliver.call(chat=f"chat-{i % 40}", n=i) for i in range(240)]
        )
        partition_of = {h.job_id: h.keys for h in handles}
        # A conversation's jobs share a partition.
        by_chat: dict[str, set[int]] = {}
        for i, h in enumerate(handles):
            assert h.keys is not None
            by_chat.setdefault(f"chat-{i % 40}", set()).add(h.keys.partition)
        assert all(len(parts) == 1 for parts in by_chat.values())
        used = {qk.partition for qk in partition_of.values() if qk is not None}
        assert used == set(range(8))
        primaries = Counter(
            redis_cluster.node_of_slot(key_slot(qk.queue.encode())).port
            for qk in client.keys.partitions_of(QueueName.DELIVERY)
        )
        assert len(primaries) == 3, primaries  # the eight partitions on all three primaries
        tag = f"{{{settings.key_prefix}:{QueueName.DELIVERY.value}"
        jobs_per_node = [count_keys(node.client(), f"{tag}*:job:*") for node in redis_cluster.nodes]
        assert sum(jobs_per_node) == 240 and all(jobs_per_node), jobs_per_node

        async with running_worker(settings, tasks=tasks, queues=[QueueName.DELIVERY]):
            results = [await h.result(timeout=60) for h in handles]
        assert results == list(range(240))
        stats = await client.queue_stats(QueueName.DELIVERY)
        parts = await read_partition_stats(client.redis, client.keys, QueueName.DELIVERY)
    assert (stats.completed, stats.waiting, stats.active, stats.delayed) == (240, 0, 0, 0)
    assert len(parts) == 8 and sum(p.completed for p in parts) == 240
    assert all(p.completed > 0 for p in parts)


async def test_partitioned_queue_dead_letters_are_found_listed_and_retried_in_their_partition(
    settings: PostroomSettings,
) -> None:
    settings = with_partitions(settings, 4)
    tasks = delivery_tasks()
    refuse = tasks.get("tests.refuse")
    async with await PostroomClient.connect(settings, tasks) as client:
        async with running_worker(settings, tasks=tasks, queues=[QueueName.DELIVERY]):
            handles = [await client.enqueue(refuse.call(n=i)) for i in range(12)]
            for h in handles:
                with pytest.raises(JobFailedError):
                    await h.result(timeout=30)
            assert len({h.keys.partition for h in handles if h.keys is not None}) > 1
            assert await client.dead_letters.count(QueueName.DELIVERY) == 12
            listed = await client.dead_letters.list(QueueName.DELIVERY, offset=2, limit=5)
            assert len(listed) == 5
            infos = [await client.job_info(h.job_id) for h in handles]
            assert {i.state for i in infos if i is not None} == {JobState.DEAD_LETTERED}
            for i in range(12):
                await client.redis.set(f"allow:{i}", 1)
            assert await client.dead_letters.retry_all(QueueName.DELIVERY) == 12
            again = [await client.job(h.job_id, refuse).result(timeout=30) for h in handles]
        stats = await client.queue_stats(QueueName.DELIVERY)
    assert again == list(range(12))
    assert (stats.completed, stats.dead_lettered, stats.dead_lettered_now) == (12, 12, 0)


async def test_lowering_a_queues_partitions_strands_no_job(settings: PostroomSettings) -> None:
    """Jobs enqueued over 8 partitions, then workers (and clients) configured with 2: the
    workers still serve the 8 the queue ever had, so every job runs."""
    tasks = delivery_tasks()
    deliver = tasks.get("tests.deliver")
    wide = with_partitions(settings, 8)
    narrow = with_partitions(settings, 2)
    async with await PostroomClient.connect(wide, tasks) as client:
        async with running_worker(wide, tasks=tasks, queues=[QueueName.DELIVERY]):
            first = await client.enqueue(deliver.call(chat="warm-up", n=-1))
            assert await first.result(timeout=30) == -1  # the queue has had 8 partitions
        handles = await client.enqueue_many([deliver.call(chat=f"c{i}", n=i) for i in range(40)])
        assert max(h.keys.partition for h in handles if h.keys is not None) >= 2
        async with running_worker(narrow, tasks=tasks, queues=[QueueName.DELIVERY]):
            results = [await h.result(timeout=30) for h in handles]
    assert results == list(range(40))


def test_a_partition_count_out_of_range_is_refused_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match="POSTROOM_QUEUES__MESSAGE_DELIVERY__PARTITIONS"):
        load_settings(queues={"message_delivery": {"partitions": 0}})
