"""A connection to a Redis Cluster (`POSTROOM_REDIS_CLUSTER`): redis-py's `RedisCluster`.

arq's `ArqRedis` talks to one server, so a Cluster gets redis-py's Cluster client, which
sends each command to the node of its key's slot. Every script postroom sends touches one
queue's slot (tests/test_cluster_scripts.py), so the client, the workers, the admin API and
the CLI use it through arq's `ArqRedis` type (redis_pool.py, client.PostroomClient.connect).
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.exceptions import RedisClusterException, RedisError

from config.errors import ConfigError
from config.settings import PostroomSettings
from workers.connection.connections import tls_options
from workers.connection.redis_refusal import refusal

SETTING = "POSTROOM_REDIS_CLUSTER"


def startup_nodes(settings: PostroomSettings) -> list[ClusterNode]:
    """The nodes `POSTROOM_REDIS_CLUSTER` names (validated `host:port` by the settings)."""
    nodes = []
    for address in settings.redis_cluster:
        host, _, port = address.rpartition(":")
        nodes.append(ClusterNode(host, int(port)))
    return nodes


async def connect_cluster(settings: PostroomSettings) -> RedisCluster:
    """A Cluster client that has read the slot map, or a ConfigError naming the setting:
    unreachable nodes, or a standalone server where a Cluster was meant."""
    if not settings.redis_cluster:
        raise ConfigError(f"{SETTING} is not set: name a node of the Cluster (host:port,...)")
    password = settings.redis_password.get_secret_value() if settings.redis_password else None
    tls: dict[str, Any] = {"ssl": True, **tls_options(settings)} if settings.redis_tls else {}
    cluster: RedisCluster = RedisCluster(
        startup_nodes=startup_nodes(settings),
        username=settings.redis_username,
        password=password,
        **tls,
    )
    named = ",".join(settings.redis_cluster)
    try:
        await cluster.initialize()
    except (RedisClusterException, RedisError, OSError) as exc:
        await cluster.aclose()
        refused = _refusal(exc, settings, f"the Cluster at {SETTING}={named}")
        if refused is not None:
            raise refused from None
        if "cluster mode is not enabled" in str(exc).lower():
            raise ConfigError(
                f"{SETTING}={named} is a standalone Redis, not a Cluster: "
                "name it in REDIS_URL instead"
            ) from exc
        raise ConfigError(f"{SETTING}={named}: no Cluster answered ({exc})") from exc
    return cluster


def _refusal(exc: BaseException, settings: PostroomSettings, where: str) -> ConfigError | None:
    """redis-py's Cluster client wraps what a node said; the refusal may be under it."""
    seen: BaseException | None = exc
    while seen is not None:
        refused = refusal(seen, settings, where)
        if refused is not None:
            return refused
        seen = seen.__cause__ or seen.__context__
    return None
