"""The events the RabbitMQ tests publish, and where their handlers record what they did: a
Redis list per group and handler (`<prefix>:test:<group>:<what>`), read by the test."""

from __future__ import annotations

import os
from typing import Literal

from workers.events import DomainEvent, EventContext


class Shipped(DomainEvent):
    type: Literal["tests.rabbitmq.shipped"] = "tests.rabbitmq.shipped"
    order_id: str


class Audited(DomainEvent):
    """Only the beta group handles it."""

    type: Literal["tests.rabbitmq.audited"] = "tests.rabbitmq.audited"
    order_id: str


class Stuck(DomainEvent):
    """Its second handler hangs on its first run, until the consumer is killed."""

    type: Literal["tests.rabbitmq.stuck"] = "tests.rabbitmq.stuck"


def record_key(prefix: str, group: str, what: str) -> str:
    return f"{prefix}:test:{group}:{what}"


def group() -> str:
    return os.environ.get("POSTROOM_EVENT_GROUP", "default")


async def record(context: EventContext, what: str, event_id: str) -> int:
    """Append `event_id` to the list of `what`; returns how many entries it now has."""
    assert context.client is not None
    key = record_key(context.client.settings.key_prefix, group(), what)
    return int(await context.client.redis.rpush(key, event_id))
