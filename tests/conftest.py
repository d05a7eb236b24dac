"""A real Redis for the whole session (the embedded server the runtime uses) and helpers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

import tests.sample_tasks  # noqa: F401 - registers the tasks the tests enqueue
from config.settings import PostroomSettings, load_settings
from workers.client import PostroomClient
from workers.connection.redis_server import EmbeddedRedis, resolve_redis
from workers.registry import registry
from workers.runner.supervisor import Supervisor
from workers.runtime import Runtime

ROOT = Path(__file__).resolve().parent.parent

# Real local servers: SQLite and PostgreSQL databases, an SMTP server with its CA, a Redis
# Cluster, Redis servers wanting a password, ACL users or TLS, a Sentinel set, a RabbitMQ
# broker; and OpenTelemetry's in-memory exporter.
pytest_plugins = [
    "tests.databases",
    "tests.mail_server",
    "tests.servers.cluster",
    "tests.servers.guarded",
    "tests.servers.sentinel",
    "tests.servers.tls",
    "tests.servers.rabbitmq",
    "tests.traces",
]


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own REDIS_URL or POSTROOM_* settings must not leak into a test."""
    for name in list(os.environ):
        if name.startswith(("REDIS_", "POSTROOM_", "USE_QUEUE_EVENT_BUS", "RABBITMQ_")):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def settings(redis_server: EmbeddedRedis, tmp_path: Path) -> PostroomSettings:
    """Settings isolated by a unique key prefix, so tests never see each other's jobs."""
    return load_settings(
        redis_url=redis_server.url,
        key_prefix=f"test-{uuid.uuid4().hex[:10]}",
        data_dir=tmp_path,
        shutdown_grace=5,
    )


@pytest.fixture
async def client(settings: PostroomSettings) -> AsyncIterator[PostroomClient]:
    async with await PostroomClient.connect(settings) as c:
        yield c


@contextlib.asynccontextmanager
async def running_worker(settings: PostroomSettings, **kwargs: Any) -> AsyncIterator[Supervisor]:
    """A real supervisor serving `settings` in this event loop until the block ends."""
    supervisor = Supervisor(
        Runtime(settings), kwargs.pop("tasks", registry), resolve_redis(settings)[0], **kwargs
    )
    run = asyncio.create_task(supervisor.run())
    try:
        yield supervisor
    finally:
        await supervisor.stop()
        await run


def worker_env(settings: PostroomSettings, **extra: str) -> dict[str, str]:
    target = (
        {"POSTROOM_REDIS_CLUSTER": ",".join(settings.redis_cluster)}
        if settings.redis_cluster
        else {"REDIS_URL": str(settings.redis_url)}
    )
    return {
        **os.environ,
        **target,
        "POSTROOM_KEY_PREFIX": settings.key_prefix,
        "POSTROOM_TASK_MODULES": "tests.sample_tasks",
        "POSTROOM_DATA_DIR": str(settings.data_dir),
        **_encryption_env(settings),
        **extra,
    }


def _encryption_env(settings: PostroomSettings) -> dict[str, str]:
    """The keyring of `settings`: a worker without it could not open the jobs it seals."""
    encryption = settings.encryption
    env = {}
    if encryption.keys:
        keys = {k: v.get_secret_value() for k, v in encryption.keys.items()}
        env["POSTROOM_ENCRYPTION__KEYS"] = orjson.dumps(keys).decode()
    if encryption.active_key_id is not None:
        env["POSTROOM_ENCRYPTION__ACTIVE_KEY_ID"] = encryption.active_key_id
    if settings.payload_encryption is not None:
        env["POSTROOM_PAYLOAD_ENCRYPTION"] = str(settings.payload_encryption).lower()
    return env


def spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A worker in its own process (so a test can signal or kill it), run from the repo root.

    Its output goes where the test's goes, so pytest shows it when the test fails.
    """
    return subprocess.Popen(args, cwd=ROOT, env=env)


def postroom_worker(settings: PostroomSettings, *args: str, **env: str) -> subprocess.Popen[bytes]:
    return spawn([sys.executable, "-m", "workers", "worker", *args], worker_env(settings, **env))


async def eventually(check: Callable[[], Awaitable[bool]], what: str, within: float = 60) -> None:
    """Poll `check` until it holds; fail after `within` seconds (a bound, never a sleep)."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g}s waiting until {what}")
        await asyncio.sleep(0.05)
