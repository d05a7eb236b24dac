"""Choosing the RabbitMQ transport: POSTROOM_EVENT_TRANSPORT beside USE_QUEUE_EVENT_BUS, and
the errors naming the variable when the choice cannot work."""

from __future__ import annotations

import subprocess
import sys

import pytest

from config.errors import ConfigError
from config.settings import PostroomSettings, load_settings
from tests.conftest import ROOT, worker_env
from workers.client import PostroomClient
from workers.events import InMemoryEventBus, QueuedEventBus, RabbitMQEventBus, event_bus


def test_rabbitmq_transport_is_chosen_by_postroom_event_transport(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POSTROOM_EVENT_TRANSPORT", "rabbitmq")
    monkeypatch.setenv("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5999/")
    monkeypatch.setenv("POSTROOM_EVENT_GROUP", "billing")
    settings = load_settings()
    assert settings.event_bus_transport == "rabbitmq"
    assert settings.event_group == "billing"
    bus = event_bus(settings)
    assert isinstance(bus, RabbitMQEventBus)
    assert (bus.url, bus.exchange_name) == (settings.rabbitmq_url, "postroom.events")


async def test_rabbitmq_transport_keeps_use_queue_event_bus_working(
    monkeypatch: pytest.MonkeyPatch, client: PostroomClient
) -> None:
    assert load_settings().event_bus_transport == "memory"
    assert isinstance(event_bus(load_settings()), InMemoryEventBus)
    monkeypatch.setenv("USE_QUEUE_EVENT_BUS", "true")
    assert load_settings().event_bus_transport == "queued"
    assert isinstance(event_bus(load_settings(), client), QueuedEventBus)
    monkeypatch.setenv("POSTROOM_EVENT_TRANSPORT", "queued")  # the same choice twice is fine
    assert load_settings().event_bus_transport == "queued"
    monkeypatch.setenv("POSTROOM_EVENT_TRANSPORT", "rabbitmq")
    with pytest.raises(ConfigError, match=r"POSTROOM_EVENT_TRANSPORT.*USE_QUEUE_EVENT_BUS"):
        load_settings()


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("POSTROOM_EVENT_TRANSPORT", "kafka", "POSTROOM_EVENT_TRANSPORT"),
        ("RABBITMQ_URL", "http://broker:5672/", "RABBITMQ_URL"),
        ("POSTROOM_EVENT_GROUP", "no spaces", "POSTROOM_EVENT_GROUP"),
        ("POSTROOM_EVENT_PREFETCH", "0", "POSTROOM_EVENT_PREFETCH"),
    ],
)
def test_rabbitmq_bad_settings_name_their_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=says):
        load_settings()


def test_rabbitmq_transport_without_a_url_is_refused_naming_it() -> None:
    settings = load_settings(event_transport="rabbitmq")
    with pytest.raises(ConfigError, match="RABBITMQ_URL"):
        event_bus(settings)


def test_rabbitmq_consumer_command_refuses_a_bus_without_consumers(
    settings: PostroomSettings,
) -> None:
    command = [sys.executable, "-m", "workers", "events"]
    done = subprocess.run(
        command, cwd=ROOT, env=worker_env(settings), capture_output=True, text=True, check=False
    )
    assert done.returncode == 2 and "--transport rabbitmq" in done.stderr
    env = worker_env(settings, POSTROOM_EVENT_TRANSPORT="rabbitmq")
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "RABBITMQ_URL" in done.stderr
