"""Every Redis connection postroom opens (workers, cron, client, admin API, CLI) is built here.

A Sentinel deployment is reached through redis-py's `SentinelConnectionPool`: each new
connection asks the sentinels for the current primary, and a connection that hears READONLY
(its server was demoted) is dropped and reported as a ConnectionError. So after a failover
the next connection goes to the new primary by itself; the errors in between are transient
(workers/connection/transient.py) and every caller already retries those. arq's own
Sentinel path builds the same pool but drops the sentinels' credentials, the CA file and
the connect timeout, so it is not used: this module builds both kinds of pool, always an `ArqRedis`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass
from typing import Any, cast

from arq.connections import ArqRedis, RedisSettings
from arq.constants import default_queue_name, expires_extra_ms
from arq.jobs import Deserializer, Serializer
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.exceptions import RedisError

from config.settings import PostroomSettings
from workers.connection.redis_refusal import never_mends

logger = logging.getLogger(__name__)


@dataclass
class PostroomRedisSettings(RedisSettings):
    """arq's settings (so `arq workers.Settings` takes them) plus the sentinels' credentials."""

    sentinel_username: str | None = None
    sentinel_password: str | None = None

    def __repr__(self) -> str:
        """arq's repr lists every field, the passwords among them: this one shows neither."""
        return f"PostroomRedisSettings({describe(self)}, username={self.username!r})"


def redis_settings(settings: PostroomSettings) -> PostroomRedisSettings:
    """Where `settings` point: the sentinels, REDIS_URL (or REDIS_HOST), else the embedded port."""
    tls = tls_options(settings)
    if settings.redis_sentinels:
        password = settings.redis_password
        sentinel_password = settings.redis_sentinel_password
        return PostroomRedisSettings(
            host=list(settings.redis_sentinels),
            sentinel=True,
            sentinel_master=settings.redis_sentinel_master,
            username=settings.redis_username,
            password=password.get_secret_value() if password else None,
            database=settings.redis_db,
            ssl=settings.redis_tls,
            sentinel_username=settings.redis_sentinel_username,
            sentinel_password=sentinel_password.get_secret_value() if sentinel_password else None,
            **tls,
        )
    dsn = settings.redis_dsn() or f"redis://127.0.0.1:{settings.embedded_redis_port}"
    found = asdict(RedisSettings.from_dsn(dsn))
    found["ssl"] = found["ssl"] or settings.redis_tls
    if found["password"] is None and settings.redis_password is not None:
        # A REDIS_URL without credentials takes REDIS_USERNAME/REDIS_PASSWORD, so the
        # password need not sit in a URL (which more tools print).
        found["password"] = settings.redis_password.get_secret_value()
        found["username"] = found["username"] or settings.redis_username
    return PostroomRedisSettings(**{**found, **tls})


def tls_options(settings: PostroomSettings) -> dict[str, Any]:
    """redis-py's TLS options of the settings' files (they apply only where TLS is on)."""

    def path(file: object) -> str | None:
        return str(file) if file else None

    return {
        "ssl_ca_certs": path(settings.redis_ca_file),
        "ssl_certfile": path(settings.redis_cert_file),
        "ssl_keyfile": path(settings.redis_key_file),
        "ssl_check_hostname": settings.redis_tls_check_hostname,
    }


def describe(redis: RedisSettings) -> str:
    """For log lines and error messages: where a pool connects, without its credentials."""
    scheme = "rediss" if redis.ssl else "redis"
    if redis.sentinel:
        addresses = cast(list[tuple[str, int]], redis.host)
        sentinels = ",".join(f"{host}:{port}" for host, port in addresses)
        return f"{scheme}+sentinel://{sentinels}/{redis.sentinel_master}"
    return f"{scheme}://{redis.host}:{redis.port}/{redis.database}"


class _SentinelPool(SentinelConnectionPool):
    """Closing the pool closes the connections to the sentinels too (redis-py leaves them)."""

    async def disconnect(self, inuse_connections: bool = True) -> None:
        await super().disconnect(inuse_connections)
        if inuse_connections:  # a full close, not a change of primary
            for sentinel in self.sentinel_manager.sentinels:
                await sentinel.aclose()


