"""A Sentinel deployment: one primary, one replica, three sentinels, quick to fail over.

`down-after-milliseconds` 1000 and a short failover timeout make a failover take seconds;
the set is ready once the replica is in sync and every sentinel sees the replica and the
two other sentinels (found through their hello messages).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.servers.processes import HOST, ServerProcess, wait_until

SERVICE = "mymaster"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000
# Nothing to disk, and a full sync streamed at once: a replica is in sync within moments.
DATA_NODE_ARGS = ["--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0"]


class SentinelSet:
    """The five processes, and what a test does to them (kill the primary, bring it back)."""

    def __init__(
        self,
        directory: Path,
        *,
        password: str | None = None,
        sentinel_password: str | None = None,
        process: Callable[[Path, list[str], str | None], ServerProcess] = ServerProcess,
    ) -> None:
        """`password` guards the data nodes, `sentinel_password` the sentinels; `process`
        builds each server (a TLS variant, say)."""
        self.directory = directory
        self.password = password
        self.sentinel_password = sentinel_password
        auth = ["--requirepass", password, "--masterauth", password] if password else []
        self.nodes = [
            process(directory / name, [*DATA_NODE_ARGS, *auth], password)
            for name in ("node-a", "node-b")
        ]
        self.sentinels = [
            process(
                directory / f"sentinel-{i}",
                [str(directory / f"sentinel-{i}.conf")],
                sentinel_password,
            )
            for i in range(3)
        ]

    @property
    def addresses(self) -> str:
        """The value of POSTROOM_REDIS_SENTINELS."""
        return ",".join(sentinel.address for sentinel in self.sentinels)

    def start(self) -> SentinelSet:
        primary, replica = self.nodes
        primary.start()
        replica.start("--replicaof", HOST, str(primary.port))
        for sentinel in self.sentinels:
            sentinel.directory.mkdir(parents=True, exist_ok=True)
            config = [
                f"sentinel monitor {SERVICE} {HOST} {primary.port} 2",
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}",
                f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}",
                f"sentinel parallel-syncs {SERVICE} 1",
            ]
            if self.password:
                config.append(f"sentinel auth-pass {SERVICE} {self.password}")
            if self.sentinel_password:  # the sentinels' own, which they also give each other
                config += [
                    f"requirepass {self.sentinel_password}",
                    f"sentinel sentinel-pass {self.sentinel_password}",
                ]
            Path(sentinel.args[0]).write_text("\n".join(config) + "\n")
            sentinel.start("--sentinel")
        self.wait_ready(replica)
        return self

    def wait_ready(self, replica: ServerProcess) -> None:
        """Until the replica is in sync and each sentinel sees it and the other two."""

        def in_sync() -> bool:
            with replica.client() as client:
                return bool(client.info("replication").get("master_link_status") == "up")

        def sentinels_agree() -> bool:
            for sentinel in self.sentinels:
                with sentinel.client() as client:
                    state = client.sentinel_master(SERVICE)
                    if state["num-slaves"] < 1 or state["num-other-sentinels"] < 2:
                        return False
                    if int(state["port"]) != self.primary().port:
                        return False
            return True

        wait_until(in_sync, f"{replica.address} is in sync with its primary")
        wait_until(sentinels_agree, "every sentinel sees the replica and the other sentinels")

    def primary_port(self) -> int:
        """The primary as the sentinels' majority reports it now."""
        ports = []
        for sentinel in self.sentinels:
            with sentinel.client() as client:
                _, port = client.sentinel_get_master_addr_by_name(SERVICE)
                ports.append(int(port))
        return max(set(ports), key=ports.count)

    def primary(self) -> ServerProcess:
        port = self.primary_port()
        return next(node for node in self.nodes if node.port == port)

    def kill_primary(self) -> ServerProcess:
        primary = self.primary()
        primary.kill()
        return primary

    def wait_for_failover(self, old: ServerProcess) -> ServerProcess:
        """Until the sentinels name another primary, which then takes writes."""

        def promoted() -> bool:
            if self.primary_port() == old.port:
                return False
            with self.primary().client() as client:
                return bool(client.info("replication").get("role") == "master")

        wait_until(promoted, f"the sentinels promote a replica after {old.address} died")
        return self.primary()

    def rejoin(self, node: ServerProcess) -> None:
        """Start a dead node again as a replica of the current primary (as an operator would;
        the sentinels would demote it anyway), and wait until it is in sync."""
        node.start("--replicaof", HOST, str(self.primary_port()))
        self.wait_ready(node)

    def stop(self) -> None:
        for process in [*self.sentinels, *self.nodes]:
            process.stop()


@contextlib.contextmanager
def started(deployment: SentinelSet) -> Iterator[SentinelSet]:
    try:
        yield deployment.start()
    finally:
        deployment.stop()


@pytest.fixture
def sentinel_set(tmp_path: Path) -> Iterator[SentinelSet]:
    """A fresh set for a test that kills its primary."""
    with started(SentinelSet(tmp_path / "sentinel-set")) as deployment:
        yield deployment


@pytest.fixture(scope="module")
def guarded_sentinel_set(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    """One set per module for tests that leave it as they found it; its data nodes and its
    sentinels each want a password of their own."""
    directory = tmp_path_factory.mktemp("guarded-sentinel-set")
    deployment = SentinelSet(directory, password="data-pw", sentinel_password="sentinel-pw")
    with started(deployment) as running:
        yield running
