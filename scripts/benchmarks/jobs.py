"""What every benchmark job does besides its work: tell the orchestrator it ran.

Each job INCRs one counter (and a latency job first RPUSHes its enqueue-to-start delay) over a
plain redis-py connection of its own, the same for every system, so that completion is measured
identically whatever the library and no library's own bookkeeping is trusted for it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

DONE_KEY = "bench:done"
LATENCY_KEY = "bench:latency"

# The task names every peer registers.
NOOP = "bench_noop"
SLEEP = "bench_sleep"
LATENCY = "bench_latency"

_client: Any = None


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job to enqueue: its task and its one argument (seconds to sleep, or enqueue time)."""

    task: str
    value: float = 0.0

    def kwargs(self) -> dict[str, float]:
        """The job's keyword arguments; the no-op takes none."""
        if self.task == SLEEP:
            return {"seconds": self.value}
        if self.task == LATENCY:
            return {"enqueued_at": self.value}
        return {}


def redis_url() -> str:
    """The Redis of this measurement; every subprocess gets it from the orchestrator."""
    return os.environ["BENCH_REDIS_URL"]


def concurrency() -> int:
    return int(os.environ.get("BENCH_CONCURRENCY", "100"))


def client() -> Any:
    # Imported here: each virtualenv has its own redis-py (5 or 8), both with this API.
    global _client
    if _client is None:
        import redis.asyncio

        _client = redis.asyncio.Redis.from_url(redis_url())
    return _client


async def done() -> None:
    await client().incr(DONE_KEY)


async def started(enqueued_at: float) -> None:
    """Record enqueue-to-start, then count the job; called first thing in a latency job."""
    delay = time.time() - enqueued_at
    await client().rpush(LATENCY_KEY, repr(delay))
    await done()
