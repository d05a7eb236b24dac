"""A handler group's consumer: runs the `@on` handlers of the task modules on RabbitMQ events.

A group (`POSTROOM_EVENT_GROUP`, default `default`) is a set of consumer processes with the
same handlers: they share one durable queue, bound to the event types their handlers take,
and each event reaches one process of each group. Processes of other groups get their own
copy. Per delivery:

1. decode the envelope; a malformed one (not JSON, not the schema, unknown type, invalid
   data) goes to the group's dead letters with its reason, and the consumer carries on;
2. claim the event for the group (claim.py: two deliveries of one event never run at once),
   then run the handlers the group's handled log (Redis, per group and event id) has not
   seen succeed, so a redelivery (after a crash, or a retry after another handler failed)
   runs only those that did not;
3. on failure, republish to a wait queue with the event queue's backoff
   (`POSTROOM_EVENT_QUEUE`'s policy, workers/runner/backoff.py: the same delays as a job)
   until its `max_tries`; then, or at once when every failing handler raised
   `PermanentError`, to the dead letters naming each failure;
4. ack, only now: a consumer that dies before this gets the event redelivered.

What it republishes is confirmed before the original is acked, so a crash in between
duplicates an event, never loses it. On SIGTERM/SIGINT it stops taking deliveries, gives the
running ones `POSTROOM_SHUTDOWN_GRACE` seconds, then cancels the rest unacked, which the
broker requeues (a second signal skips the wait).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from config.settings import PostroomSettings
from workers.client import PostroomClient, redis_named
from workers.connection.refusal_grace import RedisRefused, RefusalGrace
from workers.error_text import shown
from workers.events.envelope import CONTENT_TYPE, MalformedEvent, decode
from workers.events.handled_log import RedisHandledLog
from workers.events.handlers import (
    EventContext,
    EventHandlers,
    EventHandlersFailed,
    EventHandlersRejected,
    handlers,
)
from workers.events.model import DomainEvent
from workers.events.rabbitmq import headers as event_headers
from workers.events.rabbitmq.claim import EventClaims
from workers.events.rabbitmq.publisher import broker_address, connect
from workers.events.rabbitmq.topology import (
    BROKER_HEADERS,
    DEAD_AT_HEADER,
    ERROR_HEADER,
    EXHAUSTED,
    GROUP_HEADER,
    REASON_HEADER,
    REJECTED,
    ROUTING_KEY_HEADER,
    TRY_HEADER,
    GroupTopology,
    declare_dead_queue,
    declare_exchange,
    declare_group_queue,
    declare_wait_queue,
)
from workers.observe.masking import masked_text
from workers.observe.trace_gate import active_tracing
from workers.runner.backoff import nominal_delay, retry_delay
from workers.store.keys import Keys

if TYPE_CHECKING:
    from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

logger = logging.getLogger(__name__)

# An error kept with a dead letter is cut to this many characters.
MAX_ERROR = 2_000
# Seconds before a delivery that failed outside its handlers (Redis away) is requeued.
REQUEUE_PAUSE = 1.0


def delivery_try(headers: Mapping[str, Any]) -> int:
    """The delivery's try (1 when a foreign publisher sent it, or the header is bad)."""
    value = headers.get(TRY_HEADER, 1)
    return value if isinstance(value, int) and value >= 1 else 1


def kept_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    """A delivery's headers without those the broker adds when it dead-letters."""
    return {name: value for name, value in headers.items() if name not in BROKER_HEADERS}


