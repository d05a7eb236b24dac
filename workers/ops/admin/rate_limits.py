"""`GET /rate-limits`: every configured rate limit, its current rate and the jobs it holds back."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from workers.client import PostroomClient
from workers.ops.admin.audit import AuditedRoute
from workers.ops.admin.state import admin_client
from workers.ops.rate_limits import RateLimitInfo, read_rate_limits

router = APIRouter(tags=["rate limits"], route_class=AuditedRoute)


@router.get("/rate-limits", summary="Every rate limit: its limit, current rate, throttled jobs")
async def rate_limits(
    client: Annotated[PostroomClient, Depends(admin_client)],
) -> list[RateLimitInfo]:
    """Queue limits (`POSTROOM_QUEUES__<QUEUE>__RATE_LIMIT`), named limits
    (`POSTROOM_RATE_LIMITS__<NAME>`) and tasks' own, cluster-wide from Redis."""
    return await read_rate_limits(client)
