"""The RabbitMQ consumer in this event loop (real connections to the session's broker):
retries with the job backoff, dead letters and their retry, malformed messages from a
foreign publisher, the envelope's schema, a publish while the broker is away."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from typing import Literal

import aio_pika
import orjson
import pytest

from config.settings import PostroomSettings
from tests.conftest import eventually
from tests.events.rabbitmq_support import consuming_here, queue_state, rabbit_settings
from tests.servers.rabbitmq import Broker
from workers.client import PostroomClient
from workers.errors import PermanentError
from workers.events import DomainEvent, EventHandlers, EventPublishError, RabbitMQEventBus
from workers.events.envelope import MalformedEvent, decode, encode
from workers.events.rabbitmq import headers
from workers.events.rabbitmq.dead_letters import EventDeadLetter, EventDeadLetters

registry = EventHandlers()
calls: Counter[tuple[str, str]] = Counter()
tried_at: dict[str, list[float]] = {}
# Event ids whose failing handler succeeds from now on (the test "fixed" it).
fixed: set[str] = set()


class Charged(DomainEvent):
    type: Literal["tests.rabbitmq.charged"] = "tests.rabbitmq.charged"
    amount_cents: int
    refuse: bool = False


@registry.on(Charged)
async def receipt(event: Charged) -> None:
    calls["receipt", event.id] += 1


@registry.on(Charged)
async def ledger(event: Charged) -> None:
    calls["ledger", event.id] += 1
    tried_at.setdefault(event.id, []).append(time.monotonic())
    if event.refuse:
        raise PermanentError("the ledger refuses this charge")
    if event.id not in fixed:
        raise RuntimeError("the ledger is down")


class Traced(DomainEvent):
    type: Literal["tests.rabbitmq.traced"] = "tests.rabbitmq.traced"


seen_headers: dict[str, object] = {}


@registry.on(Traced)
async def read_trace(event: Traced) -> None:
    seen_headers[event.id] = headers.incoming.get().get("traceparent")


async def _dead_letters(letters: EventDeadLetters, group: str, count: int) -> list[EventDeadLetter]:
    async def arrived() -> bool:
        return await letters.count(group) >= count

    await eventually(arrived, f"{count} dead letter(s) in group {group}")
    return list(await letters.list(group))


async def test_rabbitmq_failing_handler_retries_with_backoff_then_dead_letters_and_retries(
    settings: PostroomSettings, client: PostroomClient, rabbitmq: Broker
) -> None:
    rabbit = rabbit_settings(settings, rabbitmq)
    bus = RabbitMQEventBus(rabbitmq.url, rabbit.event_exchange)
    letters = EventDeadLetters(rabbit, client.redis)
    try:
        async with consuming_here(rabbit, client, registry, "billing"):
            event = Charged(amount_cents=1250)
            await bus.publish(event)
            [letter] = await _dead_letters(letters, "billing", 1)
            assert letter.id == event.id
            assert letter.reason == "exhausted"
            assert letter.tries == 3
            assert "ledger is down" in letter.error
            assert letter.routing_key == "tests.rabbitmq.charged"
            assert letter.event["data"] == {"amountCents": 1250, "refuse": False}
            # Three tries of the failing handler, apart by at least the backoff (0.2 s, 0.4 s:
            # the wait queues' TTL, never shorter); the one that succeeded ran once.
            times = tried_at[event.id]
            assert len(times) == 3
            assert times[1] - times[0] >= 0.2 and times[2] - times[1] >= 0.4
            assert calls["receipt", event.id] == 1
            for nominal_ms in (200, 400):
                name = f"{rabbit.event_exchange}.billing.retry.{nominal_ms}"
                assert (await queue_state(rabbitmq.url, name))[0] == 0
            # Retried from the dead letters once fixed: handled, the dead letter gone.
            fixed.add(event.id)
            assert await letters.retry("billing", {event.id}) == 1

            async def handled() -> bool:
                return calls["ledger", event.id] == 4

            await eventually(handled, "the retried event was handled")
            assert calls["receipt", event.id] == 1
            assert await letters.count("billing") == 0
            # A handler that refuses (PermanentError) dead-letters at once, without retries.
            refused = Charged(amount_cents=1, refuse=True)
            await bus.publish(refused)
            [letter] = await _dead_letters(letters, "billing", 1)
            assert (letter.id, letter.reason, letter.tries) == (refused.id, "rejected", 1)
            assert calls["ledger", refused.id] == 1
            assert await letters.purge("billing") == 1
            assert await letters.count("billing") == 0
    finally:
        await letters.close()
        await bus.close()


async def _publish_raw(url: str, exchange: str, routing_key: str, body: bytes) -> None:
    """What a foreign publisher might send, with no postroom code in the way."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        target = await channel.get_exchange(exchange)
        await target.publish(aio_pika.Message(body, message_id=None), routing_key=routing_key)
    finally:
        await connection.close()


