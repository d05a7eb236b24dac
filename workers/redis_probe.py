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
from workers.connections import PostroomRedisSettings, describe, sentinel_kwargs

logger = logging.getLogger(__name__)

SENTINELS = "POSTROOM_REDIS_SENTINELS"
SENTINEL_MASTER = "POSTROOM_REDIS_SENTINEL_MASTER"
SENTINEL_PASSWORD = "POSTROOM_REDIS_SENTINEL_PASSWORD"


def _mode(client: redis.Redis) -> str:
    """ "sentinel", "standalone" or "cluster", as the server's INFO says."""
    info = cast(dict[str, Any], client.info("server"))
    return str(info.get("redis_mode") or info.get("server_mode") or "standalone")


def check_sentinels(target: PostroomRedisSettings) -> None:
    """Every listed address must be a sentinel, one must answer, and know the service."""
    answering: list[tuple[str, redis.Redis]] = []
    unreachable: list[str] = []
    try:
        for host, port in cast(list[tuple[str, int]], target.host):
            address = f"{host}:{port}"
            client = redis.Redis(host=host, port=port, **sentinel_kwargs(target))
            answering.append((address, client))
            try:
                mode = _mode(client)
            except AuthenticationError as exc:
                raise ConfigError(
                    f"{SENTINEL_PASSWORD}: the sentinel at {address} refused it: {exc}"
                ) from None
            except (RedisError, OSError) as exc:
                unreachable.append(f"{address} ({exc})")
                answering.pop()
                client.close()
                continue
            if mode != "sentinel":
                raise ConfigError(
                    f"{SENTINELS}: {address} is a Redis server in {mode} mode, not a sentinel: "
                    f"list the sentinels' addresses (often port 26379), or set REDIS_URL to "
                    f"use that server alone"
                )
        if not answering:
            raise ConfigError(f"{SENTINELS}: no sentinel answered: {', '.join(unreachable)}")
        if unreachable:
            logger.warning("sentinels not answering: %s", ", ".join(unreachable))
        for _, client in answering:
            primary = client.sentinel_get_master_addr_by_name(target.sentinel_master)  # type: ignore[no-untyped-call]
            if primary is not None:
                return
        masters = answering[0][1].sentinel_masters()  # type: ignore[no-untyped-call]
        watched = sorted(cast(dict[str, Any], masters))
        raise ConfigError(
            f"{SENTINEL_MASTER}: the sentinels ({describe(target)}) watch no service "
            f"{target.sentinel_master!r}; they watch: {', '.join(watched) or 'none'}"
        )
    finally:
        for _, client in answering:
            client.close()


def check_server(target: PostroomRedisSettings, variable: str) -> None:
    """A REDIS_URL that is in fact a sentinel is refused; an unreachable one is waited for."""
    try:
        with redis.Redis(
            host=str(target.host),
            port=target.port,
            username=target.username,
            password=target.password,
            ssl=target.ssl,
            ssl_ca_certs=target.ssl_ca_certs,
            socket_connect_timeout=target.conn_timeout,
            socket_timeout=target.conn_timeout,
        ) as client:
            mode = _mode(client)
    except (RedisError, OSError) as exc:
        logger.debug("start-up probe of %s: %s", describe(target), exc)
        return
    if mode == "sentinel":
        raise ConfigError(
            f"{variable}: {target.host}:{target.port} is a Redis Sentinel, not a data server: "
            f"set {SENTINELS}={target.host}:{target.port} and {SENTINEL_MASTER} instead"
        )


def check_deployment(target: PostroomRedisSettings, settings: PostroomSettings) -> None:
    """Stop with a ConfigError naming the setting when `target` cannot be the right Redis."""
    if target.sentinel:
        check_sentinels(target)
    elif target.unix_socket_path is None:
        check_server(target, "REDIS_URL" if settings.redis_url else "REDIS_HOST")
