"""A start-up look at the Redis the settings name, so a wrong deployment stops the process.

Workers wait out an unreachable Redis (it may be restarting), but some mistakes never mend:
no sentinel answering, a service name the sentinels do not watch, a plain Redis listed as a
sentinel, or a sentinel given as REDIS_URL. These stop the process with the setting to fix.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import redis
from redis.exceptions import AuthenticationError, RedisError

from config.errors import ConfigError
from config.settings import PostroomSettings
from workers.connection.connections import PostroomRedisSettings, describe, sentinel_kwargs

logger = logging.getLogger(__name__)

SENTINELS = "POSTROOM_REDIS_SENTINELS"
SENTINEL_MASTER = "POSTROOM_REDIS_SENTINEL_MASTER"
SENTINEL_PASSWORD = "POSTROOM_REDIS_SENTINEL_PASSWORD"


def _mode(client: redis.Redis) -> str:
    """ "sentinel", "standalone" or "cluster", as the server's INFO says."""
    info = cast(dict[str, Any], client.info("server"))
    return str(info.get("redis_mode") or info.get("server_mode") or "standalone")


def _sentinel_mode(target: PostroomRedisSettings, host: str, port: int) -> str:
    """The mode of the server listed as a sentinel; RedisError/OSError when it is away."""
    with redis.Redis(host=host, port=port, **sentinel_kwargs(target)) as client:
        try:
            return _mode(client)
        except AuthenticationError as exc:
            # A data node listed as a sentinel refuses the sentinels' password too.
            mode = _mode_as_data_node(target, host, port)
            if mode is None or mode == "sentinel":
                raise ConfigError(
                    f"{SENTINEL_PASSWORD}: the sentinel at {host}:{port} refused it: {exc}"
                ) from None
            return mode


def check_sentinels(target: PostroomRedisSettings) -> None:
    """Every listed address must be a sentinel, one must answer, and know the service."""
    reached: list[tuple[str, int]] = []
    unreachable: list[str] = []
    for host, port in cast(list[tuple[str, int]], target.host):
        try:
            mode = _sentinel_mode(target, host, port)
        except (RedisError, OSError) as exc:
            unreachable.append(f"{host}:{port} ({exc})")
            continue
        if mode != "sentinel":
            raise ConfigError(
                f"{SENTINELS}: {host}:{port} is a Redis server in {mode} mode, not a sentinel: "
                f"list the sentinels' addresses (often port 26379), or set REDIS_URL to use "
                f"that server alone"
            )
        reached.append((host, port))
    if not reached:
        raise ConfigError(f"{SENTINELS}: no sentinel answered: {', '.join(unreachable)}")
    if unreachable:
        logger.warning("sentinels not answering: %s", ", ".join(unreachable))
    _check_service(target, reached)


def _check_service(target: PostroomRedisSettings, sentinels: list[tuple[str, int]]) -> None:
    """Some sentinel must name a primary for the service; then its credentials are tried."""
    watched: set[str] = set()
    for host, port in sentinels:
        try:
            with redis.Redis(host=host, port=port, **sentinel_kwargs(target)) as client:
                primary = client.sentinel_get_master_addr_by_name(target.sentinel_master)
                watched.update(cast(dict[str, Any], client.sentinel_masters()))
        except (RedisError, OSError):
            continue
        if primary is not None:
            address, primary_port = primary
            _check_primary(target, address.decode(), int(primary_port))
            return
    raise ConfigError(
        f"{SENTINEL_MASTER}: the sentinels ({describe(target)}) watch no service "
        f"{target.sentinel_master!r}; they watch: {', '.join(sorted(watched)) or 'none'}"
    )


def _mode_as_data_node(target: PostroomRedisSettings, host: str, port: int) -> str | None:
    """The server's mode when the data nodes' credentials open it, else None."""
    try:
        with redis.Redis(host=host, port=port, **_node_kwargs(target)) as client:
            return _mode(client)
    except (RedisError, OSError):
        return None


def _check_primary(target: PostroomRedisSettings, host: str, port: int) -> None:
    """The data nodes' credentials (REDIS_USERNAME/REDIS_PASSWORD) against the primary; one
    that does not answer may be failing over, and is waited for like any outage."""
    try:
        with redis.Redis(host=host, port=port, **_node_kwargs(target)) as client:
            client.ping()
    except AuthenticationError as exc:
        raise ConfigError(
            f"REDIS_PASSWORD: the primary at {host}:{port} refused it: {exc}"
        ) from None
    except (RedisError, OSError) as exc:
        logger.debug("start-up probe of the primary %s:%d: %s", host, port, exc)


def _node_kwargs(target: PostroomRedisSettings) -> dict[str, Any]:
    return {
        "username": target.username,
        "password": target.password,
        "ssl": target.ssl,
        "ssl_ca_certs": target.ssl_ca_certs,
        "socket_connect_timeout": target.conn_timeout,
        "socket_timeout": target.conn_timeout,
    }


def check_server(target: PostroomRedisSettings, variable: str) -> None:
    """A REDIS_URL that is in fact a sentinel or a Cluster node is refused; an unreachable one
    is waited for."""
    try:
        with redis.Redis(host=str(target.host), port=target.port, **_node_kwargs(target)) as client:
            mode = _mode(client)
    except (RedisError, OSError) as exc:
        logger.debug("start-up probe of %s: %s", describe(target), exc)
        return
    if mode == "sentinel":
        raise ConfigError(
            f"{variable}: {target.host}:{target.port} is a Redis Sentinel, not a data server: "
            f"set {SENTINELS}={target.host}:{target.port} and {SENTINEL_MASTER} instead"
        )
    if mode == "cluster":
        raise ConfigError(
            f"{variable}: {target.host}:{target.port} is a node of a Redis Cluster, whose other "
            f"slots one connection cannot reach: set POSTROOM_REDIS_CLUSTER="
            f"{target.host}:{target.port} instead"
        )


def check_deployment(target: PostroomRedisSettings, settings: PostroomSettings) -> None:
    """Stop with a ConfigError naming the setting when `target` cannot be the right Redis."""
    if target.sentinel:
        check_sentinels(target)
    elif target.unix_socket_path is None:
        check_server(target, "REDIS_URL" if settings.redis_url else "REDIS_HOST")