class EventConsumer:
    """Consumes one group's queue until `stop()`; `run()` returns once it drained."""

    def __init__(
        self,
        settings: PostroomSettings,
        client: PostroomClient,
        registry: EventHandlers = handlers,
        *,
        group: str | None = None,
    ) -> None:
        if not settings.rabbitmq_url:
            raise ValueError("the RabbitMQ consumer needs RABBITMQ_URL")
        self.settings = settings
        self.client = client
        self.details = settings.error_details  # a handler's text in logs and letters
        self.registry = registry
        self.names = GroupTopology(settings.event_exchange, group or settings.event_group)
        self.policy = settings.queues[settings.event_queue]
        self.keys = Keys(settings.key_prefix)
        self.log = RedisHandledLog(
            client.redis,
            functools.partial(self.keys.event_group_handled, self.names.group),
            settings.keep_result + settings.dead_letter_retention,
        )
        self.claims = EventClaims(client.redis, self.keys, self.names.group, settings.lease_seconds)
        self.context = EventContext(client=client)
        self.event_types = sorted(
            cls.event_type for cls in registry if registry.handlers_for(cls.event_type)
        )
        self._stopping = asyncio.Event()
        self._signals = 0
        self._in_flight: set[asyncio.Task[None]] = set()
        self._wait_queues: set[int] = set()
        self._channel: AbstractChannel | None = None
        self.ready = asyncio.Event()
        # Redis refusing the credentials (revoked while running): retried for the grace,
        # then the consumer stops and `run()` raises it (exit 2).
        self.refusals = RefusalGrace(settings, redis_named(settings))
        self.refused: RedisRefused | None = None

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """First call: drain; a second one: cancel what runs without waiting."""
        self._signals += 1
        self._stopping.set()
        if self._signals > 1:
            for task in self._in_flight:
                task.cancel()

    async def run(self) -> None:
        if not self.event_types:
            raise ValueError(
                f"event group {self.names.group!r} has no handlers: POSTROOM_TASK_MODULES "
                "must name the modules declaring its @on handlers"
            )
        assert self.settings.rabbitmq_url is not None
        connection = await connect(self.settings.rabbitmq_url, self.settings.event_publish_timeout)
        try:
            channel = await connection.channel(publisher_confirms=True)
            self._channel = channel
            await channel.set_qos(prefetch_count=self.settings.event_prefetch)
            exchange = await declare_exchange(channel, self.names.exchange)
            queue = await declare_group_queue(channel, self.names)
            for event_type in self.event_types:
                await queue.bind(exchange, routing_key=event_type)
            await declare_dead_queue(channel, self.names)
            await self.client.redis.sadd(self.keys.event_groups(), self.names.group)  # type: ignore[misc]
            tag = await queue.consume(self._deliver)
            logger.info(
                "consuming events of group %s from queue %s at %s: %s",
                self.names.group,
                self.names.queue,
                broker_address(self.settings.rabbitmq_url),
                ", ".join(self.event_types),
            )
            self.ready.set()
            await self._stopping.wait()
            await self._drain(queue, tag)
        finally:
            await connection.close()
        if self.refused is not None:
            raise self.refused

    async def _drain(self, queue: AbstractQueue, tag: str) -> None:
        from workers.events.rabbitmq.publisher import transient_errors

        try:
            await queue.cancel(tag)
        except transient_errors() as exc:
            logger.warning("could not cancel the consumer (%r); closing the connection", exc)
        running = set(self._in_flight)
        if running:
            logger.info(
                "waiting up to %gs for %d running event(s)",
                self.settings.shutdown_grace,
                len(running),
            )
            _, pending = await asyncio.wait(running, timeout=self.settings.shutdown_grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
                logger.warning("%d event(s) left unacked for the broker to requeue", len(pending))

    async def _deliver(self, message: AbstractIncomingMessage) -> None:
        """Each delivery in a task of its own: the prefetch bounds how many run at once."""
        if self._stopping.is_set():
            return  # not acked: requeued when the channel closes
        task = asyncio.create_task(self._handle_safely(message))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _handle_safely(self, message: AbstractIncomingMessage) -> None:
        from workers.events.rabbitmq.publisher import transient_errors

        try:
            await self._handle(message)
        except transient_errors() as exc:
            # The broker went away mid-way: unacked, the event is redelivered once it is back.
            logger.warning(
                "event message %s not finished (%s: %s); the broker redelivers it",
                message.message_id,
                type(exc).__name__,
                exc,
            )
        except Exception as exc:
            # Not the handlers (their errors are retried above) but what they stand on: Redis
            # (the handled log) away, say. Give it back a moment later, not at once in a loop.
            # A refusal by Redis is logged once, by the grace.
            log = logger.debug if self._note_refusal(exc) else logger.error
            log(
                "event message %s not handled (%s: %s); requeued in %gs",
                message.message_id,
                type(exc).__name__,
                exc,
                REQUEUE_PAUSE,
            )
            await asyncio.sleep(REQUEUE_PAUSE)
            with contextlib.suppress(*transient_errors()):
                await message.nack(requeue=True)

    def _note_refusal(self, exc: BaseException) -> bool:
        """Whether `exc` is Redis refusing us; once that outlasts the grace, stop (run()
        raises it)."""
        try:
            return self.refusals.check(exc)
        except RedisRefused as refused:
            if self.refused is None:
                self.refused = refused
                self.stop()
            return True

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        headers = dict(message.headers or {})
        attempt = delivery_try(headers)
        try:
            event = decode(message.body, self.registry)
        except MalformedEvent as exc:
            error = shown(exc, details=self.details)
            logger.error(
                "malformed event message %s (%s) dead-lettered: %s",
                message.message_id,
                exc.reason,
                error,
            )
            await self._dead_letter(message, exc.reason, error, attempt, None)
            await message.ack()
            return
        async with self.claims.claim(event.id) as claimed:
            if not claimed:
                # Another delivery of this event runs now: look again once it is done.
                logger.info("event %s %s is being handled; requeued", event.type, event.id)
                await asyncio.sleep(REQUEUE_PAUSE)
                await message.nack(requeue=True)
                return
            await self._run(message, event, headers, attempt)
        await message.ack()

    async def _run(
        self,
        message: AbstractIncomingMessage,
        event: DomainEvent,
        headers: dict[str, Any],
        attempt: int,
    ) -> None:
        """Run the handlers; on failure, send the event on to a retry or the dead letters."""
        token = event_headers.incoming.set(headers)
        try:
            async with asyncio.timeout(self.policy.timeout):
                tracing = active_tracing()
                if tracing is None:
                    await self.registry.run(event, self.log, self.context)
                else:  # a consumer span, under the publisher's (its headers' trace context)
                    with tracing.consumed(
                        f"process {self.names.queue}", headers, self._span(event, attempt)
                    ):
                        await self.registry.run(event, self.log, self.context)
        except EventHandlersRejected as exc:
            error = masked_text(shown(exc, details=self.details), event.to_json())
            logger.error("event %s %s dead-lettered: %s", event.type, event.id, error)
            await self._dead_letter(message, REJECTED, error, attempt, event.id)
        except (EventHandlersFailed, TimeoutError) as exc:
            error = f"the handlers took longer than {self.policy.timeout:g}s"
            if str(exc):
                error = masked_text(shown(exc, details=self.details), event.to_json())
            if attempt >= self.policy.max_tries:
                logger.error(
                    "event %s %s dead-lettered after %d tries: %s",
                    event.type,
                    event.id,
                    attempt,
                    error,
                )
                await self._dead_letter(message, EXHAUSTED, error, attempt, event.id)
            else:
                await self._retry(message, attempt)
        finally:
            event_headers.incoming.reset(token)

    def _span(self, event: DomainEvent, attempt: int) -> dict[str, str | int]:
        return {
            "messaging.system": "rabbitmq",
            "messaging.destination.name": self.names.queue,
            "messaging.rabbitmq.destination.routing_key": event.type,
            "messaging.consumer.group.name": self.names.group,
            "messaging.message.id": event.id,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "postroom.try": attempt,
        }

    def _copy(self, message: AbstractIncomingMessage, headers: dict[str, Any], **extra: Any) -> Any:
        from aio_pika import DeliveryMode, Message

        return Message(
            message.body,
            headers=headers,
            content_type=message.content_type or CONTENT_TYPE,
            delivery_mode=DeliveryMode.PERSISTENT,
            message_id=extra.pop("message_id", message.message_id),
            type=message.type,
            timestamp=message.timestamp,
            **extra,
        )

    def _origin(self, message: AbstractIncomingMessage, headers: Mapping[str, Any]) -> str:
        return str(headers.get(ROUTING_KEY_HEADER) or message.routing_key or "")

    async def _retry(self, message: AbstractIncomingMessage, attempt: int) -> None:
        assert self._channel is not None
        nominal_ms = max(int(nominal_delay(self.policy.backoff, attempt) * 1000), 1)
        if nominal_ms not in self._wait_queues:
            await declare_wait_queue(self._channel, self.names, nominal_ms)
            self._wait_queues.add(nominal_ms)
        delay = retry_delay(self.policy.backoff, attempt)
        headers = kept_headers(message.headers or {})
        headers.update(
            {TRY_HEADER: attempt + 1, ROUTING_KEY_HEADER: self._origin(message, headers)}
        )
        # An expiration of 0 would mean none at all: at least a millisecond.
        copy = self._copy(message, headers, expiration=max(delay, 0.001))
        await self._channel.default_exchange.publish(copy, routing_key=self.names.wait(nominal_ms))
        logger.warning(
            "event message %s failed try %d/%d; again in %.3fs",
            message.message_id,
            attempt,
            self.policy.max_tries,
            delay,
        )

    async def _dead_letter(
        self,
        message: AbstractIncomingMessage,
        reason: str,
        error: str,
        attempt: int,
        event_id: str | None,
    ) -> None:
        assert self._channel is not None
        headers = kept_headers(message.headers or {})
        headers.update(
            {
                REASON_HEADER: reason,
                ERROR_HEADER: error[:MAX_ERROR],
                GROUP_HEADER: self.names.group,
                DEAD_AT_HEADER: int(time.time() * 1000),
                ROUTING_KEY_HEADER: self._origin(message, headers),
                TRY_HEADER: attempt,
            }
        )
        letter_id = event_id or message.message_id or uuid.uuid4().hex
        copy = self._copy(message, headers, message_id=letter_id)
        await self._channel.default_exchange.publish(copy, routing_key=self.names.dead)
