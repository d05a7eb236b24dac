"""send-notification under rate limits: a provider's 429 with Retry-After, a channel's limit.

Against a local HTTP server that stamps each request as it arrives: waits are checked by
their lower bounds (the provider asked for a second: the next request cannot come sooner; a
limit's last slot is so far after the first), never by how fast the machine is.
"""

from __future__ import annotations

import time

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from config.queues import QueueName
from config.rate_limits import RateLimit, parse_rate_limit
from config.settings import PostroomSettings
from tasks.message_notification import send_notification
from tests.conftest import eventually, running_worker
from tests.tasks.conftest import with_settings
from tests.tasks.test_message_notification import notification
from workers.client import PostroomClient
from workers.store.job_status import JobState


class Provider:
    """An SMS provider answering each request with the next of `answers` (then the last),
    noting when each request came."""

    def __init__(self, *answers: tuple[int, dict[str, str]]) -> None:
        self.answers = list(answers)
        self.arrivals: list[float] = []

    def __call__(self, request: Request) -> Response:
        self.arrivals.append(time.monotonic())
        status, headers = self.answers[min(len(self.arrivals), len(self.answers)) - 1]
        return Response("{}", status=status, headers=headers, content_type="application/json")


async def test_rate_limit_429_with_retry_after_defers_once(
    task_settings: PostroomSettings, task_client: PostroomClient, httpserver: HTTPServer
) -> None:
    provider = Provider((429, {"Retry-After": "1"}), (200, {}))
    httpserver.expect_request("/sms", method="POST").respond_with_handler(provider)
    async with running_worker(task_settings):
        handle = await task_client.enqueue(send_notification.call(notification("sms", to="+1")))
        await handle.result(timeout=30)
        stats = await task_client.queue_stats(QueueName.NOTIFICATION)
    info = await handle.info()
    assert info is not None and info.tries == 1  # the 429 spent no try
    assert (stats.deferred, stats.retried, stats.failed, stats.completed) == (1, 0, 0, 1)
    assert len(provider.arrivals) == 2
    assert provider.arrivals[1] - provider.arrivals[0] >= 0.95  # it waited the Retry-After


async def test_rate_limit_429_forever_ends_in_the_dead_letters(
    task_settings: PostroomSettings, task_client: PostroomClient, httpserver: HTTPServer
) -> None:
    provider = Provider((429, {"Retry-After": "0"}))
    httpserver.expect_request("/sms", method="POST").respond_with_handler(provider)
    async with running_worker(with_settings(task_settings, max_rate_limited=2)):
        handle = await task_client.enqueue(send_notification.call(notification("sms", to="+1")))

        async def dead_lettered() -> bool:
            info = await handle.info()
            return info is not None and info.state is JobState.DEAD_LETTERED

        await eventually(dead_lettered, "the job is dead-lettered")
    letter = await task_client.dead_letters.get(handle.job_id)
    assert letter is not None and letter.reason == "rate-limited"
    assert letter.tries == 1  # deferred twice, never retried
    assert "deferred 2 times" in letter.errors[-1].message
    assert len(provider.arrivals) == 3


async def test_rate_limit_sms_channel_holds_across_the_queue(
    task_settings: PostroomSettings, task_client: PostroomClient, httpserver: HTTPServer
) -> None:
    provider = Provider((200, {}))
    httpserver.expect_request("/sms", method="POST").respond_with_handler(provider)
    ten = RateLimit.model_validate(parse_rate_limit("10/s burst=1"))
    limited = with_settings(task_settings, rate_limits={"sms": ten})
    async with running_worker(limited):
        enqueued = time.monotonic()  # no slot of the fresh bucket is earlier
        jobs = await task_client.enqueue_many(
            [send_notification.call(notification("sms", to=f"+1{i}")) for i in range(12)]
        )
        for job in jobs:
            await job.result(timeout=30)
        stats = await task_client.queue_stats(QueueName.NOTIFICATION)
    assert (stats.completed, stats.retried, stats.failed) == (12, 0, 0)
    infos = [await job.info() for job in jobs]
    assert [info.tries if info else None for info in infos] == [1] * 12
    assert len(provider.arrivals) == 12
    # The twelfth send's slot is 11 x 100 ms after the first, which is not before the
    # enqueue: 1.1 s at least, whatever the machine (less the clocks' rounding).
    assert provider.arrivals[-1] - enqueued >= 1.05
