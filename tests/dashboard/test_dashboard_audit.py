"""The audit trail of a dashboard session, in a real headless Chromium against the admin app
on a real uvicorn server and real Redis: a refused login, an operator pausing, resuming,
retrying and removing, a read-only user finding the change disabled and refused when calling the
API anyway (staying logged in); the audit page lists and filters the records, and the records
are exact."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.async_api import Dialog, Page, expect

from config.admin import AdminToken
from config.queues import QueueName
from config.settings import PostroomSettings
from tests.conftest import eventually, running_worker
from tests.dashboard.test_dashboard import log_in
from tests.live_server import live_server
from workers.client import PostroomClient
from workers.context import JobContext
from workers.errors import PermanentError
from workers.ops.admin import create_admin_app
from workers.registry import TaskRegistry
from workers.store.audit_log import AuditRecord, audit_log

OPS = "ops-operator-token-for-the-dashboard"
VIEWER = "viewer-token-for-the-dashboard-00"
TOKENS = {
    "ops": AdminToken.model_validate({"token": OPS, "role": "operator"}),
    "viewer": AdminToken.model_validate({"token": VIEWER, "role": "read-only"}),
}
DELIVERY = QueueName.DELIVERY.value

tasks = TaskRegistry()


@tasks.task(queue=QueueName.DELIVERY, name="tests.dashboard.audit.refused")
async def refused(ctx: JobContext, n: int) -> None:
    raise PermanentError(f"recipient {n} refused")


@pytest.fixture
async def admin_url(settings: PostroomSettings) -> AsyncIterator[str]:
    app = create_admin_app(settings=settings, tokens=TOKENS, tasks=tasks)
    async with live_server(app) as url:
        yield url


def rec(actor: str, action: str, outcome: str = "ok", **fields: Any) -> dict[str, Any]:
    role = {"ops": "operator", "viewer": "read-only"}.get(actor)
    base: dict[str, Any] = {
        "actor": actor, "role": role, "via": "dashboard", "source": "127.0.0.1",
        "action": action, "queue": DELIVERY, "job_ids": [], "count": None, "detail": {},
        "outcome": outcome, "reason": None, "status": 200,
    }  # fmt: skip
    return {**base, **fields}


async def test_audit_records_of_a_dashboard_session_in_chromium_are_exact(
    settings: PostroomSettings, admin_url: str, page: Page
) -> None:
    p = settings.key_prefix
    d0, d1 = f"{p}-d0", f"{p}-d1"
    async with await PostroomClient.connect(settings, tasks) as client:
        await client.enqueue(refused.call(0).with_options(job_id=d0))
        await client.enqueue(refused.call(1).with_options(job_id=d1))
        async with running_worker(settings, tasks=tasks, queues=[QueueName.DELIVERY]):

            async def dead() -> bool:
                return await client.dead_letters.count(QueueName.DELIVERY) == 2

            await eventually(dead, "the jobs are dead-lettered")
    since = datetime.now(UTC) - timedelta(seconds=1)

    await log_in(page, admin_url, "a-wrong-token-typed-by-someone")
    await expect(page.get_by_test_id("error-text")).to_contain_text("token was refused (401)")
    await expect(page.get_by_test_id("login")).to_be_visible()

    await log_in(page, admin_url, OPS)
    await expect(page.get_by_test_id("whoami")).to_have_text("ops (operator)")
    row = page.locator(f"[data-testid=queue-row][data-queue={DELIVERY}]")
    await row.get_by_test_id("queue-pause").click()
    await expect(row.get_by_test_id("paused")).to_be_visible()
    await row.get_by_test_id("queue-resume").click()
    await expect(row.get_by_test_id("paused")).to_have_count(0)
    await row.click()
    first = page.locator(f"[data-testid=dead-letter][data-job-id='{d0}']")
    second = page.locator(f"[data-testid=dead-letter][data-job-id='{d1}']")
    await first.get_by_test_id("retry").click()
    await expect(first).to_have_count(0)

    async def accept(dialog: Dialog) -> None:
        await dialog.accept()

    page.once("dialog", accept)
    await second.get_by_test_id("remove").click()
    await expect(second).to_have_count(0)
    await page.get_by_test_id("logout").click()

    await log_in(page, admin_url, VIEWER)
    await expect(page.get_by_test_id("whoami")).to_have_text("viewer (read-only)")
    pause = row.get_by_test_id("queue-pause")
    await expect(pause).to_be_disabled()  # tests/dashboard/test_read_only.py: every page
    # The server refuses regardless: the page's own call, made from the console.
    denied = await page.evaluate(
        """async (queue) => (await fetch(`queues/${queue}/pause`, {
            method: "POST",
            headers: {
                Authorization: `Bearer ${sessionStorage.getItem("postroom.admin.token")}`,
                "X-Postroom-Client": "dashboard",
            },
        })).json()""",
        DELIVERY,
    )
    assert re.fullmatch(r"the token 'viewer' is read-only.*", denied["detail"])
    await expect(page.get_by_test_id("dashboard")).to_be_visible()  # still logged in
    await expect(row.get_by_test_id("paused")).to_have_count(0)

    await page.get_by_test_id("nav-audit").click()
    rows = page.get_by_test_id("audit-row")
    await expect(rows).to_have_count(6)
    newest = rows.first
    await expect(newest.get_by_test_id("audit-actor")).to_have_text("viewer")
    await expect(newest.get_by_test_id("audit-action")).to_have_text("queue.pause")
    await expect(newest.get_by_test_id("audit-outcome")).to_have_text("denied")
    await expect(newest.get_by_test_id("audit-via")).to_have_text("dashboard")
    await expect(rows.last.get_by_test_id("audit-action")).to_have_text("login.failed")
    await expect(rows.last.get_by_test_id("audit-source")).to_have_text("127.0.0.1")
    await page.get_by_test_id("audit-filter-actor").fill("ops")
    await page.get_by_test_id("audit-apply").click()
    await expect(rows).to_have_count(4)
    await expect(rows.nth(1).get_by_test_id("audit-jobs")).to_have_text(d0)
    assert "#page=audit" in page.url
    await page.reload()  # the page is kept in the URL; the filters are not
    await expect(rows).to_have_count(6)

    async with httpx.AsyncClient(base_url=admin_url) as http:
        answer = await http.get(
            "audit", params={"limit": 50}, headers={"Authorization": f"Bearer {VIEWER}"}
        )
    records = answer.json()["items"][::-1]
    until = datetime.now(UTC) + timedelta(seconds=1)
    for record in records:
        assert since <= datetime.fromisoformat(record.pop("at")) <= until
        assert record.pop("id")
    assert records == [
        rec("anonymous", "login.failed", "denied", queue=None, status=401,
            reason="invalid bearer token", detail={"method": "GET", "path": "/session"}),
        rec("ops", "queue.pause"),
        rec("ops", "queue.resume"),
        rec("ops", "dead-letter.retry", job_ids=[d0], count=1),
        rec("ops", "dead-letter.remove", job_ids=[d1], count=1),
        rec("viewer", "queue.pause", "denied", status=403,
            reason="the token 'viewer' is read-only: it may not change anything"),
    ]  # fmt: skip


async def test_the_audit_page_pages_back_through_older_records_and_filters_by_outcome(
    settings: PostroomSettings, admin_url: str, page: Page
) -> None:
    async with await PostroomClient.connect(settings) as client:
        log = audit_log(client.redis, settings)
        for n in range(30):
            outcome = "error" if n % 10 == 0 else "ok"
            await log.append(AuditRecord(actor="cron", via="cli", action="queue.clean",
                                         count=n, outcome=outcome))  # fmt: skip
    await page.goto(admin_url + "#page=audit")
    await page.get_by_test_id("token").fill(VIEWER)
    await page.get_by_test_id("login-submit").click()
    rows = page.get_by_test_id("audit-row")
    await expect(rows).to_have_count(25)
    await expect(rows.first.get_by_test_id("audit-count")).to_have_text("29")
    await expect(page.get_by_test_id("audit-newest")).to_be_disabled()
    await page.get_by_test_id("audit-older").click()
    await expect(rows).to_have_count(5)
    await expect(rows.first.get_by_test_id("audit-count")).to_have_text("4")
    await expect(page.get_by_test_id("audit-older")).to_be_disabled()
    await page.get_by_test_id("audit-newest").click()
    await expect(rows).to_have_count(25)
    await page.get_by_test_id("audit-filter-outcome").select_option("error")
    await page.get_by_test_id("audit-apply").click()
    await expect(rows).to_have_count(3)
    counts = [await row.get_by_test_id("audit-count").inner_text() for row in await rows.all()]
    assert counts == ["20", "10", "0"]
