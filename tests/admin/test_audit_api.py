"""The admin API's audit trail, on the suite's real Redis and real workers: a scripted
session's records are exact (who, what, outcome, from where); a read-only token can look but
not change anything, and each refusal is recorded; refused logins are recorded without the
token presented; a record that cannot be written does not hide the action's answer; the
named tokens and their roles come from POSTROOM_ADMIN_TOKENS, and an unknown role stops the
settings naming the variable."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from config.admin import AdminToken
from config.errors import ConfigError
from config.queues import QueueName
from config.settings import PostroomSettings, load_settings
from tests.admin.conftest import TOKEN
from tests.admin.tasks import note
from tests.conftest import eventually, running_worker
from workers.client import PostroomClient
from workers.ops.admin import create_admin_app
from workers.ops.admin.audit import AUDIT_ACTION, AuditedRoute
from workers.store.keys import Keys

ALICE = "alice-operator-token-0123456789"
VIEWER = "viewer-read-only-token-0123456789"
TOKENS = {
    "alice": AdminToken.model_validate({"token": ALICE, "role": "operator"}),
    "viewer": AdminToken.model_validate({"token": VIEWER, "role": "read-only"}),
}
DELIVERY = "message-delivery"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def app(settings: PostroomSettings) -> AsyncIterator[FastAPI]:
    app = create_admin_app(settings=settings, token=TOKEN, tokens=TOKENS)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """No token of its own: each call says whose it is."""
    transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 50123))
    async with httpx.AsyncClient(transport=transport, base_url="http://admin") as c:
        yield c


async def trail(http: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    """Every record, oldest first, read by the read-only token (it may read the trail)."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = await http.get("/audit", params=query, headers=bearer(VIEWER))
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return items[::-1]


def without_time(records: list[dict[str, Any]], since: datetime) -> list[dict[str, Any]]:
    """The records less their id and time, once their time is checked to be this session's."""
    until = datetime.now(UTC) + timedelta(seconds=1)
    for record in records:
        assert since <= datetime.fromisoformat(record.pop("at")) <= until, record
        assert record.pop("id")
    return records


def rec(actor: str, action: str, outcome: str = "ok", **fields: Any) -> dict[str, Any]:
    """An expected record of the API (source: the test client's address)."""
    role = {"alice": "operator", "admin": "operator", "viewer": "read-only"}.get(actor)
    base: dict[str, Any] = {
        "actor": actor, "role": role, "via": "api", "source": "10.1.2.3", "action": action,
        "queue": DELIVERY, "job_ids": [], "count": None, "detail": {}, "outcome": outcome,
        "reason": None, "status": 200,
    }  # fmt: skip
    return {**base, **fields}


async def dead_letters(settings: PostroomSettings, ids: list[str]) -> None:
    async with await PostroomClient.connect(settings) as client:
        for n, job_id in enumerate(ids):
            await client.enqueue_payload("admin.refuse", note(n), job_id=job_id)
        async with running_worker(settings, queues=[QueueName.DELIVERY]):

            async def dead() -> bool:
                return await client.dead_letters.count(QueueName.DELIVERY) == len(ids)

            await eventually(dead, "the jobs are dead-lettered")


