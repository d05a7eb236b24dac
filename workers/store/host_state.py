"""Worker hosts sharing one Redis: state that lives on one host must not silently diverge.

Out of the box a worker keeps three things on its own machine: the message store (a SQLite
file in the data dir), the encryption key (generated into the data dir) and the embedded
Redis. Two machines doing so against one shared Redis would each write their own store and
encrypt with their own key, and neither could read the other's messages. So every worker
process records its host, and what it keeps locally, in one hash; a process that finds
another live host while either of them keeps such state stops at start, naming the setting.
"""

from __future__ import annotations

import time

import orjson
from arq.connections import ArqRedis

from config.errors import ConfigError
from config.settings import PostroomSettings
from workers.store.keys import Keys

# A host whose workers have not refreshed their entry for this long is gone.
HOST_TTL_S = 60.0


def host_local_state(settings: PostroomSettings) -> list[str]:
    """The settings under which this process keeps state on its own host."""
    local = []
    url = settings.database_url
    if url is None or url.startswith("sqlite"):
        local.append("POSTROOM_DATABASE_URL (the message store is a SQLite file on this host)")
    if not settings.encryption.keys:
        local.append("POSTROOM_ENCRYPTION__KEYS (the encryption key is generated on this host)")
    return local


async def record_host(redis: ArqRedis, settings: PostroomSettings) -> None:
    """Record this host as live; raise ConfigError if it shares the Redis with another live
    host while either keeps host-local state."""
    key = Keys.of_settings(settings).worker_hosts()
    now = time.time()
    mine = host_local_state(settings)
    others = {
        host.decode(): orjson.loads(raw)
        for host, raw in (await redis.hgetall(key)).items()  # type: ignore[misc]
        if host.decode() != settings.host_name
    }
    live = {host: entry for host, entry in others.items() if now - entry["seen"] < HOST_TTL_S}
    stale = [host for host in others if host not in live]
    if stale:
        await redis.hdel(key, *stale)  # type: ignore[misc]
    for host, entry in sorted(live.items()):
        theirs: list[str] = entry["local"]
        if mine or theirs:
            whose, what = ("this host", mine) if mine else (f"host {host!r}", theirs)
            raise ConfigError(
                f"workers on {host!r} and on this host ({settings.host_name!r}) share this "
                f"Redis, but {whose} keeps state of its own: {'; '.join(what)}. Give every "
                "host the same PostgreSQL DATABASE_URL and POSTROOM_ENCRYPTION__KEYS"
            )
    entry = orjson.dumps({"seen": now, "local": mine}).decode()
    await redis.hset(key, settings.host_name, entry)  # type: ignore[misc]
