"""What the Redis security tests share: a job run end to end, and the start-up errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

import tests.security_tasks  # noqa: F401 - registers the tasks enqueued here
from config.errors import ConfigError
from config.queues import QueueName
from config.settings import PostroomSettings
from tests.conftest import ROOT, eventually, running_worker
from tests.security_tasks import Letter, deliver, flaky
from workers.client import PostroomClient
from workers.connection.redis_server import resolve_redis
from workers.store.job_status import JobState


async def run_jobs_end_to_end(settings: PostroomSettings) -> None:
    """Enqueue → run → result, and a failing job → retries → dead letter, through a real
    worker and the client; then the reading paths an operator uses."""
    async with await PostroomClient.connect(settings) as client, running_worker(settings):
        done = await client.enqueue(deliver.call(Letter(messageId="m-ok", content="hello")))
        assert await done.result(timeout=30) == {"messageId": "m-ok", "queue": "message-delivery"}
        failing = await client.enqueue(flaky.call(Letter(messageId="m-bad", content="hi")))

        async def dead_lettered() -> bool:
            info = await client.job_info(failing.job_id)
            return info is not None and info.state is JobState.DEAD_LETTERED

        await eventually(dead_lettered, "the failing job is dead-lettered")
        letter = await client.dead_letters.get(failing.job_id)
        assert letter is not None and letter.tries == 2
        assert "provider answered 503" in letter.errors[-1].message
        stats = await client.queue_stats(QueueName.DELIVERY)
        assert stats.completed == 1 and stats.dead_lettered_now == 1
        assert await client.dead_letters.retry(failing.job_id)
        await eventually(dead_lettered, "the retried job is dead-lettered again")
        assert (await client.live_workers([QueueName.DELIVERY]))[QueueName.DELIVERY] >= 1


def refusal(settings: PostroomSettings) -> str:
    """The start-up error of a worker with `settings` (resolve_redis is its first step)."""
    with pytest.raises(ConfigError) as caught:
        resolve_redis(settings)
    return str(caught.value)


async def client_refusal(settings: PostroomSettings) -> str:
    """The client's error: at once, without the connection retries an outage gets."""
    with pytest.raises(ConfigError) as caught:
        await PostroomClient.connect(settings)
    return str(caught.value)


def run_postroom(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m workers ARGS` as an operator runs it, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "workers", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