def sentinel_kwargs(redis: RedisSettings) -> dict[str, Any]:
    """How to connect to a sentinel: its own credentials, the deployment's TLS."""
    sentinel = redis if isinstance(redis, PostroomRedisSettings) else None
    return {
        "username": sentinel.sentinel_username if sentinel else None,
        "password": sentinel.sentinel_password if sentinel else None,
        "ssl": redis.ssl,
        "ssl_ca_certs": redis.ssl_ca_certs,
        "ssl_certfile": redis.ssl_certfile,
        "ssl_keyfile": redis.ssl_keyfile,
        "ssl_cert_reqs": redis.ssl_cert_reqs,
        "ssl_check_hostname": redis.ssl_check_hostname,
        "socket_connect_timeout": redis.conn_timeout,
        "socket_timeout": redis.conn_timeout,  # a sentinel answers at once or not at all
    }


def arq_redis(redis: RedisSettings, **arq: Any) -> ArqRedis:
    """A pool for `redis` (no connection is made yet); `arq` holds ArqRedis's own options."""
    tls: dict[str, Any] = {
        "ssl_keyfile": redis.ssl_keyfile,
        "ssl_certfile": redis.ssl_certfile,
        "ssl_cert_reqs": redis.ssl_cert_reqs,
        "ssl_ca_certs": redis.ssl_ca_certs,
        "ssl_ca_data": redis.ssl_ca_data,
        "ssl_check_hostname": redis.ssl_check_hostname,
    }
    node: dict[str, Any] = {
        "db": redis.database,
        "username": redis.username,
        "password": redis.password,
        "encoding": "utf8",
        "socket_connect_timeout": redis.conn_timeout,
        "retry": redis.retry,
        "retry_on_timeout": redis.retry_on_timeout,
        "retry_on_error": redis.retry_on_error,
        "max_connections": redis.max_connections,
    }
    if not redis.sentinel:
        return ArqRedis(
            host=redis.host,
            port=redis.port,
            unix_socket_path=redis.unix_socket_path,
            ssl=redis.ssl,
            **tls,
            **node,
            **arq,
        )
    if isinstance(redis.host, str):
        raise ValueError("a Sentinel deployment needs a list of (host, port) sentinels")
    sentinels = Sentinel(redis.host, sentinel_kwargs=sentinel_kwargs(redis))  # type: ignore[no-untyped-call]
    # The SSL options reach the data nodes' connections only when TLS is on.
    data = {**node, "ssl": redis.ssl, **(tls if redis.ssl else {})}
    pool = _SentinelPool(redis.sentinel_master, sentinels, **data)  # type: ignore[no-untyped-call]
    client = ArqRedis(pool, **arq)
    client.auto_close_connection_pool = True
    return client


async def create_pool(
    redis: RedisSettings | None,
    *,
    job_serializer: Serializer | None = None,
    job_deserializer: Deserializer | None = None,
    default_queue_name: str = default_queue_name,
    expires_extra_ms: int = expires_extra_ms,
) -> ArqRedis:
    """arq's `create_pool` for postroom's settings: connected, retried `conn_retries` times
    (a refused password, permission or TLS handshake is raised at once)."""
    redis = redis or RedisSettings()
    retry = 0
    while True:
        pool = arq_redis(
            redis,
            job_serializer=job_serializer,
            job_deserializer=job_deserializer,
            default_queue_name=default_queue_name,
            expires_extra_ms=expires_extra_ms,
        )
        try:
            await pool.ping()
        except (TimeoutError, RedisError, OSError) as exc:
            await pool.aclose()
            if retry >= redis.conn_retries or never_mends(exc):
                raise
            retry += 1
            logger.warning(
                "Redis at %s: %s: %s; %d retries left",
                describe(redis),
                type(exc).__name__,
                exc,
                redis.conn_retries - retry + 1,
            )
            await asyncio.sleep(redis.conn_retry_delay)
        else:
            return pool
