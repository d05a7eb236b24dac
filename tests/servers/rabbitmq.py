"""A RabbitMQ broker of the test session's own (or `RABBITMQ_URL`'s, when given).

Debian's `rabbitmq-server` (scripts/install-rabbitmq installs it) runs as a node of its own:
its own node name, AMQP port, distribution port and epmd port (so it neither joins nor
disturbs a RabbitMQ or epmd this machine runs), data and logs in a temporary directory, no
plugins. The broker-restart test stops and starts it again on the same data directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers.processes import HOST, free_port, wait_until

# The server script itself: Debian's /usr/sbin/rabbitmq-server wrapper would switch to the
# rabbitmq user and its /var/lib directories.
SERVER_SCRIPTS = ("/usr/lib/rabbitmq/bin/rabbitmq-server",)


def _server_script() -> str:
    for path in SERVER_SCRIPTS:
        if os.access(path, os.X_OK):
            return path
    found = shutil.which("rabbitmq-server")
    if found is None:
        raise RuntimeError("rabbitmq-server is not installed: run scripts/install-rabbitmq")
    return found


class RabbitMQServer:
    """One broker node in `directory`; `url` is its AMQP URL (guest may log in over loopback)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.node = f"postroom-test-{self.port}@localhost"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{HOST}:{self.port}/"

    def _env(self) -> dict[str, str]:
        d = self.directory
        (d / "rabbitmq.conf").write_text(f"listeners.tcp.default = {HOST}:{self.port}\n")
        (d / "enabled_plugins").write_text("[].\n")
        (d / "rabbitmq-env.conf").write_text("")
        return {
            **os.environ,
            "HOME": str(d),  # its Erlang cookie
            "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": HOST,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": HOST,
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(d / "plugins"),
            "RABBITMQ_LOGS": "-",
        }

    def start(self) -> RabbitMQServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / "server.log").open("ab") as log:
            self.process = subprocess.Popen(
                [_server_script()],
                env=self._env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until(self._ready, f"RabbitMQ answers AMQP on {HOST}:{self.port}", within=90)
        return self

    def _ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            log = (self.directory / "server.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"rabbitmq-server exited with {self.process.returncode}:\n{log}")
        import socket

        with socket.create_connection((HOST, self.port), timeout=1) as sock:
            # The AMQP 0-9-1 header: a broker that is up answers with connection.start.
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            return sock.recv(8)[:1] == b"\x01"

    def stop(self) -> None:
        """SIGTERM: the node shuts down cleanly (what a broker restart does)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def stop_epmd(self) -> None:
        """The node started an epmd on its own port; it outlives the node."""
        env = {**os.environ, "ERL_EPMD_PORT": str(self.epmd_port)}
        epmd = shutil.which("epmd")
        if epmd is not None:
            subprocess.run([epmd, "-kill"], env=env, capture_output=True, check=False)


class Broker:
    """What the tests get: the URL, and the server when this session runs it (else None)."""

    def __init__(self, url: str, server: RabbitMQServer | None) -> None:
        self.url = url
        self.server = server

    def exchange(self) -> str:
        """An exchange name no other test uses, so tests never see each other's events."""
        return f"test-{uuid.uuid4().hex[:10]}.events"


@pytest.fixture(scope="session")
def rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    url = os.environ.get("RABBITMQ_URL")
    if url:
        yield Broker(url, None)
        return
    server = RabbitMQServer(tmp_path_factory.mktemp("rabbitmq"))
    try:
        server.start()
        yield Broker(server.url, server)
    finally:
        server.stop()
        server.stop_epmd()


@pytest.fixture
def restartable_rabbitmq(
    rabbitmq: Broker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Broker]:
    """A broker the test may restart: the session's own, or (when RABBITMQ_URL names
    someone else's) one started for this test alone."""
    if rabbitmq.server is not None:
        yield rabbitmq
        return
    server = RabbitMQServer(tmp_path_factory.mktemp("rabbitmq-restart"))
    try:
        server.start()
        yield Broker(server.url, server)
    finally:
        server.stop()
        server.stop_epmd()