async def test_audit_records_of_a_scripted_admin_api_session_are_exact(
    settings: PostroomSettings, http: httpx.AsyncClient
) -> None:
    p = settings.key_prefix
    d0, d1, d2, d3 = (f"{p}-dead{n}" for n in range(4))
    await dead_letters(settings, [d0, d1, d2, d3])
    since = datetime.now(UTC) - timedelta(seconds=1)
    alice, admin, viewer = bearer(ALICE), bearer(TOKEN), bearer(VIEWER)
    queue = f"/queues/{DELIVERY}"
    job = f"{p}-job"

    async def call(method: str, path: str, headers: dict[str, str], status: int, **kw: Any) -> Any:
        answer = await http.request(method, path, headers=headers, **kw)
        assert answer.status_code == status, (method, path, answer.text)
        assert "x-postroom-audit" not in answer.headers
        return answer.json()

    body = {"task": "admin.greet", "payload": note(9), "job_id": job, "delay": 3600}
    assert (await call("POST", "/jobs", alice, 201, json=body))["created"] is True
    await call("POST", f"{queue}/pause", alice, 200)
    await call("POST", f"{queue}/resume", viewer, 403)
    await call("GET", "/queues", bearer("not-a-token-at-all-00000"), 401)
    await call("POST", f"{queue}/resume", alice, 200)
    assert (await call("POST", f"{queue}/failed/{d0}/retry", alice, 200)) == {"retried": 1}
    assert (await call("DELETE", f"{queue}/failed/{d1}", admin, 200)) == {"removed": 1}
    await call("DELETE", f"{queue}/failed/{p}-nope", alice, 404)
    await call("POST", f"/jobs/{job}/cancel", alice, 200)
    await call("POST", "/jobs", alice, 422, json={"task": "admin.greet", "payload": {}})
    clean = {"state": "cancelled", "older_than": 0}
    assert (await call("POST", f"{queue}/clean", alice, 200, json=clean)) == {"removed": 1}
    assert (await call("POST", f"{queue}/failed/retry", alice, 200)) == {"retried": 2}
    assert (await call("DELETE", f"{queue}/failed", alice, 200)) == {"removed": 0}
    await call("GET", f"{queue}/failed", viewer, 200)  # reading leaves no record

    assert without_time(await trail(http), since) == [
        rec("alice", "job.enqueue", job_ids=[job], count=1,
            detail={"task": "admin.greet", "created": True}, status=201),
        rec("alice", "queue.pause"),
        rec("viewer", "queue.resume", "denied", status=403,
            reason="the token 'viewer' is read-only: it may not change anything"),
        rec("anonymous", "login.failed", "denied", queue=None, status=401,
            reason="invalid bearer token", detail={"method": "GET", "path": "/queues"}),
        rec("alice", "queue.resume"),
        rec("alice", "dead-letter.retry", job_ids=[d0], count=1),
        rec("admin", "dead-letter.remove", job_ids=[d1], count=1),
        rec("alice", "dead-letter.remove", "error", job_ids=[f"{p}-nope"], status=404,
            reason=f"no job '{p}-nope' among the dead letters of {DELIVERY}"),
        rec("alice", "job.cancel", job_ids=[job], count=1, detail={"outcome": "cancelled"}),
        rec("alice", "job.enqueue", "error", queue=None, status=422,
            detail={"task": "admin.greet"},
            reason="body.payload.note: payload.note: Field required (task 'admin.greet')"),
        rec("alice", "queue.clean", count=1, detail={"state": "cancelled", "older_than": 0.0}),
        rec("alice", "dead-letter.retry-all", count=2),
        rec("alice", "dead-letter.purge", count=0),
    ]  # fmt: skip
    # Filters: by actor, action, outcome, and a time range that ends before the session.
    assert [r["action"] for r in await trail(http, actor="admin")] == ["dead-letter.remove"]
    denied = await trail(http, outcome="denied")
    assert [r["action"] for r in denied] == ["queue.resume", "login.failed"]
    assert len(await trail(http, action="queue.resume")) == 2
    assert await trail(http, until=(since - timedelta(minutes=1)).isoformat()) == []


async def test_a_read_only_token_cannot_mutate_anything_and_each_refusal_is_audited(
    app: FastAPI, settings: PostroomSettings, http: httpx.AsyncClient
) -> None:
    dead = f"{settings.key_prefix}-dead"
    await dead_letters(settings, [dead])
    changes = [
        (
            method.upper(),
            path.replace("{queue}", DELIVERY)
            .replace("{job_id}", dead)
            .replace("{group}", "billing")  # the RabbitMQ event dead letters' routes
            .replace("{letter_id}", dead),
            op,
        )
        for path, operations in app.openapi()["paths"].items()
        for method, op in operations.items()
        if method != "get"
    ]
    assert len(changes) == 13
    bodies = {
        "/jobs": {"task": "admin.greet", "payload": note(1)},
        f"/queues/{DELIVERY}/clean": {"state": "dead-lettered", "older_than": 0},
    }
    for method, path, _ in changes:
        answer = await http.request(method, path, headers=bearer(VIEWER), json=bodies.get(path))
        assert answer.status_code == 403, (method, path, answer.text)
        assert "read-only" in answer.json()["detail"]
    # Nothing changed: the dead letter is there, nothing was queued, the queue runs.
    async with await PostroomClient.connect(settings) as client:
        assert await client.dead_letters.get(dead) is not None
        stats = await client.queue_stats(QueueName.DELIVERY)
        assert stats.paused is False and stats.waiting == 0 and stats.dead_lettered_now == 1
    records = await trail(http)
    assert [(r["actor"], r["action"], r["outcome"], r["status"]) for r in records] == [
        ("viewer", op[AUDIT_ACTION], "denied", 403) for _, _, op in changes
    ]
    session = await http.get("/session", headers=bearer(VIEWER))
    assert session.json() == {"name": "viewer", "role": "read-only", "may_change": False}
    # It may read everything.
    for path in ("/queues", f"/queues/{DELIVERY}/failed", f"/jobs/{dead}", "/audit", "/metrics"):
        assert (await http.get(path, headers=bearer(VIEWER))).status_code == 200, path


def test_every_change_of_the_admin_api_names_its_audit_action(app: FastAPI) -> None:
    """So a route added later cannot change things unrecorded."""
    for path, operations in app.openapi()["paths"].items():
        for method, operation in operations.items():
            named = AUDIT_ACTION in operation
            assert named == (method != "get"), (method, path)
    protected = [r for r in app.routes if isinstance(r, APIRoute) and r.path != "/health/live"]
    dashboard = {"/", "/static/{name}"}
    assert all(isinstance(r, AuditedRoute) for r in protected if r.path not in dashboard)


