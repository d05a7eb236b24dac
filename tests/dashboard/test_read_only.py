"""A read-only token's dashboard, in a real headless Chromium: on every page (queues, a queue's
jobs, a job, dead letters, event dead letters, rate limits, the audit trail) each change
control is disabled with the reason as its tooltip, and no enabled button on the page is
anything but navigation; an operator's token gets the same controls enabled. The API refuses
a read-only change whatever the page shows (tests/admin/test_audit_api.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal

import pytest
from playwright.async_api import Page, expect

from config.admin import AdminToken
from config.queues import QueueName
from config.settings import PostroomSettings
from tests.admin.test_rate_limits_api import limited_settings
from tests.conftest import eventually, running_worker
from tests.dashboard.test_dashboard import log_in
from tests.events.rabbitmq_support import consuming_here, rabbit_settings
from tests.live_server import live_server
from tests.servers.rabbitmq import Broker
from workers.client import PostroomClient
from workers.context import JobContext
from workers.errors import PermanentError
from workers.events import DomainEvent, EventHandlers, RabbitMQEventBus
from workers.events.rabbitmq.dead_letters import EventDeadLetters
from workers.ops.admin import create_admin_app
from workers.registry import TaskRegistry
from workers.store.job_status import JobState

TOKENS = {
    "ops": AdminToken.model_validate(
        {"token": "ops-token-of-the-read-only-test", "role": "operator"}
    ),
    "viewer": AdminToken.model_validate(
        {"token": "viewer-token-of-the-read-only-test", "role": "read-only"}
    ),
}
READ_ONLY_TIP = "read-only token: changes need an operator token"
# The buttons that change nothing: they only choose what the page shows.
NAVIGATION = {
    "nav-queues", "nav-audit", "logout", "error-dismiss", "page-prev", "page-next",
    "audit-apply", "audit-newest", "audit-older",
}  # fmt: skip
NAVIGATION_PREFIXES = ("tab-", "event-group-")

tasks = TaskRegistry()
events = EventHandlers()


@tasks.task(queue=QueueName.DELIVERY, name="tests.dashboard.read_only.refused")
async def refused(ctx: JobContext) -> None:
    raise PermanentError("refused")


@tasks.task(queue=QueueName.BATCH, name="tests.dashboard.read_only.waits")
async def waits(ctx: JobContext) -> None:
    """Never runs: no worker serves the batch queue here, so it stays cancellable."""


class Spotted(DomainEvent):
    type: Literal["tests.dashboard.read_only.spotted"] = "tests.dashboard.read_only.spotted"


@events.on(Spotted)
async def never(event: Spotted) -> None:
    raise PermanentError("never handled")


@dataclass
class Deployment:
    url: str
    dead_job: str
    queued_job: str


@pytest.fixture
async def deployment(
    settings: PostroomSettings, client: PostroomClient, rabbitmq: Broker
) -> AsyncIterator[Deployment]:
    """A dead letter on the delivery queue, a queued job on batch, an event dead letter of
    group `viewing`, and rate limits, behind an admin app with both tokens."""
    rabbit = rabbit_settings(settings, rabbitmq)
    bus = RabbitMQEventBus(rabbitmq.url, rabbit.event_exchange)
    letters = EventDeadLetters(rabbit, client.redis)
    try:
        async with (
            await PostroomClient.connect(rabbit, tasks) as jobs,
            consuming_here(rabbit, client, events, "viewing"),
            running_worker(rabbit, tasks=tasks, queues=[QueueName.DELIVERY]),
        ):
            dead = await jobs.enqueue(refused.call())
            queued = await jobs.enqueue(waits.call())
            await bus.publish(Spotted())

            async def ready() -> bool:
                return (
                    await dead.status() == JobState.DEAD_LETTERED
                    and await letters.count("viewing") == 1
                )

            await eventually(ready, "the job and the event are dead-lettered")
            app = create_admin_app(settings=limited_settings(rabbit), tokens=TOKENS, tasks=tasks)
            async with live_server(app) as url:
                yield Deployment(url, dead.job_id, queued.job_id)
    finally:
        await letters.close()
        await bus.close()


async def buttons(page: Page) -> dict[str, tuple[bool, str]]:
    """Every visible button's test id: whether it is enabled, and its tooltip."""
    found: list[tuple[str, bool, str]] = await page.evaluate(
        """() => [...document.querySelectorAll("button")]
            .filter((b) => b.checkVisibility())
            .map((b) => [b.dataset.testid ?? b.id, !b.disabled, b.title])"""
    )
    return {testid: (enabled, title) for testid, enabled, title in found}


def navigation(testid: str) -> bool:
    return testid in NAVIGATION or testid.startswith(NAVIGATION_PREFIXES)


async def check_controls(page: Page, changes: list[str], may_change: bool) -> None:
    """`changes` are shown, enabled only when `may_change`, with the reason when not; with
    a read-only token no enabled button but navigation is on the page at all."""
    for testid in changes:
        control = page.get_by_test_id(testid).first
        await expect(control).to_be_visible()
        if may_change:
            await expect(control).to_be_enabled()
        else:
            await expect(control).to_be_disabled()
            await expect(control).to_have_attribute("title", READ_ONLY_TIP)
    shown = await buttons(page)
    assert set(changes) <= set(shown)
    enabled = {testid for testid, (on, _) in shown.items() if on and not navigation(testid)}
    if may_change:
        assert set(changes) <= enabled
    else:
        assert enabled == set()


@pytest.mark.parametrize(("token", "may_change"), [("viewer", False), ("ops", True)])
async def test_change_controls_are_disabled_for_a_read_only_token_and_enabled_for_an_operator(
    deployment: Deployment, page: Page, token: str, may_change: bool
) -> None:
    await log_in(page, deployment.url, TOKENS[token].token.get_secret_value())
    role = TOKENS[token].role
    await expect(page.get_by_test_id("whoami")).to_have_text(f"{token} ({role})")

    # The queues page, with the rate limits and the event dead letters under it.
    await expect(page.get_by_test_id("rate-limit-row").first).to_be_visible()
    letter = page.get_by_test_id("event-dead-letter")
    await expect(letter).to_have_count(1)
    await check_controls(
        page,
        ["queue-pause", "event-retry", "event-remove", "event-retry-all", "event-purge"],
        may_change,
    )

    # A queue's dead letters, and one of them opened.
    await page.locator(f"[data-testid=queue-row][data-queue={QueueName.DELIVERY}]").click()
    dead = page.locator(f"[data-testid=dead-letter][data-job-id='{deployment.dead_job}']")
    await expect(dead).to_be_visible()
    await check_controls(page, ["queue-pause", "retry", "remove", "retry-all"], may_change)
    await dead.locator(".head").click()
    await expect(page.get_by_test_id("job-state")).to_have_text("dead-lettered")
    await check_controls(page, ["retry", "remove", "job-retry", "job-remove"], may_change)

    # A queue's waiting jobs, and one of them opened.
    await page.locator(f"[data-testid=queue-row][data-queue={QueueName.BATCH}]").click()
    await page.get_by_test_id("tab-queued").click()
    row = page.locator(f"[data-testid=job-row][data-job-id='{deployment.queued_job}']")
    await row.click()
    await expect(page.get_by_test_id("job-state")).to_have_text("queued")
    await check_controls(page, ["queue-pause", "job-cancel"], may_change)

    # The audit trail.
    await page.get_by_test_id("nav-audit").click()
    await expect(page.get_by_test_id("audit-filters")).to_be_visible()
    await expect(page.get_by_test_id("dashboard")).to_be_hidden()
    await check_controls(page, [], may_change)
