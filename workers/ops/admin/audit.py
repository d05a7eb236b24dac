"""The admin API's audit trail: every change it is asked for, and every refused login, is
recorded with who (the token's name), what, when, from where and how it ended; `GET /audit`
reads it back.

A route that changes something names its action (`openapi_extra=audited("queue.pause")`,
shown in the schema as `x-audit-action`) and fills in what it touched through the `Audit`
dependency (`audit.count = ...`). `AuditedRoute`, the route class of every protected router,
writes the record once the route has answered or raised, whatever the outcome: done (`ok`),
refused by the role check (`denied`, 403) or failed (`error`, with the status and reason:
a 404, a 409, a 422 naming the field, Redis down). A 401 on any route is recorded as
`login.failed` with the client's address and never the token presented.

The record is written before the answer leaves. If it cannot be written, the answer is the
action's all the same (fail open: the change has happened and the operator must see its
result), with `X-Postroom-Audit: not-recorded`, and the record is logged whole at ERROR.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, BeforeValidator, Field
from redis.exceptions import RedisError

from workers.ops.admin.params import Limit
from workers.ops.admin.state import admin_state
from workers.store.audit_log import (
    AuditFilter,
    AuditPage,
    AuditRecord,
    Outcome,
    Via,
    log_unwritten,
    record_or_log,
)

AUDIT_ACTION = "x-audit-action"
# Set on an answer whose audit record could not be written.
AUDIT_HEADER = "X-Postroom-Audit"
# The dashboard says so in each call, so its records read `via: dashboard`.
CLIENT_HEADER = "x-postroom-client"
REASON_LIMIT = 500


def audited(action: str) -> dict[str, Any]:
    """A changing route's `openapi_extra`: the action its audit records name."""
    return {AUDIT_ACTION: action}


@dataclass
class AuditEntry:
    """What a request's route touched, filled in as it runs; the route class records it."""

    action: str | None
    queue: str | None = None
    job_ids: list[str] = field(default_factory=list)
    count: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def audit_entry(request: Request) -> AuditEntry:
    entry: AuditEntry = request.state.audit
    return entry


Audit = Annotated[AuditEntry, Depends(audit_entry)]


def _outcome(code: int) -> Outcome:
    if code < 400:
        return "ok"
    return "denied" if code in (401, 403) else "error"


def _validation_reason(exc: RequestValidationError) -> str:
    """Where and what, never the value (a payload may hold a secret)."""
    parts = []
    for error in exc.errors():
        loc = ".".join(str(p) for p in error.get("loc", ()))
        parts.append(f"{loc}: {error.get('msg', '')}")
    return "; ".join(parts)


def _record(request: Request, entry: AuditEntry, code: int, reason: str | None) -> AuditRecord:
    principal = getattr(request.state, "principal", None)
    login_failed = code == status.HTTP_401_UNAUTHORIZED
    detail = dict(entry.detail)
    if login_failed:
        detail = {"method": request.method, "path": request.url.path}
        if entry.action:
            detail["attempted"] = entry.action
    via: Via = "dashboard" if request.headers.get(CLIENT_HEADER) == "dashboard" else "api"
    return AuditRecord(
        actor=principal.name if principal and not login_failed else "anonymous",
        role=principal.role if principal and not login_failed else None,
        via=via,
        source=request.client.host if request.client else None,
        action="login.failed" if login_failed else entry.action or "?",
        queue=entry.queue,
        job_ids=entry.job_ids,
        count=entry.count,
        detail=detail,
        outcome=_outcome(code),
        reason=reason[:REASON_LIMIT] if reason else None,
        status=code,
    )


async def _write(request: Request, entry: AuditEntry, code: int, reason: str | None) -> bool:
    """Record the request if it is a change or a refused login; False if that failed."""
    if entry.action is None and code != status.HTTP_401_UNAUTHORIZED:
        return True
    record = _record(request, entry, code, reason)
    try:
        log = await admin_state(request).audit()
    except (RedisError, OSError) as exc:  # no client: Redis is down
        log_unwritten(record, exc)
        return False
    return await record_or_log(log, record)


class AuditedRoute(APIRoute):
    """A route whose changes and refused logins are recorded (see the module docstring)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()
        action = (self.openapi_extra or {}).get(AUDIT_ACTION)

        async def audited_handler(request: Request) -> Response:
            params = request.path_params
            entry = AuditEntry(
                action,
                queue=params.get("queue"),
                job_ids=[params["job_id"]] if "job_id" in params else [],
            )
            request.state.audit = entry
            try:
                response = await handle(request)
            except HTTPException as exc:
                if not await _write(request, entry, exc.status_code, str(exc.detail)):
                    exc.headers = {**(exc.headers or {}), AUDIT_HEADER: "not-recorded"}
                raise
            except RequestValidationError as exc:
                await _write(request, entry, 422, _validation_reason(exc))
                raise
            except (RedisError, OSError) as exc:
                await _write(request, entry, 503, f"cannot reach Redis: {type(exc).__name__}")
                raise
            except Exception as exc:
                await _write(request, entry, 500, f"{type(exc).__name__}: {exc}")
                raise
            if not await _write(request, entry, response.status_code, None):
                response.headers[AUDIT_HEADER] = "not-recorded"
            return response

        return audited_handler


router = APIRouter(tags=["audit"], route_class=AuditedRoute)
STREAM_ID = r"^[0-9]{1,19}-[0-9]{1,19}$"


def _iso_only(value: Any) -> Any:
    """A time as the schema says (RFC 3339), not pydantic's lax epoch seconds."""
    if isinstance(value, str) and value.strip().lstrip("+-").replace(".", "", 1).isdigit():
        raise ValueError("must be an RFC 3339 date-time, e.g. 2026-12-03T14:00:00Z")
    return value


Moment = Annotated[datetime | None, BeforeValidator(_iso_only)]


class Session(BaseModel):
    """Whose token a request carries: its name and role (never the token)."""

    name: str
    role: str
    may_change: bool = Field(
        description="False for a read-only token: the dashboard disables its change controls"
    )


@router.get("/session", summary="Whose token this is, and its role", tags=["session"])
async def session(request: Request) -> Session:
    """What the dashboard shows as logged in; a read-only token may only GET."""
    principal = request.state.principal
    return Session(name=principal.name, role=principal.role, may_change=principal.may_change)


@router.get("/audit", summary="The audit trail, newest first")
async def audit_trail(
    request: Request,
    actor: Annotated[str | None, Query(max_length=200, description="a token's name")] = None,
    action: Annotated[str | None, Query(max_length=100, description="e.g. queue.pause")] = None,
    queue: Annotated[str | None, Query(max_length=100)] = None,
    outcome: Annotated[Outcome | None, Query()] = None,
    via: Annotated[Via | None, Query()] = None,
    since: Annotated[Moment, Query(description="records from then on")] = None,
    until: Annotated[Moment, Query(description="records up to then")] = None,
    limit: Limit = 50,
    cursor: Annotated[
        str | None, Query(pattern=STREAM_ID, description="`next_cursor` of the previous page")
    ] = None,
) -> AuditPage:
    """Who did what through the API, the dashboard and the CLI, refused logins, and domain
    events sent to the trail. Follow `next_cursor` until it is null for every match."""
    log = await admin_state(request).audit()
    where = AuditFilter(actor=actor, action=action, queue=queue, outcome=outcome, via=via)
    return await log.query(where, since=since, until=until, limit=limit, cursor=cursor)
