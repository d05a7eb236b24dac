"""The measurements. Each starts its own Redis, so each sees a system cold and alone.

Completion is read from the counter every job INCRs (see `benchmarks.jobs`), polled every
5 ms. Throughput runs from the first completed job to the last, so interpreter start-up and
imports (0.3 to 2 s, depending on the library) are not charged as throughput; the figure from
the worker's spawn is kept in results.json too.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import redis

from benchmarks import jobs, processes, servers
from benchmarks.systems import System

POLL = 0.005
# A drain in which no job finishes for this long has failed (a worker that died or hangs).
STALL = 30.0
# Hard bound on any one drain, whatever its progress.
DRAIN_LIMIT = 900.0


class MeasurementError(Exception):
    """One measurement of one system failed; the others go on."""


@dataclass(frozen=True)
class Sizes:
    """Job counts; the defaults are the spec's, `--quick` uses `Sizes.quick()`."""

    enqueue: int = 20_000
    drain: int = 20_000
    io: int = 5_000
    io_sleep: float = 0.01
    e2e: int = 10_000
    latency: int = 500
    latency_rate: float = 200.0
    rss: int = 100_000
    # How long the RSS worker runs (after its first job) if it has not drained by then.
    rss_window: float = 20.0

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            enqueue=2_000, drain=2_000, io=500, e2e=1_000, latency=100, rss=10_000, rss_window=5.0
        )


