"""The example app: one postroom client and one message store per app, opened at startup.

    scripts/example                                    # a worker, then this app on :8000
    uvicorn --factory examples.webapp.app:create_app   # the app alone (a worker runs elsewhere)

Without `REDIS_URL` it uses (or starts) the embedded Redis `postroom worker` starts, and the
SQLite store in `POSTROOM_DATA_DIR`, so the app and a local worker meet with no set-up.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

import tasks  # noqa: F401 - registers the task functions the routes enqueue
from config.settings import PostroomSettings
from examples.webapp import realtime, routes
from tasks.store import MessageStore
from workers.client import PostroomClient
from workers.integrations.asgi import CLIENT_STATE, PostroomLifespan


@asynccontextmanager
async def open_store(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    """The message store the workers write, at the settings' `DATABASE_URL` (migrated)."""
    client: PostroomClient = getattr(app.state, CLIENT_STATE)
    store = await MessageStore.open(client.settings.database_url, data_dir=client.settings.data_dir)
    try:
        yield {"store": store}
    finally:
        await store.close()


def create_app(settings: PostroomSettings | None = None) -> FastAPI:
    """The app; `settings` default to the environment's, read at startup."""
    app = FastAPI(
        title="postroom example",
        lifespan=PostroomLifespan(settings, embedded_redis=True, then=open_store),
    )
    app.include_router(routes.router)
    app.include_router(realtime.router)
    return app
