"""Liveness (the process answers; no token) and readiness (Redis answers and every expected
queue has a live worker)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status
from redis.exceptions import RedisError

from workers.ops.admin.audit import AuditedRoute
from workers.ops.admin.schemas import Liveness, Readiness
from workers.ops.admin.state import admin_state

live_router = APIRouter(tags=["health"])
router = APIRouter(tags=["health"], route_class=AuditedRoute)


@live_router.get("/health/live", summary="The server answers (no token needed)")
async def live() -> Liveness:
    return Liveness()


@router.get(
    "/health/ready",
    summary="Redis answers and every expected queue has a live worker",
    responses={status.HTTP_503_SERVICE_UNAVAILABLE: {"model": Readiness}},
)
async def ready(request: Request, response: Response) -> Readiness:
    state = admin_state(request)
    expected = state.expected_queues
    try:
        client = await state.client()
        await client.redis.ping()
        workers = await client.live_workers(expected)
    except (RedisError, OSError) as exc:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return Readiness(
            ready=False, redis=False, workers={}, missing=expected, error=f"Redis: {exc}"
        )
    missing = [queue for queue in expected if not workers[queue.value]]
    if missing:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Readiness(ready=not missing, redis=True, workers=workers, missing=missing)
