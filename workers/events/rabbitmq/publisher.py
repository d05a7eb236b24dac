"""Publishing events to RabbitMQ: `publish` returns only once the broker confirmed the event.

Each event is a persistent message on the topic exchange, routed by its type, with the
envelope as its body (envelope.py) and its id as the message id. The connection is robust
(aio-pika reconnects by itself after a broker restart); a publish while the broker is away
is tried again until `publish_timeout` (POSTROOM_EVENT_PUBLISH_TIMEOUT) has passed, then
raises `EventPublishError`: an event is confirmed or the caller is told, never dropped
unseen. With a client, a confirmed event's id is marked in Redis, so publishing the same
event again answers False without a second message (consumers also drop duplicates).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from workers.client import PostroomClient
from workers.events.envelope import CONTENT_TYPE, encode
from workers.events.errors import EventPublishError
from workers.events.model import DomainEvent
from workers.events.rabbitmq.headers import outgoing_headers
from workers.events.rabbitmq.topology import declare_exchange
from workers.observe.trace_gate import active_tracing
from workers.store.keys import Keys

if TYPE_CHECKING:
    from aio_pika.abc import AbstractExchange, AbstractRobustConnection

logger = logging.getLogger(__name__)

# How long a published-marker is kept: as long as the queued bus remembers a job id (a day).
PUBLISHED_TTL = 86_400


def broker_address(url: str) -> str:
    """host:port/vhost of an AMQP URL, without its credentials (for logs and errors)."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 5672}{parts.path or '/'}"


async def connect(url: str, connect_timeout: float) -> AbstractRobustConnection:
    """A connection that reconnects by itself; the first connect fails after `connect_timeout`.

    A first connect that fails (or is cancelled) closes the connection: aio-pika would
    otherwise keep its reconnect loop running for an object nobody holds.
    """
    from aio_pika import RobustConnection
    from aio_pika.connection import make_url

    connection = RobustConnection(make_url(url), reconnect_interval=0.5)
    try:
        await connection.connect(timeout=connect_timeout)
    except BaseException:
        await asyncio.shield(connection.close())
        raise
    return connection


def transient_errors() -> tuple[type[BaseException], ...]:
    """What a broker that is away (or restarting) raises: worth trying again."""
    import aiormq.exceptions
    from aio_pika.exceptions import AMQPException

    return (
        AMQPException,
        aiormq.exceptions.AMQPError,
        ConnectionError,
        OSError,
        TimeoutError,
        RuntimeError,
    )


class RabbitMQEventBus:
    """The `EventBus` on RabbitMQ: events leave for every group bound to their type."""

    def __init__(
        self,
        url: str,
        exchange: str = "postroom.events",
        *,
        publish_timeout: float = 10.0,
        client: PostroomClient | None = None,
    ) -> None:
        self.url = url
        self.exchange_name = exchange
        self.publish_timeout = publish_timeout
        self.client = client
        self._connection: AbstractRobustConnection | None = None
        self._exchange: AbstractExchange | None = None
        self._lock = asyncio.Lock()

    async def _open(self, connect_timeout: float) -> AbstractExchange:
        async with self._lock:
            if self._exchange is None:
                connection = await connect(self.url, connect_timeout)
                try:
                    channel = await connection.channel(publisher_confirms=True)
                    self._exchange = await declare_exchange(channel, self.exchange_name)
                except BaseException:
                    await connection.close()
                    raise
                self._connection = connection
            return self._exchange

    def _marker(self, event: DomainEvent) -> str | None:
        if self.client is None:
            return None
        return Keys(self.client.settings.key_prefix).event_published(event.id)

    async def publish(self, event: DomainEvent) -> bool:
        """Publish `event` and wait for the broker's confirm; False if it was published
        before (known only with a client)."""
        marker = self._marker(event)
        if (
            marker is not None
            and self.client is not None
            and await self.client.redis.exists(marker)
        ):
            return False
        tracing = active_tracing()
        if tracing is None:
            await self._publish_confirmed(event, {})
        else:  # a producer span, whose trace context the message carries in its headers
            with tracing.producing(f"send {self.exchange_name}", self._span(event)) as headers:
                await self._publish_confirmed(event, headers)
        if marker is not None and self.client is not None:
            await self.client.redis.set(marker, b"1", ex=PUBLISHED_TTL)
        return True

    def _span(self, event: DomainEvent) -> dict[str, str | int]:
        return {
            "messaging.system": "rabbitmq",
            "messaging.destination.name": self.exchange_name,
            "messaging.rabbitmq.destination.routing_key": event.type,
            "messaging.message.id": event.id,
            "messaging.operation.type": "send",
            "messaging.operation.name": "publish",
        }

    async def _publish_confirmed(self, event: DomainEvent, trace: dict[str, str]) -> None:
        from aio_pika import DeliveryMode, Message

        message = Message(
            encode(event),
            content_type=CONTENT_TYPE,
            delivery_mode=DeliveryMode.PERSISTENT,
            message_id=event.id,
            type=event.type,
            timestamp=event.occurred_at,
            headers={**outgoing_headers(event), **trace},
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.publish_timeout
        pause = 0.05
        while True:
            remaining = deadline - loop.time()
            try:
                exchange = await self._open(max(remaining, 0.001))
                await exchange.publish(
                    message, routing_key=event.type, timeout=max(remaining, 0.001)
                )
                return
            except transient_errors() as exc:
                if loop.time() + pause >= deadline:
                    raise EventPublishError(
                        f"event {event.type} {event.id} was not confirmed by RabbitMQ at "
                        f"{broker_address(self.url)} within {self.publish_timeout:g}s "
                        f"(POSTROOM_EVENT_PUBLISH_TIMEOUT): {type(exc).__name__}: {exc}"
                    ) from exc
                logger.debug("publish of event %s failed, trying again: %r", event.id, exc)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)

    async def publish_all(self, events: Iterable[DomainEvent]) -> list[bool]:
        """Publish each event in order, each confirmed before the next is sent."""
        return [await self.publish(event) for event in events]

    async def close(self) -> None:
        connection, self._connection, self._exchange = self._connection, None, None
        if connection is not None:
            await connection.close()
