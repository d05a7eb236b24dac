"""The connection a worker process opens: an `ArqRedis` (one server or Sentinel, built by
connections.py), or a Cluster client.

Both take the same commands on the worker's paths: every script and every multi-key command
there stays in one queue's slot, and pipelines across queues are plain ones, which a Cluster
client splits by node. So the worker, the cron scheduler and the tasks' `ctx["redis"]` use
either through arq's `ArqRedis` type.
"""

from __future__ import annotations

from typing import cast

from arq.connections import ArqRedis, RedisSettings
from redis.asyncio import RedisCluster

from config.settings import PostroomSettings
from workers.connection.cluster_connection import connect_cluster
from workers.connection.connections import create_pool
from workers.store.serialization import dumps


async def open_pool(settings: PostroomSettings, redis_settings: RedisSettings) -> ArqRedis:
    """A Cluster client when `POSTROOM_REDIS_CLUSTER` is set, else an ArqRedis pool."""
    if settings.redis_cluster:
        return cast(ArqRedis, await connect_cluster(settings))
    return await create_pool(redis_settings, job_serializer=dumps)


def on_cluster(redis: object) -> bool:
    return isinstance(redis, RedisCluster)


async def close_pool(redis: ArqRedis) -> None:
    """Close the connection and its pool (arq's pool does not close its own by default)."""
    if on_cluster(redis):
        await redis.aclose()
    else:
        await redis.aclose(close_connection_pool=True)
