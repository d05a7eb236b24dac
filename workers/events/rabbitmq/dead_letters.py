"""A handler group's event dead letters (`<exchange>.<group>.dead`), for the admin tools.

They stay messages in RabbitMQ, readable by any AMQP tool. Listing reads them without
taking them (basic.get, then the channel closes and the broker puts them back where they
were), so two listings at the same moment may each miss the other's page. A retry
republishes the event, confirmed, to its group's queue alone (other groups handled it
already) with a fresh try budget, and only then takes it from the dead letters; the group's
handled log still skips the handlers that succeeded before.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import BaseModel

from config.settings import PostroomSettings
from workers.errors import PostroomError
from workers.events.envelope import CONTENT_TYPE
from workers.events.rabbitmq.publisher import connect
from workers.events.rabbitmq.topology import (
    DEAD_AT_HEADER,
    ERROR_HEADER,
    REASON_HEADER,
    ROUTING_KEY_HEADER,
    TRY_HEADER,
    GroupTopology,
)
from workers.observe.masking import mask, masked_text
from workers.store.keys import Keys
from workers.store.scripts import RedisClient

if TYPE_CHECKING:
    from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

# Headers a dead letter has that a retried event must not carry back.
LETTER_HEADERS = (REASON_HEADER, ERROR_HEADER, DEAD_AT_HEADER, TRY_HEADER, "x-postroom-group")


class UnknownEventGroup(PostroomError, LookupError):
    """Raised when a group has no dead-letter queue on the broker (no consumer ever ran)."""


class EventDeadLetter(BaseModel):
    """One dead-lettered event message, as the admin API and the CLI show it."""

    id: str
    group: str
    type: str | None
    routing_key: str
    reason: str
    error: str
    tries: int
    dead_at: datetime | None
    # The message as JSON when it is JSON (its `data` masked where shown), else `body`:
    # its text, or `base64:...` when it is not UTF-8.
    event: Any = None
    body: str | None = None

    def masked(self) -> EventDeadLetter:
        """As shown: its event masked, and what that hides out of its error too."""
        error = masked_text(self.error, self.event)
        return self.model_copy(update={"event": mask(self.event), "error": error})


def _letter(group: str, message: AbstractIncomingMessage) -> EventDeadLetter:
    headers = message.headers or {}
    dead_at = headers.get(DEAD_AT_HEADER)
    event: Any = None
    body: str | None = None
    try:
        event = orjson.loads(message.body)
    except orjson.JSONDecodeError:
        try:
            body = message.body.decode()
        except UnicodeDecodeError:
            body = "base64:" + base64.b64encode(message.body).decode()
    kind = event.get("type") if isinstance(event, dict) else None
    tries = headers.get(TRY_HEADER)
    return EventDeadLetter(
        id=message.message_id or "",
        group=group,
        type=kind if isinstance(kind, str) else message.type,
        routing_key=str(headers.get(ROUTING_KEY_HEADER) or message.routing_key or ""),
        reason=str(headers.get(REASON_HEADER) or "unknown"),
        error=str(headers.get(ERROR_HEADER) or ""),
        tries=tries if isinstance(tries, int) else 1,
        dead_at=datetime.fromtimestamp(dead_at / 1000, UTC) if isinstance(dead_at, int) else None,
        event=event,
        body=body,
    )


class EventDeadLetters:
    """Lists, retries, removes and purges the dead letters of the groups on one broker."""

    def __init__(self, settings: PostroomSettings, redis: RedisClient) -> None:
        if not settings.rabbitmq_url:
            raise UnknownEventGroup("no RabbitMQ is configured: set RABBITMQ_URL")
        self.url = settings.rabbitmq_url
        self.exchange = settings.event_exchange
        self.timeout = settings.event_publish_timeout
        self.keys = Keys(settings.key_prefix)
        self.redis = redis
        self._connection: AbstractConnection | None = None

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()

    async def groups(self) -> list[str]:
        """The groups whose consumers ever ran against this deployment's Redis."""
        members = await self.redis.smembers(self.keys.event_groups())  # type: ignore[misc]
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)

    async def _channel(self) -> AbstractChannel:
        if self._connection is None or self._connection.is_closed:
            self._connection = await connect(self.url, self.timeout)
        return await self._connection.channel(publisher_confirms=True)

    async def _dead_queue(self, channel: AbstractChannel, group: str) -> Any:
        from aio_pika.exceptions import ChannelNotFoundEntity

        names = GroupTopology(self.exchange, group)
        try:
            return await channel.declare_queue(names.dead, passive=True)
        except ChannelNotFoundEntity:
            raise UnknownEventGroup(
                f"event group {group!r} has no dead-letter queue {names.dead!r} on the broker"
            ) from None

    async def count(self, group: str) -> int:
        channel = await self._channel()
        try:
            queue = await self._dead_queue(channel, group)
            return int(queue.declaration_result.message_count or 0)
        finally:
            if not channel.is_closed:
                await channel.close()

    async def _each(
        self, group: str, visit: Callable[[AbstractChannel, AbstractIncomingMessage], Any]
    ) -> None:
        """Take every dead letter of `group` in turn (at most as many as it holds now) and
        give it to `visit`; what `visit` does not ack goes back when the channel closes."""
        channel = await self._channel()
        try:
            queue = await self._dead_queue(channel, group)
            for _ in range(int(queue.declaration_result.message_count or 0)):
                message = await queue.get(no_ack=False, fail=False, timeout=self.timeout)
                if message is None:
                    break
                if await visit(channel, message) is False:
                    break
        finally:
            if not channel.is_closed:
                await channel.close()

    async def list(self, group: str, offset: int = 0, limit: int = 50) -> list[EventDeadLetter]:
        """Oldest first (the queue's order), `limit` from `offset`."""
        letters: list[EventDeadLetter] = []
        seen = 0

        async def collect(channel: AbstractChannel, message: AbstractIncomingMessage) -> bool:
            nonlocal seen
            seen += 1
            if seen > offset:
                letters.append(_letter(group, message))
            return len(letters) < limit

        if limit > 0:
            await self._each(group, collect)
        return letters

    async def get(self, group: str, letter_id: str) -> EventDeadLetter | None:
        found: list[EventDeadLetter] = []

        async def find(channel: AbstractChannel, message: AbstractIncomingMessage) -> bool:
            if message.message_id == letter_id:
                found.append(_letter(group, message))
                return False
            return True

        await self._each(group, find)
        return found[0] if found else None

    async def retry(self, group: str, ids: Collection[str] | None = None) -> int:
        """Send these dead letters (None: all) back to their group's queue; how many went."""
        from aio_pika import DeliveryMode, Message

        names = GroupTopology(self.exchange, group)
        retried = 0

        async def send_back(channel: AbstractChannel, message: AbstractIncomingMessage) -> bool:
            nonlocal retried
            if ids is not None and message.message_id not in ids:
                return True
            headers = {
                name: value
                for name, value in (message.headers or {}).items()
                if name not in LETTER_HEADERS
            }
            copy = Message(
                message.body,
                headers=headers,
                content_type=message.content_type or CONTENT_TYPE,
                delivery_mode=DeliveryMode.PERSISTENT,
                message_id=message.message_id,
                type=message.type,
                timestamp=message.timestamp,
            )
            await channel.default_exchange.publish(copy, routing_key=names.queue)
            await message.ack()
            retried += 1
            return ids is None or retried < len(ids)

        await self._each(group, send_back)
        return retried

    async def remove(self, group: str, ids: Collection[str]) -> int:
        removed = 0

        async def drop(channel: AbstractChannel, message: AbstractIncomingMessage) -> bool:
            nonlocal removed
            if message.message_id in ids:
                await message.ack()
                removed += 1
            return removed < len(ids)

        await self._each(group, drop)
        return removed

    async def purge(self, group: str) -> int:
        channel = await self._channel()
        try:
            queue = await self._dead_queue(channel, group)
            result = await queue.purge()
            return int(getattr(result, "message_count", 0) or 0)
        finally:
            if not channel.is_closed:
                await channel.close()
