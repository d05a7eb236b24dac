"""Lua scripts run by their SHA1, one round trip each, reloaded when Redis has lost them.

redis-py's `Script` sends SCRIPT EXISTS before every pipeline that holds one: a round trip per
finishing job. These are sent as bare EVALSHA; a Redis that restarted or ran SCRIPT FLUSH
answers NOSCRIPT, and only then is the script loaded and the call repeated. A NOSCRIPT reply
means the script did not run, so repeating the call never runs it twice.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError


class LuaScript:
    """One script's source and SHA1; build once (at import is fine: it is only text)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def load(self, redis: Redis) -> None:
        await redis.script_load(self.source)

    async def __call__(self, redis: Redis, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        try:
            return await redis.evalsha(self.sha, len(keys), *keys, *args)  # type: ignore[misc]
        except NoScriptError:
            await self.load(redis)
            return await redis.evalsha(self.sha, len(keys), *keys, *args)  # type: ignore[misc]

    def queue(self, pipe: Any, keys: Sequence[Any], args: Sequence[Any]) -> None:
        """Add the call to a pipeline; its reply may be a NoScriptError (see `run_batch`)."""
        pipe.evalsha(self.sha, len(keys), *keys, *args)


async def run_batch(
    redis: Redis,
    script: LuaScript,
    calls: Sequence[tuple[Sequence[Any], Sequence[Any]]],
    *,
    raise_on_error: bool = True,
) -> list[Any]:
    """Run many (keys, args) calls of `script` in one non-transactional round trip.

    Each call is independent, so after a NOSCRIPT only the calls that got it are repeated
    (a SCRIPT FLUSH can land between two calls of one pipeline); other errors are raised.
    """
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
            elif isinstance(answer, Exception) and raise_on_error:
                raise answer
            else:
                replies[i] = answer
        if not missing:
            break
        await script.load(redis)
        todo = missing
    return replies


class ScriptBatcher:
    """Sends together the calls of one script made while the previous batch was in flight.

    Many jobs finish in the same moment; each finish is still its own atomic script call, but
    they share one pipeline: one pooled-connection checkout, one socket write and one read
    for the lot, instead of one each. At most one batch is in flight.
    """

    def __init__(self, redis: Redis, script: LuaScript) -> None:
        self.redis = redis
        self.script = script
        self._pending: list[tuple[Sequence[Any], Sequence[Any], asyncio.Future[Any]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def __call__(self, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((keys, args, reply))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send())
        return await reply

    async def _send(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                calls = [(keys, args) for keys, args, _ in batch]
                try:
                    replies = await run_batch(self.redis, self.script, calls, raise_on_error=False)
                except asyncio.CancelledError:
                    for *_, reply in batch:
                        reply.cancel()
                    raise
                except Exception as exc:  # Redis gone: every call of the batch failed
                    replies = [exc] * len(batch)
                for (*_, reply), answer in zip(batch, replies, strict=True):
                    if reply.done():
                        continue
                    if isinstance(answer, Exception):
                        reply.set_exception(answer)
                    else:
                        reply.set_result(answer)
        finally:
            self._sender = None
