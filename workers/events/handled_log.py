"""The handled log in Redis: which handlers of an event succeeded, so a retry skips them.

One class for both buses; only the key differs. The queued bus keeps one set per event
(`<prefix>:event:<id>:handled`), the RabbitMQ consumer one per group and event (each group
runs its own handlers on its own copy of the event).
"""

from __future__ import annotations

from collections.abc import Callable

from workers.store.scripts import LuaScript, RedisClient

# Record a handler as run and renew the log's TTL in one step (a script, not MULTI, so that
# it runs on a Cluster too). KEYS: the log. ARGV: the handler, the TTL in seconds.
_MARK = LuaScript.file("mark_handled")


class RedisHandledLog:
    """The handlers run for an event, kept `ttl_seconds` (as long as the event's dead letter
    could be retried); `key` maps an event id to its log's key."""

    def __init__(self, redis: RedisClient, key: Callable[[str], str], ttl_seconds: float) -> None:
        self.redis = redis
        self.key = key
        self.ttl_seconds = max(int(ttl_seconds), 1)

    async def handled(self, event_id: str) -> set[str]:
        members = await self.redis.smembers(self.key(event_id))  # type: ignore[misc]
        return {member.decode() for member in members}

    async def mark(self, event_id: str, handler: str) -> None:
        await _MARK(self.redis, [self.key(event_id)], [handler, self.ttl_seconds])
