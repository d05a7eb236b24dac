"""Event classes, handler registration, and the setting that picks the bus."""

from __future__ import annotations

from typing import Literal

import pytest

from config.errors import ConfigError
from config.queues import QueueName
from config.settings import PostroomSettings, load_settings
from tests.events.handlers import Greeted
from workers.client import PostroomClient
from workers.events import (
    DomainEvent,
    EventDefinitionError,
    EventHandlers,
    InMemoryEventBus,
    QueuedEventBus,
    event_bus,
)


def test_event_has_an_id_a_type_a_time_and_a_version_and_is_camel_case_on_the_wire() -> None:
    event = Greeted(name="ada", failures=2)
    wire = event.to_json()
    assert set(wire) == {"id", "type", "occurredAt", "version", "name", "failures", "refuse"}
    assert wire["type"] == "tests.greeted" and wire["version"] == 1
    assert Greeted.model_validate(wire) == event
    assert Greeted(name="ada").id != event.id
    assert Greeted.event_type == "tests.greeted"


def test_event_class_without_a_type_is_refused_at_definition() -> None:
    with pytest.raises(EventDefinitionError, match="Nameless must give `type` a default"):

        class Nameless(DomainEvent):
            pass


def test_two_classes_of_one_event_type_are_refused() -> None:
    registry = EventHandlers()
    registry.register(Greeted)

    class Impostor(DomainEvent):
        type: Literal["tests.greeted"] = "tests.greeted"

    with pytest.raises(EventDefinitionError, match=r"already declared by tests\.events\.handlers"):
        registry.register(Impostor)


def test_a_handler_registered_twice_for_one_type_is_refused() -> None:
    registry = EventHandlers()

    async def handle(event: Greeted) -> None:
        pass

    registry.on(Greeted)(handle)
    with pytest.raises(EventDefinitionError, match=r"already registered for 'tests\.greeted'"):
        registry.on(Greeted)(handle)


async def test_use_queue_event_bus_picks_the_queued_bus_on_the_event_queue(
    monkeypatch: pytest.MonkeyPatch, settings: PostroomSettings, client: PostroomClient
) -> None:
    assert isinstance(event_bus(load_settings()), InMemoryEventBus)
    monkeypatch.setenv("USE_QUEUE_EVENT_BUS", "true")
    monkeypatch.setenv("POSTROOM_EVENT_QUEUE", "message-delivery")
    queued = event_bus(load_settings(), client)
    assert isinstance(queued, QueuedEventBus) and queued.queue is QueueName.DELIVERY
    with pytest.raises(ConfigError, match="needs a client"):
        event_bus(load_settings())


def test_bad_use_queue_event_bus_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USE_QUEUE_EVENT_BUS", "perhaps")
    with pytest.raises(ConfigError, match="USE_QUEUE_EVENT_BUS: Input should be a valid boolean"):
        load_settings()


def test_handler_of_the_wrong_shape_is_refused_at_registration() -> None:
    registry = EventHandlers()

    async def three(event: Greeted, context: object, extra: object) -> None:
        pass

    def sync(event: Greeted) -> None:
        pass

    with pytest.raises(EventDefinitionError, match=r"must take \(event\) or \(event, context\)"):
        registry.on(Greeted)(three)
    with pytest.raises(EventDefinitionError, match="must be an async def"):
        registry.on(Greeted)(sync)  # type: ignore[type-var]
