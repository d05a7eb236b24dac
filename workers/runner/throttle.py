"""Named rate limits for running jobs: `await ctx["throttle"]("sms")` before calling a provider.

A queue's own limit is taken at claim time (worker.py); a limit that depends on what a job
does (its channel, its provider, its task) can only be taken once the job runs. Each name
(`POSTROOM_RATE_LIMITS__<NAME>`, or `task:<name>` for `@task(rate_limit=...)`) is one GCRA
bucket in Redis (store/rate_limit.py), shared by every worker process. A job's start slot due
within a short wait (at most a second, a quarter of its timeout) is waited for in its run; a
later one is reserved and held under the job's id, and the job is deferred to it without
spending a try (`RateDeferral`), so a burst of 100k SMS becomes one deferral per job, each due
at its own slot, instead of runs churning against the limit. The calls of all jobs asking for
the same name in one turn of the event loop go to Redis as one script call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from config.rate_limits import RateLimit
from workers.context import ThrottleFunction
from workers.store.keys import Keys
from workers.store.rate_limit import reserve
from workers.store.scripts import RedisClient

# The longest a run waits for its slot; a later slot defers the job instead.
MAX_WAIT_IN_RUN_S = 1.0


class RateDeferral(Exception):
    """The job's start slot under a named limit is `delay_s` seconds away: defer it there.

    Raised out of the task's function; the runner turns it into a deferral that spends no try
    (execution.py). A task must let it through (not swallow it in `except Exception`)."""

    def __init__(self, name: str, delay_s: float) -> None:
        self.name = name
        self.delay_s = delay_s
        super().__init__(f"rate limit {name!r}: next start slot in {delay_s:.2f}s")


class Throttle:
    """One worker process's access to the named limits, batching each name's requests."""

    def __init__(
        self, keys: Keys, limits: Mapping[str, RateLimit], waited: dict[str, int] | None = None
    ) -> None:
        self.keys = keys
        self.limits = dict(limits)
        self._pending: dict[str, list[tuple[str, float, asyncio.Future[float]]]] = {}
        # Runs that waited or were deferred, per name (the process's postroom_rate_limit_waits).
        self.waited: dict[str, int] = {} if waited is None else waited
        self._sending: set[asyncio.Task[None]] = set()

    def add(self, name: str, limit: RateLimit) -> None:
        self.limits.setdefault(name, limit)

    def bind(self, redis: RedisClient, member: str, timeout_s: float) -> ThrottleFunction:
        """The `ctx["throttle"]` of one run: `member` names its job in held slots."""
        max_wait = min(MAX_WAIT_IN_RUN_S, timeout_s / 4)

        async def throttle(name: str) -> None:
            await self.acquire(redis, name, member, max_wait)

        return throttle

    async def acquire(self, redis: RedisClient, name: str, member: str, max_wait: float) -> None:
        """Return at the job's slot under `name` (at once when unlimited); raise
        RateDeferral when the slot is later than `max_wait`."""
        limit = self.limits.get(name)
        if limit is None:
            return
        done: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        pending = self._pending.setdefault(name, [])
        pending.append((member, max_wait, done))
        if len(pending) == 1:
            asyncio.get_running_loop().call_soon(self._send, redis, name)
        delay = await done
        if delay < 0:
            self.waited[name] = self.waited.get(name, 0) + 1
            raise RateDeferral(name, -delay)
        if delay > 0:
            self.waited[name] = self.waited.get(name, 0) + 1
            await asyncio.sleep(delay)

    def _send(self, redis: RedisClient, name: str) -> None:
        batch = self._pending.pop(name, [])
        sending = asyncio.ensure_future(self._reserve(redis, name, batch))
        self._sending.add(sending)
        sending.add_done_callback(self._sending.discard)

    async def _reserve(
        self, redis: RedisClient, name: str, batch: list[tuple[str, float, asyncio.Future[float]]]
    ) -> None:
        """One script call for every run asking in this turn (grouped by their longest wait,
        which differs only between tasks of different timeouts)."""
        keys = self.keys.rate_limit(name)
        by_wait: dict[float, list[tuple[str, asyncio.Future[float]]]] = {}
        for member, max_wait, done in batch:
            by_wait.setdefault(max_wait, []).append((member, done))
        for max_wait, runs in by_wait.items():
            try:
                delays = await reserve(
                    redis, keys.bucket, keys.held, self.limits[name], [m for m, _ in runs], max_wait
                )
            except Exception as exc:  # every run of the batch fails with it (and retries)
                for _, done in runs:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for (_, done), delay in zip(runs, delays, strict=True):
                if not done.done():
                    done.set_result(delay)
