"""The CLI's audit trail, run as real `postroom` processes against the suite's Redis: a
scripted session's records are exact (operator, host, what, outcome), `postroom audit` lists
and filters them; an unknown role in POSTROOM_ADMIN_TOKENS stops `postroom serve` at start
naming the variable."""

from __future__ import annotations

import getpass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from config.queues import QueueName
from config.settings import PostroomSettings
from tests.admin.tasks import note
from tests.admin.test_admin_cli import postroom
from tests.conftest import eventually, running_worker
from workers.client import PostroomClient

DELIVERY = "message-delivery"
HOST = "ops-box-7"


async def cli(
    settings: PostroomSettings, *args: str, code: int = 0, env: dict[str, str] | None = None
) -> str:
    got, out, err = await postroom(settings, *args, POSTROOM_HOST_NAME=HOST, **(env or {}))
    assert got == code, (args, out, err)
    assert "audit record not written" not in err
    return out if code == 0 else err


def rec(actor: str, action: str, outcome: str = "ok", **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "actor": actor, "role": None, "via": "cli", "source": HOST, "action": action,
        "queue": DELIVERY, "job_ids": [], "count": None, "detail": {}, "outcome": outcome,
        "reason": None, "status": None,
    }  # fmt: skip
    return {**base, **fields}


async def test_audit_records_of_a_scripted_cli_session_are_exact(
    settings: PostroomSettings,
) -> None:
    p = settings.key_prefix
    d0, d1, d2 = (f"{p}-dead{n}" for n in range(3))
    async with await PostroomClient.connect(settings) as client:
        for n, job_id in enumerate((d0, d1, d2)):
            await client.enqueue_payload("admin.refuse", note(n), job_id=job_id)
        async with running_worker(settings, queues=[QueueName.DELIVERY]):

            async def dead() -> bool:
                return await client.dead_letters.count(QueueName.DELIVERY) == 3

            await eventually(dead, "the jobs are dead-lettered")
    since = datetime.now(UTC) - timedelta(seconds=1)
    job = f"{p}-later"
    carol = {"POSTROOM_OPERATOR": "carol"}
    payload = orjson.dumps(note(5)).decode()

    await cli(settings, "enqueue", "admin.greet", "--json", payload, "--job-id", job,
              "--delay", "3600", env=carol)  # fmt: skip
    await cli(settings, "pause", DELIVERY, "--operator", "dave", env=carol)
    await cli(settings, "resume", DELIVERY)  # the OS user
    await cli(settings, "retry", DELIVERY, d0, env=carol)
    err = await cli(settings, "retry", DELIVERY, d1, f"{p}-nope", code=2, env=carol)
    assert f"no dead letter '{p}-nope'" in err
    await cli(settings, "remove", DELIVERY, d1, env=carol)
    await cli(settings, "cancel", job, env=carol)
    await cli(settings, "clean", DELIVERY, "--state", "cancelled", env=carol)
    await cli(settings, "enqueue", "admin.greet", "--json", "{}", code=2, env=carol)
    await cli(settings, "retry", DELIVERY, "--all", env=carol)
    await cli(settings, "purge", DELIVERY, env=carol)
    await cli(settings, "migrate-keys", DELIVERY, env=carol)
    await cli(settings, "migrate-keys", "--dry-run", env=carol)  # counting changes nothing
    await cli(settings, "stats")  # reading leaves no record

    listing = orjson.loads(await cli(settings, "audit", "--output", "json", "--limit", "500"))
    assert listing["next_cursor"] is None
    records = listing["items"][::-1]
    until = datetime.now(UTC) + timedelta(seconds=1)
    for record in records:
        assert since <= datetime.fromisoformat(record.pop("at")) <= until
        assert record.pop("id")
    invalid = "PayloadValidationError: invalid payload for task 'admin.greet': note: Field required"
    assert records == [
        rec("carol", "job.enqueue", job_ids=[job], count=1,
            detail={"task": "admin.greet", "created": True}),
        rec("dave", "queue.pause"),
        rec(getpass.getuser(), "queue.resume"),
        rec("carol", "dead-letter.retry", job_ids=[d0], count=1),
        rec("carol", "dead-letter.retry", "error", job_ids=[d1, f"{p}-nope"], count=0,
            reason=f"CommandError: no dead letter '{p}-nope' in {DELIVERY}"),
        rec("carol", "dead-letter.remove", job_ids=[d1], count=1),
        rec("carol", "job.cancel", job_ids=[job], count=1, detail={"outcome": "cancelled"}),
        rec("carol", "queue.clean", count=1, detail={"state": "cancelled", "older_than": 0.0}),
        rec("carol", "job.enqueue", "error", queue=None, detail={"task": "admin.greet"},
            reason=invalid),
        rec("carol", "dead-letter.retry-all", count=1),
        rec("carol", "dead-letter.purge", count=0),
        rec("carol", "keys.migrate", queue=None, count=0,
            detail={"queues": [DELIVERY], "markers": 0}),
    ]  # fmt: skip

    mine = orjson.loads(await cli(settings, "audit", "--actor", "dave", "--output", "json"))
    assert [r["action"] for r in mine["items"]] == ["queue.pause"]
    errors = orjson.loads(await cli(settings, "audit", "--outcome", "error", "--json"))
    assert [r["action"] for r in errors["items"]] == ["job.enqueue", "dead-letter.retry"]
    page = orjson.loads(await cli(settings, "audit", "--limit", "2", "--json"))
    rest = orjson.loads(await cli(settings, "audit", "--cursor", page["next_cursor"], "--json"))
    assert len(page["items"]) == 2 and len(rest["items"]) == 10
    table = await cli(settings, "audit", "--action", "queue.pause")
    [header, _, row, footer] = table.splitlines()
    assert header.split()[:6] == ["at", "actor", "role", "via", "source", "action"]
    assert row.split()[2:7] == ["dave", "-", "cli", HOST, "queue.pause"]
    assert footer == "1 record(s)"


async def test_an_unknown_role_stops_postroom_serve_at_start_naming_the_variable(
    settings: PostroomSettings,
) -> None:
    tokens = '{"ops": {"token": "ops-token-0123456789", "role": "superuser"}}'
    code, out, err = await postroom(settings, "serve", "--port", "0",
                                    POSTROOM_ADMIN_TOKENS=tokens)  # fmt: skip
    assert code == 2, (out, err)
    assert "POSTROOM_ADMIN_TOKENS" in err
    assert "token 'ops' has unknown role 'superuser'; roles: read-only, operator" in err
    assert "ops-token-0123456789" not in err
