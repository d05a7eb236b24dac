"""The admin app's error answers: Redis being down (or refusing the credentials, naming the
variable to fix) is a 503 saying so, and a 405 lists every method of its path in `Allow`
(Starlette names only those of the first route matching)."""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request, Response, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException

from config.settings import PostroomSettings
from workers.client import redis_named
from workers.connection.refusal_grace import named_refusal

logger = logging.getLogger(__name__)


def add_error_handlers(app: FastAPI, settings: PostroomSettings) -> None:
    where = redis_named(settings)

    async def redis_down(request: Request, exc: Exception) -> JSONResponse:
        refused = named_refusal(exc, settings, where)
        if refused is not None:
            # Credentials or an ACL rule revoked while the app runs: no retry mends it.
            logger.error("admin API: %s", refused)
            detail = str(refused)
        else:
            logger.warning("admin API: %s: %s", where, exc)
            detail = f"cannot reach Redis: {type(exc).__name__}: {exc}"
        return JSONResponse({"detail": detail}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE)

    routes: list[tuple[re.Pattern[str], list[str]]] = []

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
            if not routes:
                routes.extend(_routes(app))
            path = _route_path(request)
            matching = [(p, methods) for p, methods in routes if p.fullmatch(path)]
            # The most literal path is the one the schema describes (…/failed/retry, not
            # …/failed/{job_id}).
            if matching:
                best = min(p.pattern.count("[^/]+") for p, _ in matching)
                allowed = {m for p, ms in matching if p.pattern.count("[^/]+") == best for m in ms}
                exc.headers = {**(exc.headers or {}), "Allow": ", ".join(sorted(allowed))}
        return await http_exception_handler(request, exc)

    app.add_exception_handler(RedisError, redis_down)
    app.add_exception_handler(OSError, redis_down)
    app.add_exception_handler(HTTPException, http_error)


def _routes(app: FastAPI) -> list[tuple[re.Pattern[str], list[str]]]:
    """Each path of the schema as a pattern, with its methods."""
    return [
        (re.compile(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path))), [m.upper() for m in ops])
        for path, ops in app.openapi()["paths"].items()
    ]


def _route_path(request: Request) -> str:
    """The path inside this app (without the prefix it is mounted under)."""
    path: str = request.scope["path"]
    root: str = request.scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path
