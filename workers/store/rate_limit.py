"""Cluster-wide rate limits: a GCRA bucket in Redis, taken from in one script call per batch.

GCRA (the generic cell rate algorithm) keeps one number per bucket, its theoretical arrival
time (TAT): a start is allowed when TAT minus the burst tolerance is not in the future, and
moves TAT one interval on. The script reads Redis' own clock (TIME), so worker processes on
machines whose clocks differ share one timeline. Two ways to take from a bucket:

- `take` (a queue's limit, at claim time): at most `want` starts now, for a claim batch;
  the worker claims no more jobs than it was granted, gives back on its next take what it
  could not use, and waits the time the script names before asking again.
- `reserve` (a named limit, for jobs already running: a channel's, a task's): each job gets a
  start slot; one due within `max_wait` waits for it in its run, one further away is deferred
  to it, its slot held under its id, so it is reserved once however often it comes back.

The bucket's hash also keeps the starts of the last two 5-second windows and how often a
start had to wait, for the admin API (`read_rate`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from config.rate_limits import RateLimit
from workers.store.scripts import LuaScript, RedisClient

# KEYS: the bucket (hash), and for 'reserve' the held slots (sorted set), one hash tag.
# ARGV: 'take' or 'reserve', the interval ms, the burst, then for 'take' how many starts are
# wanted and how many of the last grant went unused; for 'reserve' the longest wait in a run
# (ms) and the job ids. Returns for 'take' {granted, ms until the next start is allowed (0
# when all were granted)}; for 'reserve' per job the ms to wait (>= 0) or to defer (< 0).
RATE_LIMIT = LuaScript.file("rate_limit")

WINDOW_S = 5.0  # the script's window of recent starts


@dataclass(frozen=True, slots=True)
class Grant:
    """What a take got: starts allowed now, and how long until the next one is (seconds)."""

    granted: int
    wait_s: float


async def take(
    redis: RedisClient, bucket: str, limit: RateLimit, want: int, refund: int = 0
) -> Grant:
    """Up to `want` starts now from the bucket, `refund` unused ones given back first."""
    granted, wait_ms = await RATE_LIMIT(
        redis, (bucket,), ("take", limit.interval * 1000, limit.burst, want, refund)
    )
    return Grant(int(granted), int(wait_ms) / 1000)


async def reserve(
    redis: RedisClient,
    bucket: str,
    held: str,
    limit: RateLimit,
    members: Sequence[str],
    max_wait_s: float,
) -> list[float]:
    """A start for each of `members` (job ids): seconds to wait (>= 0) or to defer (< 0)."""
    args = ("reserve", limit.interval * 1000, limit.burst, int(max_wait_s * 1000), *members)
    replies = await RATE_LIMIT(redis, (bucket, held), args)
    return [int(ms) / 1000 for ms in replies]


@dataclass(frozen=True, slots=True)
class RateStatus:
    """A limit as the admin API shows it: the limit, its recent rate, its waits."""

    limit: str
    per_second: float  # the limit, in starts per second
    rate: float  # starts per second over about the last 5 seconds
    at_limit: bool  # no start is allowed right now
    throttled: int  # starts that had to wait (claims cut short, runs waiting or deferred)
    held: int  # jobs deferred to a reserved slot, not yet started (named limits)


async def read_rate(
    redis: RedisClient, bucket: str, limit: RateLimit, held: str | None = None
) -> RateStatus:
    """The bucket's state now, read without taking from it."""
    seconds, micros = await redis.time()
    now_ms = seconds * 1000 + micros / 1000
    raw = await redis.hmget(bucket, ["tat", "w", "n", "p", "throttled"])  # type: ignore[misc]
    tat, window, count, previous, throttled = (float(v) if v is not None else None for v in raw)
    held_count = int(await redis.zcard(held)) if held is not None else 0
    rate = 0.0
    if window is not None:
        this_window = now_ms // (WINDOW_S * 1000)
        into = (now_ms - this_window * WINDOW_S * 1000) / (WINDOW_S * 1000)
        if this_window == window + 1:
            previous, count = count, 0.0
        elif this_window != window:
            previous, count = 0.0, 0.0
        rate = ((previous or 0.0) * (1 - into) + (count or 0.0)) / WINDOW_S
    tolerance = (limit.burst - 1) * limit.interval * 1000
    return RateStatus(
        limit=str(limit),
        per_second=limit.per_second,
        rate=round(rate, 2),
        at_limit=tat is not None and tat - tolerance > now_ms,
        throttled=int(throttled or 0),
        held=held_count,
    )