@dataclass
class Harness:
    """Where things live, and how subprocesses of a system are started."""

    root: Path
    scratch: Path
    logs: Path
    concurrency: int = 100
    sizes: Sizes = field(default_factory=Sizes)
    _log_counter: int = 0

    def python(self, system: System) -> str:
        return str(self.root / system.venv / "bin" / "python")

    def env(self, url: str) -> dict[str, str]:
        """The parent's environment without anything that could point a system elsewhere."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("REDIS_", "POSTROOM_", "BENCH_REDIS", "VIRTUAL_ENV"))
        }
        env.update(
            BENCH_REDIS_URL=url,
            BENCH_CONCURRENCY=str(self.concurrency),
            PYTHONPATH=str(self.root / "scripts"),
            PYTHONUNBUFFERED="1",
        )
        return env

    def log(self, system: System, what: str) -> Path:
        self._log_counter += 1
        return self.logs / f"{self._log_counter:04d}-{system.name}-{what}.log"

    def agent(self, system: System, url: str, *args: str, timeout: float) -> dict[str, Any]:
        argv = [self.python(system), "-m", "benchmarks.agent", system.name, *args]
        log = self.log(system, args[0])
        try:
            out = processes.run(argv, self.env(url), self.scratch, log, timeout)
        except RuntimeError as exc:
            raise MeasurementError(str(exc)) from None
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return result

    @contextlib.contextmanager
    def worker(
        self, system: System, url: str, what: str, processes_: int = 1
    ) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
        argv = [self.python(system), "-m", "benchmarks.agent", system.name, "worker"]
        if processes_ > 1:
            argv += ["--processes", str(processes_)]
        log = self.log(system, what)
        with processes.running(argv, self.env(url), self.scratch, log) as proc:
            yield proc, log

    def fill(self, system: System, url: str, task: str, count: int, mode: str = "fill") -> float:
        """Queue `count` jobs: as fast as the library allows (bulk, or many in flight) for
        `fill`, or one awaited call after another for `one`. Returns the enqueue rate."""
        args = ["enqueue", "--task", task, "--count", str(count), "--mode", mode]
        rate: float = self.agent(system, url, *args, timeout=max(600.0, count / 20))["rate"]
        return rate


def _counter(client: redis.Redis) -> int:
    return int(cast(bytes | None, client.get(jobs.DONE_KEY)) or 0)


@dataclass
class Progress:
    """Follows the done-counter until a target, failing on a dead or stalled worker."""

    client: redis.Redis
    proc: subprocess.Popen[bytes]
    log: Path
    spawned: float
    polls: int = 0
    first_at: float | None = None
    first_count: int = 0
    # CPU seconds of the worker's process tree and of Redis when the first job was seen done.
    first_cpu: tuple[float, float] = (0.0, 0.0)
    done: int = 0

    def wait(self, target: int, limit: float = DRAIN_LIMIT) -> float:
        """Poll until `target` jobs are done (or `limit` s passed); returns when it was seen."""
        last, last_change = -1, time.monotonic()
        while True:
            self.done = _counter(self.client)
            self.polls += 1
            now = time.monotonic()
            if self.done and self.first_at is None:
                self.first_at, self.first_count = now, self.done
                self.first_cpu = (
                    processes.cpu_seconds(self.proc.pid),
                    servers.cpu_seconds(self.client),
                )
            if self.done >= target or now - self.spawned > limit:
                return now
            if self.done != last:
                last, last_change = self.done, now
            elif now - last_change > STALL:
                raise MeasurementError(
                    f"no job finished for {STALL:g}s ({self.done}/{target} done); worker log:\n"
                    + processes.tail(self.log)
                )
            if self.proc.poll() is not None:
                raise MeasurementError(
                    f"worker exited with {self.proc.returncode} after {self.done}/{target} "
                    f"jobs; worker log:\n{processes.tail(self.log)}"
                )
            time.sleep(POLL)


def enqueue_rate(h: Harness, system: System, mode: str) -> dict[str, float]:
    """Jobs/s of `enqueue` no-op enqueues, one awaited call each (`one`) or 1000 per call."""
    with servers.fresh_redis(h.scratch) as server:
        args = ["enqueue", "--count", str(h.sizes.enqueue), "--mode", mode]
        result = h.agent(system, server.url, *args, timeout=600)
    return {f"enqueue_{mode}": result["rate"]}


def drain(
    h: Harness, system: System, task: str, count: int, procs: int = 1, fill: str = "fill"
) -> dict[str, Any]:
    """Pre-queue `count` jobs, then time one worker (or `procs`) from idle to all done.

    With `fill="one"` the jobs are queued one awaited call at a time and that rate is returned
    as `enqueue_one`: the enqueue measurement and the drain then share one queue, which saves
    a second 20,000-job enqueue per system and run. Also returns the Redis commands per job
    over the drain (commandstats deltas, less the benchmark's own counter INCRs and polling
    GETs), the CPU time per job of the worker and of Redis, and the worker's peak RSS.
    """
    with servers.fresh_redis(h.scratch) as server:
        client = servers.connect(server)
        enqueue_rate = h.fill(system, server.url, task, count, fill)
        before = servers.command_calls(client)
        spawned = time.monotonic()
        with h.worker(system, server.url, f"drain-{task}-{procs}p", procs) as (proc, log):
            progress = Progress(client, proc, log, spawned)
            end = progress.wait(count)
            if progress.done < count:
                raise MeasurementError(
                    f"only {progress.done}/{count} jobs done in {DRAIN_LIMIT:g}s"
                )
            after = servers.command_calls(client)
            worker_cpu = processes.cpu_seconds(proc.pid) - progress.first_cpu[0]
            redis_cpu = servers.cpu_seconds(client) - progress.first_cpu[1]
            rss_kib = processes.peak_rss_kib(proc.pid)
        client.close()
    first = progress.first_at or spawned
    ran = count - progress.first_count
    timed = end - first
    deltas = {k: v - before.get(k, 0) for k, v in after.items() if k != "info"}
    # The jobs' own counter: redis-py's incr() sends INCRBY.
    deltas["incrby"] = deltas.get("incrby", 0) - progress.done
    deltas["get"] = deltas.get("get", 0) - progress.polls  # this loop's polls
    deltas = {k: v for k, v in sorted(deltas.items(), key=lambda kv: -kv[1]) if v > 0}
    return {
        **({"enqueue_one": enqueue_rate} if fill == "one" else {}),
        "throughput": ran / timed if ran > 0 and timed > 0 else count / (end - spawned),
        "throughput_from_spawn": count / (end - spawned),
        "commands_per_job": sum(deltas.values()) / count,
        "commands": deltas,
        # From the first job done to the last, as the throughput (start-up excluded).
        "worker_cpu_us_per_job": worker_cpu / max(ran, 1) * 1e6,
        "redis_cpu_us_per_job": redis_cpu / max(ran, 1) * 1e6,
        # How many of the machine's cores the worker and Redis kept busy meanwhile.
        "cores_busy": (worker_cpu + redis_cpu) / timed if timed > 0 else 0.0,
        "peak_rss_mib": rss_kib / 1024,
    }


def end_to_end(h: Harness, system: System, task: str) -> dict[str, Any]:
    """Jobs/s with the producer and a running worker together: one awaited enqueue after
    another into an idle worker, timed from the first enqueue to the last job done."""
    count = h.sizes.e2e
    with servers.fresh_redis(h.scratch) as server, h.worker(system, server.url, f"e2e-{task}"):
        args = ["e2e", "--task", task, "--count", str(count)]
        got = h.agent(system, server.url, *args, timeout=420 + count / 100)
    return {"throughput": got["rate"], "enqueue_rate": got["enqueue_rate"]}


def latency(h: Harness, system: System) -> dict[str, Any]:
    """Enqueue-to-start of probes sent at a steady rate into an idle, running worker."""
    count, rate = h.sizes.latency, h.sizes.latency_rate
    with servers.fresh_redis(h.scratch) as server:
        client = servers.connect(server)
        with h.worker(system, server.url, "latency") as (proc, log):
            args = ["latency", "--count", str(count), "--rate", str(rate)]
            sent = h.agent(system, server.url, *args, timeout=120 + count / rate)
            Progress(client, proc, log, time.monotonic()).wait(count + 1, limit=60)
            raw = client.lrange(jobs.LATENCY_KEY, 0, -1)
        client.close()
    if len(raw) < count:
        raise MeasurementError(f"only {len(raw)}/{count} latency probes ran within 60 s")
    delays_ms = sorted(float(x) * 1000 for x in raw)
    cuts = statistics.quantiles(delays_ms, n=100, method="inclusive")
    return {
        "p50_ms": cuts[49],
        "p99_ms": cuts[98],
        "max_ms": delays_ms[-1],
        "mean_ms": statistics.fmean(delays_ms),
        "rate_sent": sent["rate"],
    }


def peak_rss(h: Harness, system: System) -> dict[str, Any]:
    """The worker's peak RSS with `rss` no-op jobs queued, over its first `rss_window` s."""
    count = h.sizes.rss
    with servers.fresh_redis(h.scratch) as server:
        client = servers.connect(server)
        h.fill(system, server.url, jobs.NOOP, count)
        spawned = time.monotonic()
        with h.worker(system, server.url, "rss") as (proc, log):
            progress = Progress(client, proc, log, spawned)
            progress.wait(1)
            window_start = time.monotonic()
            limit = window_start - spawned + h.sizes.rss_window
            progress.wait(count, limit=limit)
            rss_kib = processes.peak_rss_kib(proc.pid)
        client.close()
    return {"peak_rss_mib": rss_kib / 1024, "queued": count, "done_in_window": progress.done}
