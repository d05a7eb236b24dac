"""Tracing over the RabbitMQ transport: a publish is a producer span whose W3C trace context
travels in the message's AMQP headers, and each delivery (a retry too) is a consumer span
under it, in which the handlers run."""

from __future__ import annotations

from typing import Literal

from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from config.settings import PostroomSettings
from tests.conftest import eventually
from tests.events.rabbitmq_support import consuming_here, rabbit_settings
from tests.servers.rabbitmq import Broker
from tests.traces import named
from workers.client import PostroomClient
from workers.events import DomainEvent, EventHandlers, RabbitMQEventBus

registry = EventHandlers()
# Event id -> the trace id of each call of its handler.
handled_in: dict[str, list[int]] = {}


class Shipped(DomainEvent):
    type: Literal["tests.rabbitmq.shipped"] = "tests.rabbitmq.shipped"


@registry.on(Shipped)
async def track(event: Shipped) -> None:
    calls = handled_in.setdefault(event.id, [])
    calls.append(trace.get_current_span().get_span_context().trace_id)
    if len(calls) == 1:
        raise RuntimeError("the tracker is down")


async def test_rabbitmq_tracing_carries_the_publisher_s_trace_through_headers_and_retries(
    traced_settings: PostroomSettings,
    span_exporter: InMemorySpanExporter,
    rabbitmq: Broker,
) -> None:
    rabbit = rabbit_settings(traced_settings, rabbitmq, tracing=True)
    bus = RabbitMQEventBus(rabbitmq.url, rabbit.event_exchange)
    async with await PostroomClient.connect(rabbit) as client:
        try:
            async with consuming_here(rabbit, client, registry, "shipping"):
                event = Shipped()
                with trace.get_tracer("tests").start_as_current_span("request") as request:
                    assert await bus.publish(event)

                async def retried() -> bool:
                    return len(handled_in.get(event.id, [])) == 2

                await eventually(retried, "the event was handled on its second delivery")
        finally:
            await bus.close()
    trace_id = request.get_span_context().trace_id
    assert handled_in[event.id] == [trace_id, trace_id]
    spans = span_exporter.get_finished_spans()
    [send] = named(spans, f"send {rabbit.event_exchange}")
    assert send.kind is SpanKind.PRODUCER and send.context is not None
    assert send.parent is not None and send.parent.span_id == request.get_span_context().span_id
    assert send.attributes is not None
    assert send.attributes["messaging.system"] == "rabbitmq"
    assert send.attributes["messaging.message.id"] == event.id
    deliveries = named(spans, f"process {rabbit.event_exchange}.shipping")
    assert [d.attributes and d.attributes["postroom.try"] for d in deliveries] == [1, 2]
    for delivery in deliveries:
        assert delivery.kind is SpanKind.CONSUMER
        assert delivery.parent is not None and delivery.parent.span_id == send.context.span_id
        assert [link.context.span_id for link in delivery.links] == [send.context.span_id]
    assert deliveries[0].status.status_code is StatusCode.ERROR
    assert deliveries[1].status.status_code is StatusCode.UNSET
