"""The orchestrator's hands inside one system's virtualenv: start its worker, or enqueue.

    python -m benchmarks.agent SYSTEM info
    python -m benchmarks.agent SYSTEM worker [--processes N]
    python -m benchmarks.agent SYSTEM enqueue --task T --count N --mode one|bulk|fill
    python -m benchmarks.agent SYSTEM latency --count N --rate R
    python -m benchmarks.agent SYSTEM e2e --task T --count N

Every command but `worker` prints one JSON object on stdout. `worker` replaces this process
with the system's worker (exec), so the orchestrator's pid is the worker's, for its RSS.
Enqueue timings are taken here, in the client's own process, around the library's calls only
(connecting is not timed). Clients run on uvloop whatever the system, like a typical web app.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any, cast

import uvloop

from benchmarks import jobs
from benchmarks.jobs import JobSpec
from benchmarks.peers import Peer
from benchmarks.systems import SYSTEMS

# Jobs per bulk call (postroom: one `enqueue_many` round trip each).
BULK_CHUNK = 1000
# Enqueues in flight at once when filling a queue one job at a time (not timed as a rate).
FILL_CONCURRENCY = 64


def _peer(system: str) -> Peer:
    return cast(Peer, importlib.import_module(SYSTEMS[system].module))


def _spec(task: str) -> JobSpec:
    return JobSpec(task, 0.01 if task == jobs.SLEEP else 0.0)


async def _enqueue(peer: Peer, task: str, count: int, mode: str) -> dict[str, Any]:
    client = await peer.connect()
    try:
        specs = [_spec(task) for _ in range(count)]
        started = time.perf_counter()
        if mode == "bulk" or (mode == "fill" and peer.BULK):
            for offset in range(0, count, BULK_CHUNK):
                await peer.enqueue_bulk(client, specs[offset : offset + BULK_CHUNK])
        elif mode == "one":
            for spec in specs:
                await peer.enqueue_one(client, spec)
        else:
            await _fill_one_by_one(peer, client, specs)
        seconds = time.perf_counter() - started
    finally:
        await peer.close(client)
    return {"count": count, "seconds": seconds, "rate": count / seconds}


async def _fill_one_by_one(peer: Peer, client: Any, specs: Sequence[JobSpec]) -> None:
    """Pre-fill a queue fast for a library without bulk enqueue: many enqueues in flight."""
    pending = iter(specs)

    async def feed() -> None:
        for spec in pending:
            await peer.enqueue_one(client, spec)

    await asyncio.gather(*(feed() for _ in range(FILL_CONCURRENCY)))


async def _latency(peer: Peer, count: int, rate: float) -> dict[str, Any]:
    """Warm the running worker with one no-op, then enqueue `count` probes at `rate` per second.

    Each probe carries `time.time()` taken just before its enqueue call; the job records the
    difference at its start. Probes are paced on a fixed schedule, not after each other, so a
    slow enqueue call does not lower the rate.
    """
    client = await peer.connect()
    try:
        await peer.enqueue_one(client, JobSpec(jobs.NOOP))
        redis = jobs.client()
        deadline = time.monotonic() + 60
        while int(await redis.get(jobs.DONE_KEY) or 0) < 1:
            if time.monotonic() > deadline:
                raise TimeoutError("the worker ran no warm-up job within 60 s")
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)  # let the worker settle into its idle loop
        start = time.monotonic()
        for i in range(count):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await peer.enqueue_one(client, JobSpec(jobs.LATENCY, time.time()))
        achieved = count / (time.monotonic() - start)
    finally:
        await peer.close(client)
    return {"count": count, "rate": achieved}


async def _end_to_end(peer: Peer, task: str, count: int) -> dict[str, Any]:
    """Into a running, warmed-up worker: `count` jobs enqueued one awaited call after another
    while it runs them; the rate from the first enqueue to the last job done (the producer
    and the worker together, as a web app and its workers)."""
    client = await peer.connect()
    try:
        await peer.enqueue_one(client, JobSpec(jobs.NOOP))
        redis = jobs.client()
        deadline = time.monotonic() + 60
        while int(await redis.get(jobs.DONE_KEY) or 0) < 1:
            if time.monotonic() > deadline:
                raise TimeoutError("the worker ran no warm-up job within 60 s")
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)  # let the worker settle into its idle loop
        spec = _spec(task)
        started = time.perf_counter()
        for _ in range(count):
            await peer.enqueue_one(client, spec)
        enqueued = time.perf_counter() - started
        deadline = time.monotonic() + 300
        while int(await redis.get(jobs.DONE_KEY) or 0) < count + 1:
            if time.monotonic() > deadline:
                raise TimeoutError(f"not all {count} jobs ran within 300 s of their enqueue")
            await asyncio.sleep(0.002)
        seconds = time.perf_counter() - started
    finally:
        await peer.close(client)
    return {
        "count": count,
        "seconds": seconds,
        "rate": count / seconds,
        "enqueue_rate": count / enqueued,
    }


def _versions(peer: Peer) -> dict[str, Any]:
    found: dict[str, str] = {}
    for name in peer.VERSIONS:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return {"python": platform.python_version(), "packages": found}


def _exec_worker(peer: Peer, processes: int) -> None:
    argv, extra_env = peer.worker_command(processes)
    os.execve(sys.executable, [sys.executable, *argv], {**os.environ, **extra_env})


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="benchmarks.agent")
    parser.add_argument("system", choices=sorted(SYSTEMS))
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info")
    worker = commands.add_parser("worker")
    worker.add_argument("--processes", type=int, default=1)
    enqueue = commands.add_parser("enqueue")
    enqueue.add_argument("--task", default=jobs.NOOP)
    enqueue.add_argument("--count", type=int, required=True)
    enqueue.add_argument("--mode", choices=["one", "bulk", "fill"], required=True)
    latency = commands.add_parser("latency")
    latency.add_argument("--count", type=int, required=True)
    latency.add_argument("--rate", type=float, required=True)
    e2e = commands.add_parser("e2e")
    e2e.add_argument("--task", default=jobs.NOOP)
    e2e.add_argument("--count", type=int, required=True)
    args = parser.parse_args(argv)

    peer = _peer(args.system)
    if args.command == "worker":
        _exec_worker(peer, args.processes)
    if args.command == "info":
        result = _versions(peer)
    elif args.command == "enqueue":
        if args.mode == "bulk" and not peer.BULK:
            raise SystemExit(f"{args.system} has no bulk enqueue")
        result = uvloop.run(_enqueue(peer, args.task, args.count, args.mode))
    elif args.command == "e2e":
        result = uvloop.run(_end_to_end(peer, args.task, args.count))
    else:
        result = uvloop.run(_latency(peer, args.count, args.rate))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
