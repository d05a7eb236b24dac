"""A group's claim on an event while its handlers run: a Redis key with a token and a lease.

The handled log makes a second delivery of an event skip the handlers that succeeded, but
only once they are recorded: two deliveries running at the same time (a publish repeated
after a lost confirm, in one consumer or two of the group) would both run them. The first to
claim runs; the other gives its delivery back for later, when the log says what is done.
The lease (`POSTROOM_LEASE_SECONDS`) is renewed while the handlers run, so a consumer that
dies holds the event no longer than that.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

from workers.store.keys import Keys
from workers.store.scripts import LuaScript, RedisClient

_RENEW = LuaScript.file("event_claim_renew")
_RELEASE = LuaScript.file("event_claim_release")


class EventClaims:
    def __init__(self, redis: RedisClient, keys: Keys, group: str, lease_seconds: float) -> None:
        self.redis = redis
        self.keys = keys
        self.group = group
        self.lease_ms = max(int(lease_seconds * 1000), 100)

    @contextlib.asynccontextmanager
    async def claim(self, event_id: str) -> AsyncIterator[bool]:
        """Yields True when this run holds the event (renewed until the block ends), else
        False: another run of the same event holds it."""
        key = self.keys.event_group_claim(self.group, event_id)
        token = uuid.uuid4().hex
        if not await self.redis.set(key, token, nx=True, px=self.lease_ms):
            yield False
            return
        renewal = asyncio.create_task(self._renew(key, token))
        try:
            yield True
        finally:
            renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewal
            await _RELEASE(self.redis, [key], [token])

    async def _renew(self, key: str, token: str) -> None:
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            with contextlib.suppress(Exception):  # Redis away: the next renewal tries again
                await self._renew_once(key, token)

    async def _renew_once(self, key: str, token: str) -> None:
        await _RENEW(self.redis, [key], [token, self.lease_ms])
