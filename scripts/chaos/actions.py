"""The chaos: a random worker SIGKILLed (and restarted) every few seconds, workers SIGSTOPped
past their lease and resumed, Redis SIGKILLed and restarted on its AOF.

Everything is scheduled within the chaos window (as long as the enqueues take): Redis dies
at even fractions of it, and the first stop spans the first Redis restart, the case where a
stopped worker wakes to a Redis that lost its connections.
"""

from __future__ import annotations

import asyncio
import random
import time

from chaos.config import SoakConfig
from chaos.ledger import LedgerFile
from chaos.processes import WorkerPool
from chaos.redis_control import RedisProcess


def redis_restart_times(config: SoakConfig) -> list[float]:
    n = config.redis_restarts
    return [config.chaos_seconds * (i + 1) / (n + 1) for i in range(n)]


def stop_times(config: SoakConfig) -> list[float]:
    restarts = redis_restart_times(config)
    first = (restarts[0] if restarts else 0.3 * config.chaos_seconds) - config.stop_seconds / 2
    first = max(first, 0.5)
    return [first + i * (config.stop_seconds + config.lease) for i in range(config.stops)]


async def _until(start: float, offset: float) -> None:
    await asyncio.sleep(max(0.0, start + offset - time.monotonic()))


async def kill_workers(pool: WorkerPool, every: float, until: float, rng: random.Random) -> int:
    """SIGKILL a random running (not stopped) worker every `every` s; restart it at once."""
    kills = 0
    if every <= 0:
        return kills
    while time.monotonic() + every <= until:
        await asyncio.sleep(every)
        candidates = pool.running()
        if candidates:
            pool.kill_and_restart(rng.choice(candidates))
            kills += 1
    return kills


async def stop_workers(
    pool: WorkerPool, config: SoakConfig, start: float, rng: random.Random
) -> int:
    for at in stop_times(config):
        await _until(start, at)
        slot = rng.choice(pool.running())
        pool.stop(slot)
        await asyncio.sleep(config.stop_seconds)
        pool.resume(slot)
    return config.stops


async def restart_redis(
    redis: RedisProcess, config: SoakConfig, start: float, events: LedgerFile
) -> int:
    for at in redis_restart_times(config):
        await _until(start, at)
        redis.kill()
        events.append(k="redis-kill")
        await asyncio.sleep(config.redis_down)
        await asyncio.to_thread(redis.start)
        events.append(k="redis-up")
    return config.redis_restarts
