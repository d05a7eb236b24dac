"""Jobs enqueued through the client run in a real worker."""

from __future__ import annotations

import pytest

from config.queues import QueueName
from config.settings import PostroomSettings
from tests.conftest import running_worker
from tests.sample_tasks import Greeting, echo, occupy
from workers.client import PostroomClient
from workers.keys import Keys


async def test_enqueued_job_runs_in_worker_and_result_is_readable(
    settings: PostroomSettings, client: PostroomClient
) -> None:
    async with running_worker(settings):
        job = await client.enqueue(echo.call(Greeting(messageId="m1", text="hello")))
        assert job.created
        result = await job.result(timeout=30)
    assert result == {"text": "hello", "queue": "message-delivery", "task": "tests.echo"}
