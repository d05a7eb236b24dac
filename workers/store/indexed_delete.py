"""Deleting records together with their entries in a sorted index, in one atomic step.

Dead letters (their records and the queue's dead index) and cleaned results (results,
progress and the result index) go this way: a script rather than MULTI/EXEC, which redis-py
5's Cluster client does not run. Every key must be in one slot (one queue's hash tag).
"""

from __future__ import annotations

from collections.abc import Sequence

from workers.store.scripts import LuaScript, RedisClient

# KEYS: the index, then the records to delete. ARGV: the members to drop from the index.
# One command per key and member: Lua's unpack would overflow its stack on a large purge.
_DELETE_INDEXED = LuaScript.file("delete_indexed")


async def delete_indexed(
    redis: RedisClient, index: str, members: Sequence[str], records: Sequence[str]
) -> None:
    """Drop `members` from the sorted set `index` and delete the keys `records`, atomically."""
    await _DELETE_INDEXED(redis, [index, *records], members)
