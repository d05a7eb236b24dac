"""The client validates before writing, keeps job ids idempotent and schedules in Redis."""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from config.queues import QueueName
from config.settings import PostroomSettings
from tests.conftest import running_worker
from tests.sample_tasks import Greeting, echo
from workers.client import PostroomClient
from workers.errors import PayloadValidationError
from workers.store.job_status import JobState


def _unique_id() -> str:
    # arq's job keys are not under the key prefix, so ids must be unique across tests.
    return f"test-job-{uuid.uuid4().hex}"


async def _queued(client: PostroomClient) -> int:
    return int(await client.redis.zcard(client.keys.of(QueueName.DELIVERY).queue))


async def test_invalid_payload_by_name_names_task_and_fields_and_writes_nothing(
    client: PostroomClient,
) -> None:
    with pytest.raises(PayloadValidationError) as caught:
        await client.enqueue_payload("tests.echo", {"greeting": {"messageId": ""}})
    error = caught.value
    assert error.task == "tests.echo"
    assert set(error.fields) == {"greeting.messageId", "greeting.text"}
    assert "'tests.echo'" in str(error)
    assert "greeting.messageId" in str(error)
    assert "greeting.text" in str(error)
    assert await _queued(client) == 0


async def test_invalid_model_instance_names_task_and_fields_and_writes_nothing(
    client: PostroomClient,
) -> None:
    bad = Greeting.model_construct(message_id="")  # type: ignore[call-arg]
    with pytest.raises(PayloadValidationError) as caught:
        await client.enqueue(echo.call(bad))
    assert caught.value.task == "tests.echo"
    assert "greeting.messageId" in caught.value.fields
    assert "greeting.text" in caught.value.fields
    assert await _queued(client) == 0


def test_wrong_arguments_to_call_are_a_payload_error_naming_the_task() -> None:
    with pytest.raises(PayloadValidationError, match=re.escape("'tests.echo'")):
        echo.call()  # type: ignore[call-arg]


def test_a_call_by_keyword_missing_or_misnaming_an_argument_names_the_fields() -> None:
    """Keyword calls skip binding the signature: the arguments model names both fields."""
    with pytest.raises(PayloadValidationError) as caught:
        echo.call(greting=Greeting(messageId="m", text="t"))  # type: ignore[call-arg]
    assert set(caught.value.fields) == {"greeting", "greting"}
    assert caught.value.task == "tests.echo"


async def test_taken_job_id_returns_the_existing_job_not_created(
    settings: PostroomSettings, client: PostroomClient
) -> None:
    job_id = _unique_id()
    first = await client.enqueue(echo.call(Greeting(messageId="m1", text="first")), job_id=job_id)
    again = await client.enqueue(echo.call(Greeting(messageId="m2", text="again")), job_id=job_id)
    assert first.created
    assert again is not None
    assert not again.created
    assert again.job_id == job_id
    assert await _queued(client) == 1

    async with running_worker(settings, queues=[QueueName.DELIVERY]):
        result = await again.result(timeout=30)
    assert result["text"] == "first"

    after = await client.enqueue(echo.call(Greeting(messageId="m3", text="later")), job_id=job_id)
    assert after is not None
    assert not after.created
    assert await _queued(client) == 0
    assert (await after.result(timeout=5))["text"] == "first"


async def test_enqueue_many_writes_every_job_at_once_and_all_run(
    settings: PostroomSettings, client: PostroomClient
) -> None:
    texts = [f"bulk-{n}" for n in range(5)]
    handles = await client.enqueue_many(
        echo.call(Greeting(messageId=f"m{n}", text=text)) for n, text in enumerate(texts)
    )
    assert [h.created for h in handles] == [True] * len(texts)
    assert len({h.job_id for h in handles}) == len(texts)
    assert await _queued(client) == len(texts)

    async with running_worker(settings, queues=[QueueName.DELIVERY]):
        results = [await h.result(timeout=30) for h in handles]
    assert [r["text"] for r in results] == texts


async def test_enqueue_many_of_nothing_returns_nothing(client: PostroomClient) -> None:
    assert await client.enqueue_many([]) == []


async def test_delay_and_at_schedule_the_job_in_the_future_and_it_waits(
    settings: PostroomSettings, client: PostroomClient
) -> None:
    queue_key = client.keys.of(QueueName.DELIVERY).queue
    before_ms = int(time.time() * 1000)
    delayed = await client.enqueue(echo.call(Greeting(messageId="d", text="d")), delay=120)
    by_timedelta = await client.enqueue(
        echo.call(Greeting(messageId="t", text="t")), delay=timedelta(minutes=2)
    )
    at = datetime.now(UTC) + timedelta(hours=1)
    scheduled = await client.enqueue(echo.call(Greeting(messageId="a", text="a")), at=at)

    assert await client.redis.zscore(queue_key, delayed.job_id) >= before_ms + 120_000
    assert await client.redis.zscore(queue_key, by_timedelta.job_id) >= before_ms + 120_000
    assert await client.redis.zscore(queue_key, scheduled.job_id) == int(at.timestamp() * 1000)

    async with running_worker(settings, queues=[QueueName.DELIVERY]):
        # Once a job enqueued after them has run, the worker has polled past the future ones.
        now = await client.enqueue(echo.call(Greeting(messageId="n", text="now")))
        assert (await now.result(timeout=30))["text"] == "now"
        for handle in (delayed, by_timedelta, scheduled):
            assert await handle.status() == JobState.DEFERRED
            assert (
                await client.redis.get(client.keys.of(QueueName.DELIVERY).result(handle.job_id))
                is None
            )
