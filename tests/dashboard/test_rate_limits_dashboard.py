"""The dashboard's rate-limit table: each limit, its current rate and the jobs it holds back."""

from __future__ import annotations

from playwright.async_api import Page, expect

from config.settings import PostroomSettings
from tests.admin.test_rate_limits_api import limited_settings, run_one_of_three
from tests.dashboard.test_dashboard import TOKEN, log_in
from tests.live_server import live_server
from workers.client import PostroomClient
from workers.ops.admin import create_admin_app


async def test_rate_limits_table_shows_the_throttled_queue(
    settings: PostroomSettings, client: PostroomClient, page: Page
) -> None:
    await run_one_of_three(settings, client)
    app = create_admin_app(settings=limited_settings(settings), token=TOKEN)
    async with live_server(app) as url:
        await log_in(page, url)
        await expect(page.get_by_test_id("rate-limits")).to_be_visible()
        row = page.locator("[data-testid=rate-limit-row][data-limit='queue:message-notification']")
        await expect(row.get_by_test_id("rate-limit-limit")).to_have_text("1/m burst=1")
        await expect(row.get_by_test_id("rate-limit-at-limit")).to_have_text("yes")
        await expect(row.get_by_test_id("rate-limit-waiting")).to_have_text("2")
        sms = page.locator("[data-testid=rate-limit-row][data-limit=sms]")
        await expect(sms.get_by_test_id("rate-limit-limit")).to_have_text("10/s burst=1")
        queue_row = page.locator("[data-testid=queue-row][data-queue=message-notification]")
        await expect(queue_row.get_by_test_id("count-deferred")).to_have_text("0")