async def test_rabbitmq_malformed_events_are_dead_lettered_with_their_reason(
    settings: PostroomSettings, client: PostroomClient, rabbitmq: Broker
) -> None:
    rabbit = rabbit_settings(settings, rabbitmq)
    letters = EventDeadLetters(rabbit, client.redis)
    good = Charged(amount_cents=5)
    fixed.add(good.id)
    envelope = orjson.loads(encode(good))
    bad = {
        "not-json": b"\xff not json at all",
        "schema": orjson.dumps({**envelope, "occurredAt": None, "extra": 1}),
        "unknown-type": orjson.dumps({**envelope, "type": "tests.rabbitmq.nobody"}),
        "invalid-data": orjson.dumps({**envelope, "data": {"amountCents": "ten"}}),
    }
    try:
        async with consuming_here(rabbit, client, registry, "foreign"):
            for body in bad.values():
                await _publish_raw(rabbitmq.url, rabbit.event_exchange, Charged.event_type, body)
            # The consumer carried on: a good event after them is handled.
            await _publish_raw(
                rabbitmq.url, rabbit.event_exchange, Charged.event_type, encode(good)
            )

            async def handled() -> bool:
                return calls["ledger", good.id] == 1

            await eventually(handled, "the good event after the malformed ones was handled")
            found = await _dead_letters(letters, "foreign", len(bad))
        reasons = {letter.reason: letter for letter in found}
        assert set(reasons) == set(bad)
        assert str(reasons["not-json"].body).startswith("base64:")
        assert "occurredAt" in reasons["schema"].error and "extra" in reasons["schema"].error
        assert "tests.rabbitmq.nobody" in reasons["unknown-type"].error
        assert "data.amountCents" in reasons["invalid-data"].error
        assert all(letter.id for letter in found)
    finally:
        await letters.close()


def test_rabbitmq_envelope_puts_the_events_fields_under_data() -> None:
    event = Charged(amount_cents=7)
    body = orjson.loads(encode(event))
    assert set(body) == {"id", "type", "occurredAt", "version", "data"}
    assert body["type"] == "tests.rabbitmq.charged" and body["version"] == 1
    assert body["data"] == {"amountCents": 7, "refuse": False}
    assert decode(encode(event), registry) == event
    clash = orjson.dumps({**body, "data": {"amountCents": 7, "id": "other"}})
    with pytest.raises(MalformedEvent, match="repeat the envelope") as raised:
        decode(clash, registry)
    assert raised.value.reason == "schema"


@pytest.mark.parametrize("broker", ["nothing listens", "it never answers"])
async def test_rabbitmq_publish_while_the_broker_is_away_raises_naming_it(broker: str) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        if broker == "it never answers":
            silent.listen()  # connections are taken, the AMQP handshake never answered
        port = silent.getsockname()[1]
        bus = RabbitMQEventBus(f"amqp://guest:secret@127.0.0.1:{port}/", publish_timeout=0.5)
        with pytest.raises(EventPublishError) as raised:
            await bus.publish(Charged(amount_cents=1))
    message = str(raised.value)
    assert f"127.0.0.1:{port}" in message and "POSTROOM_EVENT_PUBLISH_TIMEOUT" in message
    assert "secret" not in message
    # No reconnect loop is left behind for the connections that never came up.
    await asyncio.sleep(0)
    left = [t for t in asyncio.all_tasks() if "connection_factory" in repr(t.get_coro())]
    assert left == []
    await bus.close()


async def test_rabbitmq_traceparent_header_travels_from_publisher_to_handlers(
    settings: PostroomSettings, client: PostroomClient, rabbitmq: Broker
) -> None:
    rabbit = rabbit_settings(settings, rabbitmq)
    bus = RabbitMQEventBus(rabbitmq.url, rabbit.event_exchange)
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

    def tracing(event: DomainEvent) -> dict[str, str]:
        return {"traceparent": trace}

    headers.outgoing.append(tracing)
    try:
        async with consuming_here(rabbit, client, registry, "traced"):
            event = Traced()
            await bus.publish(event)

            async def read() -> bool:
                return event.id in seen_headers

            await eventually(read, "the handler ran")
        assert seen_headers[event.id] == trace
    finally:
        headers.outgoing.remove(tracing)
        await bus.close()
