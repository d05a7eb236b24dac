"""The example app: one postroom client and one message store per app, opened at startup,
and the admin API under `/admin`.

    scripts/example                                    # a worker, then this app on :8000
    uvicorn --factory examples.webapp.app:create_app   # the app alone (a worker runs elsewhere)

Without `REDIS_URL` it uses (or starts) the embedded Redis `postroom worker` starts, and the
SQLite store in `POSTROOM_DATA_DIR`, so the app and a local worker meet with no set-up.
Without `POSTROOM_ADMIN_TOKEN` (or `POSTROOM_ADMIN_TOKENS`) the admin API is open to anyone
who reaches the app, which is why the app listens on 127.0.0.1: set a token before serving it
on any other address.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI

import tasks  # noqa: F401 - registers the task functions the routes enqueue
from config.settings import PostroomSettings, load_settings
from examples.webapp import realtime, routes
from tasks.store import MessageStore
from workers.integrations.asgi import PostroomLifespan, trace_requests
from workers.ops.admin import create_admin_app

logger = logging.getLogger(__name__)

ADMIN_PREFIX = "/admin"


def app_lifespan(
    settings: PostroomSettings, admin: FastAPI
) -> Callable[[FastAPI], AbstractAsyncContextManager[dict[str, Any]]]:
    """What runs inside postroom's lifespan: the message store, and the mounted admin app's
    lifespan (Starlette runs only the outer app's), which closes the client it opens."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        store = await MessageStore.open(settings.database_url, data_dir=settings.data_dir)
        try:
            async with admin.router.lifespan_context(admin):
                yield {"store": store}
        finally:
            await store.close()

    return lifespan


def create_app(settings: PostroomSettings | None = None) -> FastAPI:
    """The app; `settings` default to the environment's (uvicorn's `--factory` calls this at
    startup, not at import)."""
    settings = settings or load_settings()
    tokenless = settings.admin_token is None and not settings.admin_tokens
    if tokenless:
        logger.warning("no POSTROOM_ADMIN_TOKEN(S): %s is open to local clients", ADMIN_PREFIX)
    admin = create_admin_app(settings=settings, local_only=True if tokenless else None)
    app = FastAPI(
        title="postroom example",
        lifespan=PostroomLifespan(
            settings, embedded_redis=True, then=app_lifespan(settings, admin)
        ),
    )
    app.include_router(routes.router)
    app.include_router(realtime.router)
    app.mount(ADMIN_PREFIX, admin)
    trace_requests(app, settings)  # with POSTROOM_TRACING: a span per request
    return app
