"""`async with open_client() as client`: one client for an app's life (aiohttp, scripts)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from config.settings import PostroomSettings, load_settings
from workers.client import PostroomClient
from workers.connection.redis_server import EmbeddedRedis, resolve_redis
from workers.registry import TaskRegistry, registry


@asynccontextmanager
async def open_client(
    settings: PostroomSettings | None = None,
    *,
    tasks: TaskRegistry = registry,
    embedded_redis: bool = False,
) -> AsyncIterator[PostroomClient]:
    """A connected client, closed when the block ends.

    `settings` default to the environment's, read now (not at import). With
    `embedded_redis` and no `REDIS_URL`/`REDIS_HOST`, the embedded server is started as
    `postroom worker` would (or shared, when a local worker already runs it) and stopped
    with the block, for local development.
    """
    settings = settings or load_settings()
    server: EmbeddedRedis | None = None
    if embedded_redis and settings.redis_dsn() is None:
        _, server = await asyncio.to_thread(resolve_redis, settings)
    try:
        async with await PostroomClient.connect(settings, tasks) as client:
            yield client
    finally:
        if server is not None:
            await asyncio.to_thread(server.stop)
