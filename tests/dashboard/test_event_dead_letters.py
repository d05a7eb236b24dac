"""The dashboard's event dead letters (RabbitMQ transport) in a real headless Chromium: a
handler group's dead letters listed with their reason and masked event, one retried, one
removed, the rest purged."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Literal

from playwright.async_api import Dialog, Page, expect

from config.settings import PostroomSettings
from tests.conftest import eventually
from tests.events.rabbitmq_support import consuming_here, rabbit_settings
from tests.live_server import live_server
from tests.servers.rabbitmq import Broker
from workers.client import PostroomClient
from workers.errors import PermanentError
from workers.events import DomainEvent, EventHandlers, RabbitMQEventBus
from workers.events.rabbitmq.dead_letters import EventDeadLetters
from workers.ops.admin import create_admin_app

TOKEN = "dashboard-test-token"
SECRET = "the combination is 12-34-56"
registry = EventHandlers()
handled: Counter[str] = Counter()
welcome: set[str] = set()


class Noted(DomainEvent):
    type: Literal["tests.dashboard.noted"] = "tests.dashboard.noted"
    content: str


@registry.on(Noted)
async def note(event: Noted) -> None:
    if event.id not in welcome:
        raise PermanentError("the notebook is full")
    handled[event.id] += 1


async def test_rabbitmq_event_dead_letters_are_retried_removed_and_purged_from_the_page(
    settings: PostroomSettings, client: PostroomClient, rabbitmq: Broker, page: Page, tmp_path: Path
) -> None:
    rabbit = rabbit_settings(settings, rabbitmq)
    bus = RabbitMQEventBus(rabbitmq.url, rabbit.event_exchange)
    letters = EventDeadLetters(rabbit, client.redis)
    events = [Noted(content=SECRET) for _ in range(4)]
    asked: list[str] = []

    async def accept(dialog: Dialog) -> None:
        asked.append(dialog.message)
        await dialog.accept()

    page.on("dialog", accept)
    try:
        async with (
            consuming_here(rabbit, client, registry, "notes"),
            live_server(create_admin_app(settings=rabbit, token=TOKEN)) as url,
        ):
            await bus.publish_all(events)

            async def all_dead() -> bool:
                return await letters.count("notes") == len(events)

            await eventually(all_dead, "every event is dead-lettered")
            await page.goto(url)
            await page.get_by_test_id("token").fill(TOKEN)
            await page.get_by_test_id("login-submit").click()
            section = page.get_by_test_id("events")
            await expect(section.get_by_test_id("event-group-notes")).to_be_visible()
            rows = page.get_by_test_id("event-dead-letter")
            await expect(rows).to_have_count(len(events))
            first = page.locator(
                f"[data-testid=event-dead-letter][data-letter-id='{events[0].id}']"
            )
            await expect(first.get_by_test_id("event-dead-letter-error")).to_contain_text(
                "the notebook is full"
            )
            await expect(first).to_contain_text("rejected after 1 try")
            await first.locator("summary").click()
            await expect(first.get_by_test_id("event-body")).to_contain_text('"content": "***"')
            assert SECRET not in await page.content()
            await page.screenshot(path=tmp_path / "event-dead-letters.png", full_page=True)

            welcome.add(events[0].id)
            await first.get_by_test_id("event-retry").click()
            await expect(first).to_have_count(0)

            async def retried() -> bool:
                return handled[events[0].id] == 1

            await eventually(retried, "the retried event was handled")
            second = page.locator(
                f"[data-testid=event-dead-letter][data-letter-id='{events[1].id}']"
            )
            await second.get_by_test_id("event-remove").click()
            await expect(second).to_have_count(0)
            await expect(rows).to_have_count(2)
            await page.get_by_test_id("event-purge").click()
            await expect(page.get_by_test_id("event-letters-empty")).to_be_visible()
            assert await letters.count("notes") == 0
            assert asked == [
                f"Delete event dead letter {events[1].id}? Group notes will not handle it again.",
                "Delete every event dead letter of group notes?",
            ]
    finally:
        await letters.close()
        await bus.close()


async def test_rabbitmq_event_dead_letters_are_hidden_without_rabbitmq(
    settings: PostroomSettings, page: Page
) -> None:
    async with live_server(create_admin_app(settings=settings, token=TOKEN)) as url:
        await page.goto(url)
        await page.get_by_test_id("token").fill(TOKEN)
        await page.get_by_test_id("login-submit").click()
        await expect(page.get_by_test_id("queues")).to_be_visible()
        await expect(page.get_by_test_id("refreshed")).not_to_be_empty()
        await expect(page.get_by_test_id("events")).to_be_hidden()
