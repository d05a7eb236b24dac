"""The queued event bus through a real worker: a job per event, its id the event's id."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from config.queues import QueueName
from config.settings import PostroomSettings
from tests.conftest import eventually, running_worker
from tests.events.handlers import Followed, Greeted, Unheard, flaky_greeting, ran
from tests.sample_tasks import echo
from tests.tasks.conftest import fast_retries
from workers.client import PostroomClient
from workers.events import QueuedEventBus, handler_name
from workers.events.queued import DISPATCH_TASKS, EventHandled
from workers.store.dead_letter import DeadLetter
from workers.store.job_status import JobState

QUEUE = QueueName.NOTIFICATION


@pytest.fixture
def event_settings(settings: PostroomSettings) -> PostroomSettings:
    """Three tries on the events' queue, 50 ms apart."""
    queues = fast_retries(message_notification={"max_tries": 3})
    return settings.model_copy(update={"queues": queues})


@pytest.fixture
async def event_client(event_settings: PostroomSettings) -> AsyncIterator[PostroomClient]:
    async with await PostroomClient.connect(event_settings) as client:
        yield client


async def handled(client: PostroomClient, event: Greeted) -> EventHandled:
    return await client.job(event.id, DISPATCH_TASKS[QUEUE]).result(timeout=60)


async def dead_letter_after_worker_runs(
    settings: PostroomSettings, client: PostroomClient, event_id: str
) -> DeadLetter | None:
    """Run a worker until the event's job is dead-lettered; its dead letter."""
    async with running_worker(settings):

        async def dead() -> bool:
            return await client.dead_letters.get(event_id) is not None

        await eventually(dead, "the event was dead-lettered")
    return await client.dead_letters.get(event_id)


async def test_handlers_run_in_a_worker_in_a_job_whose_id_is_the_event_id(
    event_settings: PostroomSettings, event_client: PostroomClient
) -> None:
    event = Greeted(name="ada")
    bus = QueuedEventBus(event_client, queue=QUEUE)
    assert await bus.publish(event) is True
    info = await event_client.job_info(event.id)
    assert info is not None and info.queue is QUEUE and info.state is JobState.QUEUED
    assert ran(event) == {}  # nothing runs in the publishing process
    async with running_worker(event_settings):
        result = await handled(event_client, event)
    assert result.ran == [
        "tests.events.handlers.record_greeting",
        "tests.events.handlers.flaky_greeting",
    ]
    assert result.skipped == []
    assert ran(event) == {"record": 1, "flaky": 1}


async def test_publishing_the_same_event_twice_runs_its_handlers_once(
    event_settings: PostroomSettings, event_client: PostroomClient
) -> None:
    event = Greeted(name="ada")
    bus = QueuedEventBus(event_client, queue=QUEUE)
    assert await bus.publish_all([event, Greeted(name="grace")]) == [True, True]
    assert await bus.publish(event) is False  # still queued
    async with running_worker(event_settings):
        await handled(event_client, event)
        assert await bus.publish(Greeted.model_validate(event.to_json())) is False  # done
    assert ran(event) == {"record": 1, "flaky": 1}


async def test_failing_handler_retries_and_only_it_runs_again(
    event_settings: PostroomSettings, event_client: PostroomClient
) -> None:
    event = Greeted(name="ada", failures=2)
    await QueuedEventBus(event_client, queue=QUEUE).publish(event)
    async with running_worker(event_settings):
        result = await handled(event_client, event)
    assert result.ran == [handler_name(flaky_greeting)]
    assert result.skipped == ["tests.events.handlers.record_greeting"]
    assert ran(event) == {"record": 1, "flaky": 3}
    info = await event_client.job_info(event.id)
    assert info is not None and info.tries == 3


async def test_handler_failing_every_try_dead_letters_the_event_naming_the_handler(
    event_settings: PostroomSettings, event_client: PostroomClient
) -> None:
    event = Greeted(name="ada", failures=99)
    await QueuedEventBus(event_client, queue=QUEUE).publish(event)
    letter = await dead_letter_after_worker_runs(event_settings, event_client, event.id)
    assert letter is not None
    assert letter.reason == "max-tries" and letter.tries == 3
    assert letter.payload == {"event": event.to_json()}
    assert [error.type for error in letter.errors] == ["EventHandlersFailed"] * 3
    assert f"{handler_name(flaky_greeting)}: RuntimeError: flaky failure 3 of 99" in (
        letter.errors[-1].message
    )
    assert "flaky failure 3 of 99" in letter.errors[-1].traceback
    assert ran(event) == {"record": 1, "flaky": 3}


async def test_permanent_handler_failure_dead_letters_at_once(
    event_settings: PostroomSettings, event_client: PostroomClient
) -> None:
    event = Greeted(name="mallory", refuse=True)
    await QueuedEventBus(event_client, queue=QUEUE).publish(event)
    letter = await dead_letter_after_worker_runs(event_settings, event_client, event.id)
    assert letter is not None and letter.reason == "permanent" and letter.tries == 1
    assert "mallory is not welcome" in letter.errors[-1].message


async def test_event_of_a_type_the_worker_does_not_know_is_dead_lettered_with_the_reason(
    event_settings: PostroomSettings, event_client: PostroomClient
) -> None:
    event = Unheard()
    assert await QueuedEventBus(event_client, queue=QUEUE).publish(event) is True
    letter = await dead_letter_after_worker_runs(event_settings, event_client, event.id)
    assert letter is not None and letter.reason == "permanent" and letter.tries == 1
    assert letter.errors[-1].type == "UnknownEventError"
    assert "no event class is registered for type 'tests.unheard'" in letter.errors[-1].message


async def test_events_go_to_the_queue_the_bus_is_given(
    event_settings: PostroomSettings, event_client: PostroomClient
) -> None:
    event = Greeted(name="ada")
    await QueuedEventBus(event_client, queue=QueueName.DELIVERY).publish(event)
    info = await event_client.job_info(event.id)
    assert info is not None and info.queue is QueueName.DELIVERY
    assert info.task == "postroom.events.message-delivery"


async def test_handler_taking_a_context_gets_the_job_and_a_client_in_the_worker(
    event_settings: PostroomSettings, event_client: PostroomClient
) -> None:
    event = Followed(text="next")
    await QueuedEventBus(event_client, queue=QUEUE).publish(event)
    async with running_worker(event_settings):
        follow_up = event_client.job(f"follow-up:{event.id}", echo)

        async def enqueued() -> bool:
            return await follow_up.info() is not None

        await eventually(enqueued, "the handler enqueued its follow-up job")
        assert (await follow_up.result(timeout=60))["text"] == "next"
    assert ran(event) == {"follow-up": 1, "in a job": 1}
