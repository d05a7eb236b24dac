"""The dashboard in a real headless Chromium, against the admin app on a real uvicorn server,
real Redis and a real worker: an operator logs in, finds a dead letter, retries it, sees it
complete; browses a queue's jobs by state, cancels one, follows a running one's progress;
removes a letter and retries the rest; pauses and resumes a queue; a wrong token is refused;
an API error is shown; the page works mounted under a prefix."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from playwright.async_api import Dialog, Page, expect

from config.queues import QueueName
from config.settings import PostroomSettings, load_settings
from tests.conftest import eventually, running_worker
from tests.live_server import live_server
from workers.client import PostroomClient
from workers.context import JobContext
from workers.errors import PermanentError
from workers.ops.admin import create_admin_app
from workers.registry import Task, TaskRegistry
from workers.store.job_status import JobState

TOKEN = "dashboard-test-token"
SECRET_BODY = "meet me at the old mill at midnight"


class Tasks:
    def __init__(self) -> None:
        self.registry = TaskRegistry()

        @self.registry.task(queue=QueueName.DELIVERY, name="tests.dashboard.refused_once")
        async def refused_once(ctx: JobContext, counter: str, content: str) -> str:
            """Fails permanently on its first run (dead-lettered at once), succeeds after."""
            if await ctx["redis"].incr(counter) == 1:
                raise PermanentError("recipient's server refused the message")
            await ctx["progress"](current_step=1, total_steps=1, step="delivered")
            return "delivered"

        @self.registry.task(queue=QueueName.BATCH, name="tests.dashboard.halfway")
        async def halfway(ctx: JobContext, flag: str) -> int:
            """Reports 40% and waits until the test sets `flag` in Redis."""
            await ctx["progress"](40, step="chunk 2/5")
            while not await ctx["redis"].exists(flag):  # noqa: ASYNC110 - the flag is in Redis
                await asyncio.sleep(0.02)
            return 5

        self.refused_once: Task[Any, str] = refused_once
        self.halfway: Task[Any, int] = halfway


@pytest.fixture
async def admin_url(settings: PostroomSettings) -> AsyncIterator[str]:
    async with live_server(create_admin_app(settings=settings, token=TOKEN)) as url:
        yield url


async def log_in(page: Page, url: str, token: str = TOKEN) -> None:
    await page.goto(url)
    await page.get_by_test_id("token").fill(token)
    await page.get_by_test_id("login-submit").click()


async def test_operator_retries_a_dead_lettered_job_from_the_page_and_sees_it_complete(
    settings: PostroomSettings, admin_url: str, page: Page, tmp_path: Path
) -> None:
    tasks = Tasks()
    counter = f"{settings.key_prefix}:refused-once"
    async with (
        await PostroomClient.connect(settings, tasks.registry) as client,
        running_worker(settings, tasks=tasks.registry, queues=[QueueName.DELIVERY]),
    ):
        job = await client.enqueue(tasks.refused_once.call(counter, SECRET_BODY))

        async def dead_lettered() -> bool:
            return await job.status() == JobState.DEAD_LETTERED

        await eventually(dead_lettered, "the job is dead-lettered")

        await log_in(page, admin_url)
        delivery = page.locator(f"[data-testid=queue-row][data-queue={QueueName.DELIVERY}]")
        await expect(delivery.get_by_test_id("count-dead_lettered_now")).to_have_text("1")
        await delivery.click()
        letter = page.locator(f"[data-testid=dead-letter][data-job-id='{job.job_id}']")
        await expect(letter.get_by_test_id("dead-letter-error")).to_have_text(
            "PermanentError: recipient's server refused the message"
        )
        await letter.locator("summary").click()
        traceback = letter.get_by_test_id("traceback")
        await expect(traceback).to_be_visible()
        await expect(traceback).to_contain_text("Traceback (most recent call last)")
        await expect(traceback).to_contain_text('raise PermanentError("recipient')

        await letter.locator(".head").click()
        await expect(page.get_by_test_id("job-state")).to_have_text("dead-lettered")
        payload = page.get_by_test_id("job-payload")
        await expect(payload).to_contain_text(counter)
        await expect(payload).to_contain_text('"content": "***"')
        assert SECRET_BODY not in await page.content()
        await page.screenshot(path=tmp_path / "dead-letter.png", full_page=True)

        await letter.get_by_test_id("retry").click()
        await expect(page.get_by_test_id("job-state")).to_have_text("complete")
        await expect(page.get_by_test_id("job-result")).to_have_text('"delivered"')
        await expect(letter).to_have_count(0)
        await expect(delivery.get_by_test_id("count-dead_lettered_now")).to_have_text("0")
        await page.screenshot(path=tmp_path / "complete.png", full_page=True)
        assert await job.result(timeout=10) == "delivered"


async def test_jobs_are_listed_by_state_a_deferred_one_cancelled_a_running_one_shows_progress(
    settings: PostroomSettings, admin_url: str, page: Page, tmp_path: Path
) -> None:
    tasks = Tasks()
    flag = f"{settings.key_prefix}:halfway-done"
    async with (
        await PostroomClient.connect(settings, tasks.registry) as client,
        running_worker(settings, tasks=tasks.registry, queues=[QueueName.BATCH]),
    ):
        later = await client.enqueue(tasks.halfway.call(flag), delay=3600)
        job = await client.enqueue(tasks.halfway.call(flag))

        async def reported() -> bool:
            info = await job.info()
            return info is not None and info.progress is not None

        await eventually(reported, "the job reports its progress")

        await log_in(page, admin_url)
        await page.locator(f"[data-testid=queue-row][data-queue={QueueName.BATCH}]").click()
        await page.get_by_test_id("tab-deferred").click()
        await expect(page.get_by_test_id("job-row")).to_have_count(1)
        await expect(page.get_by_test_id("job-row")).to_have_attribute("data-job-id", later.job_id)
        await page.get_by_test_id("job-row").click()
        await expect(page.get_by_test_id("job-state")).to_have_text("deferred")
        await page.get_by_test_id("job-cancel").click()
        await expect(page.get_by_test_id("job-state")).to_have_text("cancelled")
        await expect(page.get_by_test_id("job-cancel")).to_be_hidden()
        await expect(page.get_by_test_id("jobs-empty")).to_be_visible()
        assert await later.status() == JobState.CANCELLED
        await page.get_by_test_id("tab-running").click()
        row = page.locator(f"[data-testid=job-row][data-job-id='{job.job_id}']")
        await expect(page.get_by_test_id("job-row")).to_have_count(1)
        await row.click()
        await expect(page.get_by_test_id("job-state")).to_have_text("running")
        await expect(page.get_by_test_id("job-progress")).to_have_attribute("value", "40")
        await expect(page.get_by_test_id("job-progress-text")).to_have_text("40% · chunk 2/5")
        await page.screenshot(path=tmp_path / "running.png", full_page=True)

        await client.redis.set(flag, b"1")
        await expect(page.get_by_test_id("job-state")).to_have_text("complete")
        await expect(page.get_by_test_id("job-result")).to_have_text("5")
        await page.get_by_test_id("tab-complete").click()
        await expect(row).to_be_visible()


async def test_remove_deletes_a_dead_letter_and_retry_all_queues_the_others_again(
    settings: PostroomSettings, admin_url: str, page: Page
) -> None:
    tasks = Tasks()
    async with (
        await PostroomClient.connect(settings, tasks.registry) as client,
        running_worker(settings, tasks=tasks.registry, queues=[QueueName.DELIVERY]),
    ):
        jobs = [
            await client.enqueue(tasks.refused_once.call(f"{settings.key_prefix}:{n}", "hi"))
            for n in range(3)
        ]

        async def all_dead() -> bool:
            return await client.dead_letters.count(QueueName.DELIVERY) == len(jobs)

        await eventually(all_dead, "every job is dead-lettered")
        await log_in(page, admin_url)
        await page.locator(f"[data-testid=queue-row][data-queue={QueueName.DELIVERY}]").click()
        await expect(page.get_by_test_id("dead-letter")).to_have_count(len(jobs))
        await expect(page.get_by_test_id(f"tab-{JobState.DEAD_LETTERED}")).to_have_text(
            "dead-lettered (3)"
        )

        removed, *kept = jobs
        asked: list[str] = []

        async def accept(dialog: Dialog) -> None:
            asked.append(dialog.message)
            await dialog.accept()

        page.once("dialog", accept)
        letter = page.locator(f"[data-testid=dead-letter][data-job-id='{removed.job_id}']")
        await letter.get_by_test_id("remove").click()
        await expect(letter).to_have_count(0)
        assert asked == [f"Delete dead letter {removed.job_id}? The job will not run again."]
        assert await client.dead_letters.get(removed.job_id) is None

        await page.get_by_test_id("retry-all").click()
        await expect(page.get_by_test_id("jobs-empty")).to_be_visible()
        for job in kept:
            assert await job.result(timeout=30) == "delivered"
        await page.get_by_test_id("tab-complete").click()
        await expect(page.get_by_test_id("job-row")).to_have_count(len(kept))
        assert await removed.status() == JobState.FAILED  # its last result; it never ran again


async def test_pause_and_resume_buttons_pause_and_resume_the_queue(
    settings: PostroomSettings, client: PostroomClient, admin_url: str, page: Page
) -> None:
    await log_in(page, admin_url)
    row = page.locator(f"[data-testid=queue-row][data-queue={QueueName.INDEXING}]")
    await row.get_by_test_id("queue-pause").click()
    await expect(row.get_by_test_id("paused")).to_be_visible()
    assert await client.is_paused(QueueName.INDEXING)
    assert not await client.is_paused(QueueName.DELIVERY)
    await row.get_by_test_id("queue-resume").click()
    await expect(row.get_by_test_id("paused")).to_have_count(0)
    assert not await client.is_paused(QueueName.INDEXING)


async def test_a_wrong_token_is_refused_on_the_page_and_the_login_form_stays(
    admin_url: str, page: Page
) -> None:
    await log_in(page, admin_url, token="not-the-token")
    await expect(page.get_by_test_id("error-text")).to_contain_text(re.compile("token was refused"))
    await expect(page.get_by_test_id("login")).to_be_visible()
    await expect(page.get_by_test_id("dashboard")).to_be_hidden()
    assert await page.evaluate("sessionStorage.length") == 0


async def test_an_api_error_is_shown_on_the_page(tmp_path: Path, page: Page) -> None:
    with socket.socket() as probe:  # a port nothing listens on: Redis refuses to connect
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    unreachable = load_settings(redis_url=f"redis://127.0.0.1:{port}", data_dir=tmp_path)
    async with live_server(create_admin_app(settings=unreachable, token=TOKEN)) as url:
        await log_in(page, url)
        await expect(page.get_by_test_id("error-text")).to_contain_text(
            re.compile(r"GET queues: 503 cannot reach Redis")
        )
        await expect(page.get_by_test_id("dashboard")).to_be_visible()


async def test_served_local_only_without_a_token_the_page_opens_without_a_login(
    settings: PostroomSettings, page: Page
) -> None:
    async with live_server(create_admin_app(settings=settings, local_only=True)) as url:
        await page.goto(url)
        await expect(page.get_by_test_id("queue-row")).to_have_count(len(QueueName))
        await expect(page.get_by_test_id("login")).to_be_hidden()


async def test_the_page_needs_no_token_and_runs_only_its_own_scripts(admin_url: str) -> None:
    async with httpx.AsyncClient(base_url=admin_url) as http:
        page = await http.get("")
        script = await http.get("static/dashboard.js")
        other = await http.get("static/..%2Fdashboard.py")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert 'src="static/dashboard.js"' in page.text  # relative: works under a mount prefix
    assert script.status_code == 200 and "sessionStorage" in script.text
    assert other.status_code == 404


async def test_the_page_works_with_the_admin_app_mounted_under_a_prefix(
    settings: PostroomSettings, page: Page
) -> None:
    admin = create_admin_app(settings=settings, token=TOKEN)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with admin.router.lifespan_context(admin):  # closes the client admin opened
            yield

    host = FastAPI(lifespan=lifespan)
    host.mount("/admin", admin)
    async with live_server(host) as url:
        await log_in(page, f"{url}admin")  # no trailing slash: redirected to /admin/
        await expect(page.get_by_test_id("queue-row")).to_have_count(len(QueueName))
        assert page.url == f"{url}admin/"
        await expect(page.get_by_test_id("error")).to_be_hidden()
