"""The admin app's factory, for `postroom serve` and for mounting in a web app.

Standalone, its lifespan closes the client it opened. Mounted under a prefix
(`host.mount("/admin", create_admin_app(client=client))`), Starlette does not run a sub-app's
lifespan: pass the host's client (the host closes it), or let the app open its own on the
first request and close it from the host's lifespan with
`async with admin.router.lifespan_context(admin): ...`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI, status
from pydantic import SecretStr

from config.admin import LEGACY_TOKEN_NAME, AdminToken
from config.errors import ConfigError
from config.queues import QueueName
from config.settings import PostroomSettings, load_settings
from workers.client import PostroomClient
from workers.ops.admin import (
    audit,
    dashboard,
    dead_letters,
    event_dead_letters,
    health,
    jobs,
    queues,
    rate_limits,
)
from workers.ops.admin.auth import require_token, token_digest
from workers.ops.admin.errors import add_error_handlers
from workers.ops.admin.metrics import router as metrics_router
from workers.ops.admin.schemas import Problem
from workers.ops.admin.state import AdminState, KnownToken, Principal
from workers.registry import TaskRegistry, registry

# Every route module's router, in one place: a new module adds its router to one list.
PUBLIC_ROUTERS: list[APIRouter] = [health.live_router, dashboard.router]
PROTECTED_ROUTERS: list[APIRouter] = [
    queues.router,
    jobs.router,
    dead_letters.router,
    event_dead_letters.router,
    health.router,
    metrics_router,
    rate_limits.router,
    audit.router,
]


def create_admin_app(
    *,
    settings: PostroomSettings | None = None,
    client: PostroomClient | None = None,
    token: str | SecretStr | None = None,
    tokens: Mapping[str, AdminToken] | None = None,
    local_only: bool | None = None,
    tasks: TaskRegistry | None = None,
    expected_queues: Iterable[QueueName] | None = None,
) -> FastAPI:
    """The admin API. `token` (default `POSTROOM_ADMIN_TOKEN`, an operator named "admin")
    and `tokens` (default `POSTROOM_ADMIN_TOKENS`, named, each with a role) guard every
    endpoint but liveness; without any it is refused unless `local_only`
    (`POSTROOM_ADMIN_LOCAL_ONLY`), and then it is open to whoever can reach it, so it must
    only listen on loopback.

    `expected_queues` (default `POSTROOM_WORKER_QUEUES`, all six) must each have a live
    worker for readiness.
    """
    settings = client.settings if client is not None else settings or load_settings()
    secret = token if token is not None else settings.admin_token
    text = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    local_only = settings.admin_local_only if local_only is None else local_only
    known = _known_tokens(text, settings.admin_tokens if tokens is None else tokens)
    if not known and not local_only:
        raise ConfigError(
            "the admin API needs a bearer token: set POSTROOM_ADMIN_TOKEN or "
            "POSTROOM_ADMIN_TOKENS (or serve it on loopback only with --local-only / "
            "POSTROOM_ADMIN_LOCAL_ONLY=true)"
        )
    state = AdminState(
        settings,
        tasks or (client.tasks if client is not None else registry),
        client=client,
        tokens=known,
        expected_queues=list(expected_queues or settings.worker_queues),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await state.close()

    app = FastAPI(
        title="postroom admin",
        version="1",
        description="Watch and steer postroom's queues: numbers, jobs, dead letters, health.",
        lifespan=lifespan,
    )
    app.state.admin = state
    for router in PUBLIC_ROUTERS:
        app.include_router(router)
    for router in PROTECTED_ROUTERS:
        app.include_router(
            router,
            dependencies=[Depends(require_token)],
            responses={
                status.HTTP_401_UNAUTHORIZED: {"description": "missing or wrong token"},
                status.HTTP_403_FORBIDDEN: {
                    "model": Problem,
                    "description": "a read-only token asked for a change",
                },
            },
        )
    add_error_handlers(app, settings)
    return app


def _known_tokens(single: str | None, named: Mapping[str, AdminToken]) -> list[KnownToken]:
    known = (
        [KnownToken(Principal(LEGACY_TOKEN_NAME, "operator"), token_digest(single))]
        if single
        else []
    )
    for name, spec in named.items():
        if single and name == LEGACY_TOKEN_NAME:
            raise ConfigError(
                f"POSTROOM_ADMIN_TOKENS: names a token {LEGACY_TOKEN_NAME!r}, the name "
                "POSTROOM_ADMIN_TOKEN goes by"
            )
        known.append(
            KnownToken(Principal(name, spec.role), token_digest(spec.token.get_secret_value()))
        )
    return known
