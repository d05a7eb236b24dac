"""The embedded Redis keeps queued jobs across a restart and is chosen only without REDIS_URL."""

from __future__ import annotations

from pathlib import Path

import redis

from config.settings import load_settings
from workers.connection.redis_server import EmbeddedRedis, resolve_redis


def test_embedded_redis_keeps_its_data_across_a_restart(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path) as server:
        port = server.port
        with redis.Redis(port=port) as r:
            r.zadd("queue", {"job-1": 1})
    with EmbeddedRedis(tmp_path, port=port) as server, redis.Redis(port=server.port) as r:
        assert r.zrange("queue", 0, -1) == [b"job-1"]


def test_redis_url_is_used_and_nothing_is_started(tmp_path: Path) -> None:
    settings = load_settings(redis_url="rediss://user:pw@cache.internal:6380/2", data_dir=tmp_path)
    redis_settings, server = resolve_redis(settings)
    assert server is None
    assert (redis_settings.host, redis_settings.port, redis_settings.database) == (
        "cache.internal",
        6380,
        2,
    )
    assert redis_settings.ssl
    assert not (tmp_path / "redis").exists()


def test_without_redis_url_an_embedded_server_is_started(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "probe") as probe:
        free_port = probe.port  # a port known to be free once the probe stops
    settings = load_settings(data_dir=tmp_path, embedded_redis_port=free_port)
    redis_settings, server = resolve_redis(settings)
    assert server is not None
    try:
        with redis.Redis(port=redis_settings.port) as r:
            assert r.ping()
        assert (tmp_path / "redis").is_dir()
    finally:
        server.stop()
