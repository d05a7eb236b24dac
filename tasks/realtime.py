"""Real-time events: Redis pub/sub, one channel per user, for WebSocket servers to forward.

A WebSocket server subscribes to `user_channel(prefix, user_id)` for each connected user and
sends each event's JSON as it comes. Pub/sub is fire-and-forget: a user with no open socket
misses the event, and reads the message from the store when they come back. Delivery is
at least once (a retried job publishes again), so clients de-duplicate by `messageId`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from arq.connections import ArqRedis
from pydantic import Field

from tasks.payloads import Payload, Timestamp, now
from workers import Keys


def user_channel(key_prefix: str, user_id: str) -> str:
    return Keys(key_prefix).user_channel(user_id)


class MessageEvent(Payload):
    """A new message for the user."""

    type: Literal["message"] = "message"
    message_id: str
    conversation_id: str
    sender_id: str
    content: str
    created_at: datetime


class ReceiptEvent(Payload):
    """Told to the sender: their message was delivered to, read by, or failed for a recipient."""

    type: Literal["receipt"] = "receipt"
    message_id: str
    recipient_id: str
    status: str
    at: Timestamp = Field(default_factory=now)


class NotificationEvent(Payload):
    """An in-app notification, also stored in the user's inbox."""

    type: Literal["notification"] = "notification"
    notification_id: str
    title: str
    body: str
    message_id: str | None = None
    data: dict[str, str] = Field(default_factory=dict)


Event = MessageEvent | ReceiptEvent | NotificationEvent


async def publish(redis: ArqRedis, key_prefix: str, user_id: str, event: Event) -> int:
    """Publish `event` to the user's channel; returns how many subscribers received it."""
    receivers: int = await redis.publish(
        user_channel(key_prefix, user_id), event.model_dump_json(by_alias=True)
    )
    return receivers
