"""The example web app as it is deployed: a `postroom worker` process and the app under
uvicorn in another, sharing the suite's Redis and one SQLite store, for the module's tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from config.settings import PostroomSettings, load_settings
from tests.conftest import ROOT
from workers.connection.redis_server import EmbeddedRedis

STARTUP_DEADLINE = 60.0
STOP_DEADLINE = 30.0


@dataclass(frozen=True)
class ExampleApp:
    base_url: str
    ws_url: str
    settings: PostroomSettings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def environment(settings: PostroomSettings) -> dict[str, str]:
    """The processes' environment: the test's settings, nothing of the developer's own."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("REDIS_", "POSTROOM_", "USE_QUEUE_EVENT_BUS", "DATABASE_URL"))
    }
    return {
        **env,
        "REDIS_URL": str(settings.redis_url),
        "POSTROOM_KEY_PREFIX": settings.key_prefix,
        "POSTROOM_DATA_DIR": str(settings.data_dir),
        "POSTROOM_TASK_MODULES": "tasks",
    }


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM and wait (both servers drain on it); SIGKILL if it hangs, and fail."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_DEADLINE)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_DEADLINE)
        raise AssertionError(f"pid {process.pid} ignored SIGTERM for {STOP_DEADLINE:g}s") from None


def wait_until_serving(base_url: str, app: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_DEADLINE
    with httpx.Client(base_url=base_url, timeout=5) as http:
        while True:
            if app.poll() is not None:
                raise AssertionError(f"the app exited with {app.returncode} during startup")
            try:
                if http.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the app did not serve within {STARTUP_DEADLINE:g}s")
            time.sleep(0.1)


@pytest.fixture(scope="module")
def example_app(
    redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ExampleApp]:
    """The worker and the app, started once for the module (each takes a few seconds)."""
    data_dir: Path = tmp_path_factory.mktemp("example")
    settings = load_settings(
        redis_url=redis_server.url, key_prefix=f"test-{uuid.uuid4().hex[:10]}", data_dir=data_dir
    )
    env = environment(settings)
    port = free_port()
    # The app first: its startup migrates the store the worker then writes.
    app = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "examples.webapp.app:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=ROOT,
        env=env,
    )
    worker: subprocess.Popen[bytes] | None = None
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_until_serving(base_url, app)
        worker = subprocess.Popen([sys.executable, "-m", "workers", "worker"], cwd=ROOT, env=env)
        yield ExampleApp(base_url, f"ws://127.0.0.1:{port}", settings)
    finally:
        try:
            stop(app)
        finally:
            if worker is not None:
                stop(worker)
