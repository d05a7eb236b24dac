"""`GET /metrics`: the cluster-wide numbers from Redis in Prometheus text (cluster_metrics.py).

Behind the bearer token like the rest of the API; Prometheus sends it with
`authorization: {credentials: ...}` (or `bearer_token_file`) in its scrape config.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST

from workers.client import PostroomClient
from workers.ops.admin.audit import AuditedRoute
from workers.ops.admin.state import admin_client
from workers.ops.cluster_metrics import render_cluster_metrics

router = APIRouter(tags=["metrics"], route_class=AuditedRoute)


@router.get(
    "/metrics",
    summary="Every queue's numbers for Prometheus",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
)
async def metrics(client: Annotated[PostroomClient, Depends(admin_client)]) -> Response:
    return Response(await render_cluster_metrics(client), media_type=CONTENT_TYPE_LATEST)
