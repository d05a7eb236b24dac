"""Lua scripts run by their SHA1, one round trip each, reloaded when Redis has lost them.

redis-py's `Script` sends SCRIPT EXISTS before every pipeline that holds one: a round trip per
finishing job. These are sent as bare EVALSHA; a Redis that restarted or ran SCRIPT FLUSH
answers NOSCRIPT, and only then is the script loaded and the call repeated. A NOSCRIPT reply
means the script did not run, so repeating the call never runs it twice.

Every script starts with a `#!lua` shebang (Redis 7.0+, any Valkey). Without one a script runs
in the compatibility mode kept for scripts older than Redis 7, where a Cluster node lets it
touch keys of any slot the node happens to own; with it, the node refuses every key outside
the slot of the script's declared KEYS. So a script that strays from its queue's hash tag
fails at once, on every Cluster, instead of only when its queues land on different shards.
"""

from __future__ import annotations

import asyncio
import hashlib
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import NoScriptError

# What a script runs on: one Redis (arq's ArqRedis is one), or a Cluster client, which routes
# each call to the node of its KEYS' slot and loads scripts on every primary.
RedisClient = Redis | RedisCluster

SHEBANG = "#!lua\n"
# The scripts' sources: one file each, and the preludes some of them start with.
LUA_DIR = Path(__file__).with_name("lua")


def lua_source(*names: str, **values: object) -> str:
    """The Lua of `names` (files of LUA_DIR, joined in order: preludes first), its `$NAME`
    placeholders filled from `values` (constants kept in Python, as priority bands)."""
    text = "".join((LUA_DIR / f"{name}.lua").read_text() for name in names)
    return string.Template(text).substitute(values) if values else text


def pack(args: Sequence[bytes | str | int]) -> bytes:
    """One command in the Redis protocol (RESP2), for a connection a caller holds and writes
    to itself (redis-py's encoder checks each argument's type against five, in Python)."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode()
        elif isinstance(arg, int):
            arg = b"%d" % arg
        out.append(b"$%d\r\n%b\r\n" % (len(arg), arg))
    return b"".join(out)


def lua_string(text: str) -> str:
    """`text` as a Lua string literal: every byte outside printable ASCII, and quote and
    backslash, as a decimal escape, so no key prefix can break out of it."""
    safe = (chr(b) if 32 <= b < 127 and b not in b'"\\' else f"\\{b:03d}" for b in text.encode())
    return '"' + "".join(safe) + '"'


class LuaScript:
    """One script's source and SHA1; build once (at import is fine: it is only text).

    The source gets the `#!lua` shebang (see the module's docstring) unless it has one.
    """

    def __init__(self, source: str) -> None:
        self.source = source if source.startswith("#!") else SHEBANG + source.lstrip("\n")
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    @classmethod
    def file(cls, *names: str, **values: object) -> LuaScript:
        """The script of lua/<names[-1]>.lua after its preludes (see `lua_source`)."""
        return cls(lua_source(*names, **values))

    async def load(self, redis: RedisClient) -> None:
        await redis.script_load(self.source)

    async def __call__(self, redis: RedisClient, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        try:
            return await redis.evalsha(self.sha, len(keys), *keys, *args)  # type: ignore[misc]
        except NoScriptError:
            await self.load(redis)
            return await redis.evalsha(self.sha, len(keys), *keys, *args)  # type: ignore[misc]

    def queue(self, pipe: Any, keys: Sequence[Any], args: Sequence[Any]) -> None:
        """Add the call to a pipeline; its reply may be a NoScriptError (see `run_batch`)."""
        pipe.evalsha(self.sha, len(keys), *keys, *args)


async def run_batch(
    redis: RedisClient,
    script: LuaScript,
    calls: Sequence[tuple[Sequence[Any], Sequence[Any]]],
) -> list[Any]:
    """Run many (keys, args) calls of `script` in one non-transactional round trip.

    Each call is independent, so after a NOSCRIPT only the calls that got it are repeated
    (a SCRIPT FLUSH can land between two calls of one pipeline); other errors are raised.
    redis-py 5's Cluster pipelines refuse EVALSHA, so on a Cluster the calls go out
    concurrently instead (each to its slot's node), CLUSTER_CONCURRENCY at a time.
    """
    if isinstance(redis, RedisCluster):
        return await _run_concurrently(redis, script, calls)
    replies: list[Any] = [None] * len(calls)
    todo = list(range(len(calls)))
    for attempt in range(2):
        async with redis.pipeline(transaction=False) as pipe:
            for i in todo:
                script.queue(pipe, *calls[i])
            answers = await pipe.execute(raise_on_error=False)
        missing = []
        for i, answer in zip(todo, answers, strict=True):
            if isinstance(answer, NoScriptError) and attempt == 0:
                missing.append(i)
            elif isinstance(answer, Exception):
                raise answer
            else:
                replies[i] = answer
        if not missing:
            break
        await script.load(redis)
        todo = missing
    return replies


# How many calls of a batch are in flight at once on a Cluster (each holds a connection).
CLUSTER_CONCURRENCY = 64


async def _run_concurrently(
    redis: RedisCluster,
    script: LuaScript,
    calls: Sequence[tuple[Sequence[Any], Sequence[Any]]],
) -> list[Any]:
    replies: list[Any] = []
    for start in range(0, len(calls), CLUSTER_CONCURRENCY):
        chunk = calls[start : start + CLUSTER_CONCURRENCY]
        replies += await asyncio.gather(*(script(redis, keys, args) for keys, args in chunk))
    return replies


class ScriptBatcher:
    """Sends the calls made while the previous batch was in flight as one call of the script.

    Many jobs finish in the same moment. The script takes any number of calls, their
    arguments one after another in ARGV, so the lot costs one command to encode, one
    pooled-connection checkout, one script run and one reply, and Redis can do the writes the
    calls share once for all (see worker_scripts.FINISH). At most one batch is in flight, of
    at most `max_calls` calls.
    """

    def __init__(
        self, redis: RedisClient, script: LuaScript, keys: Sequence[str] = (), max_calls: int = 500
    ) -> None:
        self.redis = redis
        self.script = script
        self.keys = keys  # the same for every batch: the calls differ only in ARGV
        self.max_calls = max_calls
        self._pending: list[tuple[Sequence[Any], asyncio.Future[Any]]] = []
        self._sender: asyncio.Task[None] | None = None

    def submit(self, args: Sequence[Any]) -> asyncio.Future[Any]:
        """Queue one call; the future is done when its batch has run, with the script's reply
        for the whole batch (or failed with its error).

        A plain future, not a coroutine: awaiting it through asyncio.shield costs no task.
        """
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((args, done))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send())
        return done

    async def _send(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self.max_calls]
                del self._pending[: self.max_calls]
                argv = [arg for args, _ in batch for arg in args]
                error: BaseException | None = None
                reply: Any = None
                try:
                    reply = await self.script(self.redis, self.keys, argv)
                except asyncio.CancelledError:
                    for _, done in batch:
                        done.cancel()
                    raise
                except Exception as exc:  # every call of the batch failed with it
                    error = exc
                for _, done in batch:
                    if done.done():
                        continue
                    if error is None:
                        done.set_result(reply)
                    else:
                        done.set_exception(error)
        finally:
            self._sender = None
