"""The in-memory event bus: handlers run in the publishing process, each once per event."""

from __future__ import annotations

import pytest

from tests.events.handlers import Followed, Greeted, Unheard, flaky_greeting, ran
from workers.client import PostroomClient
from workers.events import (
    EventHandlersFailed,
    EventHandlersRejected,
    InMemoryEventBus,
    handlers,
)
from workers.events.handlers import handler_name


async def test_handlers_run_in_process_before_publish_returns() -> None:
    bus = InMemoryEventBus()
    event = Greeted(name="ada")
    assert await bus.publish(event) is True
    assert ran(event) == {"record": 1, "flaky": 1}


async def test_publishing_the_same_event_twice_runs_its_handlers_once() -> None:
    bus = InMemoryEventBus()
    event = Greeted(name="ada")
    assert await bus.publish(event) is True
    assert await bus.publish(Greeted.model_validate(event.to_json())) is False
    assert ran(event) == {"record": 1, "flaky": 1}


async def test_publish_all_runs_each_event_in_order_and_says_which_were_new() -> None:
    bus = InMemoryEventBus()
    first, second = Greeted(name="ada"), Greeted(name="grace")
    assert await bus.publish_all([first, second, first]) == [True, True, False]
    assert ran(first) == ran(second) == {"record": 1, "flaky": 1}


async def test_failing_handler_raises_after_the_others_ran_and_only_it_runs_again() -> None:
    bus = InMemoryEventBus()
    event = Greeted(name="ada", failures=1)
    with pytest.raises(EventHandlersFailed) as raised:
        await bus.publish(event)
    assert list(raised.value.failures) == [handler_name(flaky_greeting)]
    assert "flaky failure 1 of 1" in str(raised.value)
    assert ran(event) == {"record": 1, "flaky": 1}
    assert await bus.publish(event) is True
    assert ran(event) == {"record": 1, "flaky": 2}


async def test_permanent_failures_raise_as_rejected() -> None:
    with pytest.raises(EventHandlersRejected, match="mallory is not welcome"):
        await InMemoryEventBus().publish(Greeted(name="mallory", refuse=True))


async def test_event_nobody_handles_is_published_without_error() -> None:
    assert await InMemoryEventBus().publish(Unheard()) is True


async def test_bus_forgets_the_oldest_events_past_its_memory() -> None:
    bus = InMemoryEventBus(handlers, remember=2)
    events = [Greeted(name=name) for name in ("a", "b", "c")]
    await bus.publish_all(events)
    # `a` was forgotten: published again, it is handled again (the queued bus keeps a
    # longer memory in Redis).
    assert await bus.publish_all(events[::-1]) == [False, False, True]


async def test_handler_taking_a_context_enqueues_follow_up_jobs_with_the_bus_client(
    client: PostroomClient,
) -> None:
    event = Followed(text="next")
    await InMemoryEventBus(client=client).publish(event)
    assert ran(event) == {"follow-up": 1}
    info = await client.job_info(f"follow-up:{event.id}")
    assert info is not None and info.task == "tests.echo"
