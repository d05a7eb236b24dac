"""`scripts/soak`: the chaos soak's entry. Starts its own Redis and worker processes,
enqueues under chaos, drains, accounts for every job, prints the report and exits 1 on
any failure (see chaos.accounting)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from chaos import actions, report, summary
from chaos.accounting import account
from chaos.config import SoakConfig, parse
from chaos.enqueuer import enqueue_all
from chaos.ledger import ENQUEUED, EVENTS, LedgerFile, read_ledger
from chaos.processes import WorkerPool, WorkerSlot, worker_env
from chaos.redis_control import RedisProcess
from chaos.snapshot import QUEUE, drain, read_snapshot
from chaos.worker_logs import read_recoveries
from config.settings import PostroomSettings, load_settings
from workers.client import PostroomClient

KEY_PREFIX = "chaos"


def _say(message: str) -> None:
    print(f"soak: {message}", file=sys.stderr, flush=True)


def _settings(config: SoakConfig, redis: RedisProcess, data_dir: Path) -> PostroomSettings:
    """The workers' settings, which the soak's own client shares: results kept for every
    job, so that the accounting can read which execution completed each."""
    return load_settings(
        redis_url=redis.url,
        key_prefix=KEY_PREFIX,
        data_dir=data_dir,
        lease_seconds=config.lease,
        shutdown_grace=config.grace,
        results_per_queue=max(2 * config.jobs, 1_000),
    )


def _as_env(settings: PostroomSettings) -> dict[str, str]:
    return {
        "POSTROOM_KEY_PREFIX": settings.key_prefix,
        "POSTROOM_LEASE_SECONDS": str(settings.lease_seconds),
        "POSTROOM_SHUTDOWN_GRACE": str(settings.shutdown_grace),
        "POSTROOM_RESULTS_PER_QUEUE": str(settings.results_per_queue),
        "POSTROOM_LOG_FORMAT": "json",  # times to the millisecond, for worker_logs.py
    }


async def _workers_live(client: PostroomClient, count: int, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while (await client.live_workers([QUEUE]))[QUEUE.value] < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{count} workers were not live within {within:g}s")
        await asyncio.sleep(0.1)


async def _watch(pool: WorkerPool, done: asyncio.Event) -> int:
    crashes = 0
    while not done.is_set():
        crashes += pool.respawn_exited()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 0.5)
    return crashes


async def _soak(config: SoakConfig, run_dir: Path) -> dict[str, Any]:
    began = time.monotonic()
    rng = random.Random(config.seed)
    ledger_dir, log_dir = run_dir / "ledger", run_dir / "logs"
    ledger_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    redis = RedisProcess(run_dir / "redis")
    redis.start()
    settings = _settings(config, redis, run_dir / "data")
    env = worker_env(redis.url, ledger_dir, run_dir / "data", _as_env(settings))
    events, acks = LedgerFile(ledger_dir / EVENTS), LedgerFile(ledger_dir / ENQUEUED)
    pool = WorkerPool([WorkerSlot(i, env, log_dir, run_dir) for i in range(config.workers)], events)
    client: PostroomClient | None = None
    try:
        client = await PostroomClient.connect(settings)
        for slot in pool.slots:
            pool.spawn(slot)
        await _workers_live(client, config.workers)
        _say(f"{config.workers} workers live; Redis at {redis.url}; run dir {run_dir}")
        start = time.monotonic()
        done = asyncio.Event()
        watch = asyncio.create_task(_watch(pool, done))
        enqueued, kills, stops, restarts = await asyncio.gather(
            enqueue_all(client, config.jobs, config.rate, config.work_ms, acks),
            actions.kill_workers(pool, config.kill_every, start + config.chaos_seconds, rng),
            actions.stop_workers(pool, config, start, rng),
            actions.restart_redis(redis, config, start, events),
        )
        _say(f"{enqueued.acknowledged} jobs acknowledged; chaos over; draining")
        drained, waited = await drain(client, config.drain_timeout)
        done.set()
        crashes = await watch
        ledger = read_ledger(ledger_dir)
        snapshot = await read_snapshot(client, list(ledger.acknowledged))
        recoveries = read_recoveries(log_dir)
        accounting = account(ledger, snapshot, recoveries, settings.max_recoveries)
    finally:
        codes = pool.terminate_all(config.grace)
        if client is not None:
            await client.close()
        redis.stop()
        events.close()
        acks.close()
    chaos = {
        "worker_kills": kills,
        "stops": stops,
        "redis_restarts": restarts,
        "worker_crashes": crashes,
    }
    built = report.build(
        config,
        accounting,
        enqueued,
        chaos,
        {"drained": drained, "seconds": round(waited, 1), "worker_exit_codes": codes},
        time.monotonic() - began,
        str(run_dir),
    )
    if crashes:
        built["failures"].append(f"{crashes} worker processes exited on their own")
        built["ok"] = False
    return built


def _one(config: SoakConfig) -> dict[str, Any]:
    """One soak from scratch; its run directory is removed when it passed (unless kept)."""
    run_dir = config.run_dir or Path(tempfile.mkdtemp(prefix="chaos-soak-"))
    built = asyncio.run(_soak(config, run_dir))
    if built["ok"] and not config.keep and config.run_dir is None:
        shutil.rmtree(run_dir, ignore_errors=True)
        built["run_dir"] = None
    if config.json:
        sys.stdout.write(orjson.dumps(built, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(report.text(built), flush=True)
    return built


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    config = parse(args)
    reports = []
    for i in range(config.runs):
        if config.runs > 1:
            _say(f"run {i + 1} of {config.runs}")
        reports.append(_one(config))
        if config.summary is not None:
            when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            config.summary.write_text(summary.markdown(args, reports, when))
    return 0 if all(r["ok"] for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