async def test_login_failures_are_audited_with_the_source_address_never_the_token(
    settings: PostroomSettings, http: httpx.AsyncClient
) -> None:
    presented = "a-guess-at-the-admin-token-42"
    assert (
        await http.post(f"/queues/{DELIVERY}/pause", headers=bearer(presented))
    ).status_code == 401
    assert (await http.get("/audit")).status_code == 401
    [guess, missing] = await trail(http)
    assert (guess["action"], guess["actor"], guess["source"], guess["reason"]) == (
        "login.failed", "anonymous", "10.1.2.3", "invalid bearer token"
    )  # fmt: skip
    assert guess["detail"] == {
        "method": "POST", "path": f"/queues/{DELIVERY}/pause", "attempted": "queue.pause"
    }  # fmt: skip
    assert missing["reason"].startswith("missing bearer token")
    async with await PostroomClient.connect(settings) as client:
        stored = await client.redis.xrange(Keys(settings.key_prefix).audit_log())
        assert all(presented.encode() not in fields[b"record"] for _, fields in stored)
        assert all(ALICE.encode() not in fields[b"record"] for _, fields in stored)
        assert (await client.queue_stats(QueueName.DELIVERY)).paused is False


async def test_a_failed_audit_write_does_not_hide_the_actions_result(
    settings: PostroomSettings, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Fail open: the change is made and answered, flagged, and the record logged whole."""
    async with await PostroomClient.connect(settings) as client:
        # A key of the wrong type: Redis refuses the XADD (WRONGTYPE).
        await client.redis.set(Keys(settings.key_prefix).audit_log(), b"not a stream")
        with caplog.at_level(logging.ERROR, logger="workers.store.audit_log"):
            answer = await http.post(f"/queues/{DELIVERY}/pause", headers=bearer(ALICE))
            missing = await http.delete(f"/queues/{DELIVERY}/failed/x", headers=bearer(ALICE))
        assert answer.status_code == 200 and answer.json()["paused"] is True
        assert answer.headers["x-postroom-audit"] == "not-recorded"
        assert (await client.queue_stats(QueueName.DELIVERY)).paused is True
        assert missing.status_code == 404 and missing.headers["x-postroom-audit"] == "not-recorded"
    [paused, removed] = [r for r in caplog.records if "audit record not written" in r.message]
    assert "WRONGTYPE" in paused.message
    assert '"actor":"alice"' in paused.message and '"action":"queue.pause"' in paused.message
    assert '"outcome":"error"' in removed.message and '"status":404' in removed.message


async def test_named_admin_tokens_and_their_roles_come_from_POSTROOM_ADMIN_TOKENS(
    settings: PostroomSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "POSTROOM_ADMIN_TOKENS",
        f'{{"alice": {{"token": "{ALICE}", "role": "operator"}},'
        f' "viewer": {{"token": "{VIEWER}", "role": "read-only"}}}}',
    )
    from_env = load_settings(**settings.model_dump(exclude={"admin_tokens"}))
    assert {name: t.role for name, t in from_env.admin_tokens.items()} == {
        "alice": "operator", "viewer": "read-only"
    }  # fmt: skip
    assert ALICE not in repr(from_env)
    app = create_admin_app(settings=from_env)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://admin") as http:
            pause = f"/queues/{DELIVERY}/pause"
            assert (await http.post(pause, headers=bearer(VIEWER))).status_code == 403
            assert (await http.post(pause, headers=bearer(ALICE))).status_code == 200
            assert (await http.post(pause, headers=bearer(TOKEN))).status_code == 401


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('{"bob": {"token": "bob-token-0123456789", "role": "admin"}}',
         "token 'bob' has unknown role 'admin'; roles: read-only, operator"),
        ('{"bob": {"token": "short", "role": "operator"}}', "at least 16 characters"),
        ("not json", "is not JSON"),
        ('{"a": {"token": "same-token-0123456789", "role": "operator"},'
         ' "b": {"token": "same-token-0123456789", "role": "read-only"}}', "the same secret"),
    ],
)  # fmt: skip
def test_an_unknown_audit_role_or_bad_token_stops_at_start_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.setenv("POSTROOM_ADMIN_TOKENS", value)
    with pytest.raises(ConfigError, match="POSTROOM_ADMIN_TOKENS") as caught:
        load_settings()
    assert message in str(caught.value)
    assert "0123456789" not in str(caught.value)


async def test_a_local_only_app_audits_its_changes_as_local(settings: PostroomSettings) -> None:
    app = create_admin_app(settings=settings, local_only=True)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://admin") as http:
            assert (await http.post(f"/queues/{DELIVERY}/pause")).status_code == 200
            assert (await http.get("/session")).json() == {
                "name": "local",
                "role": "operator",
                "may_change": True,
            }
            [record] = (await http.get("/audit")).json()["items"]
    assert (record["actor"], record["role"], record["action"], record["source"]) == (
        "local", "operator", "queue.pause", "127.0.0.1"
    )  # fmt: skip
