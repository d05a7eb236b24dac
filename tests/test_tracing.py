"""OpenTelemetry tracing: an enqueue's producer span, its trace context in the job record, one
consumer span per try under it, log records with their span's ids, events and SMTP calls in
the same trace; and, off, not one module of OpenTelemetry loaded."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import orjson
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import tests.observed_tasks as observed
from config.queues import QueueName
from config.settings import PostroomSettings
from tasks.notify import EmailChannel, RenderedMessage
from tests.adapters.test_email import smtp_settings
from tests.conftest import ROOT, running_worker
from tests.mail_server import SmtpServer
from tests.sample_tasks import Greeting, echo
from tests.traces import named
from workers.client import PostroomClient
from workers.errors import ConfigError
from workers.events import DomainEvent, on
from workers.events.memory import InMemoryEventBus
from workers.events.queued import DISPATCH_TASKS, QueuedEventBus
from workers.observe.logs import JsonFormatter
from workers.observe.trace_gate import tracing_for
from workers.store.job_record import check_job_record, parse_job_record

SEND = f"send {QueueName.DELIVERY.value}"
PROCESS = f"process {QueueName.DELIVERY.value}"


class Traced(DomainEvent):
    type: Literal["tests.tracing.traced"] = "tests.tracing.traced"


# Event id -> the trace id its handler ran in.
handled_in: dict[str, int] = {}


@on(Traced)
async def record_trace(event: Traced) -> None:
    handled_in[event.id] = trace.get_current_span().get_span_context().trace_id


def _secret(key: str) -> observed.Secret:
    return observed.Secret(key=key, content="the secret body", api_key="sk-do-not-leak")


# The probe a fresh interpreter runs: enqueue a job, run it in a worker, report the result and
# the OpenTelemetry modules loaded.
PROBE = """
import asyncio, json, sys
import tests.sample_tasks
from config.queues import QueueName
from config.settings import load_settings
from tests.sample_tasks import Greeting, echo
from workers.client import PostroomClient
from workers.connection.redis_server import resolve_redis
from workers.registry import registry
from workers.runner.supervisor import Supervisor
from workers.runtime import Runtime

async def main():
    settings = load_settings(
        redis_url=sys.argv[1], key_prefix=sys.argv[2], data_dir=sys.argv[3],
        tracing=sys.argv[4] == "on", tracing_exporter="none",
    )
    supervisor = Supervisor(
        Runtime(settings), registry, resolve_redis(settings)[0], [QueueName.DELIVERY]
    )
    run = asyncio.create_task(supervisor.run())
    async with await PostroomClient.connect(settings) as client:
        job = await client.enqueue(echo.call(Greeting(messageId="m1", text="hi")))
        result = await job.result(timeout=30)
    await supervisor.stop()
    await run
    return result

result = asyncio.run(main())
otel = sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")
print(json.dumps({"result": result, "otel": otel}))
"""


def _probe(settings: PostroomSettings, tracing: str) -> dict[str, Any]:
    args = [str(settings.redis_url), settings.key_prefix, str(settings.data_dir), tracing]
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], cwd=ROOT, capture_output=True, text=True, check=True
    )
    found: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return found


def test_tracing_off_an_enqueue_and_a_run_import_no_opentelemetry(
    settings: PostroomSettings,
) -> None:
    off = _probe(settings, "off")
    assert off["result"] == {"text": "hi", "queue": "message-delivery", "task": "tests.echo"}
    assert off["otel"] == []
    # The same probe with tracing on does load it: the check above can fail.
    on = _probe(settings, "on")
    assert on["result"] == off["result"]
    assert "opentelemetry.trace" in on["otel"]


def test_tracing_on_without_the_otel_extra_is_an_error_naming_the_variable() -> None:
    code = (
        "import sys\n"
        "sys.modules['opentelemetry'] = None  # as if the extra were not installed\n"
        "from config.settings import load_settings\n"
        "from workers.observe.trace_gate import tracing_for\n"
        "tracing_for(load_settings(tracing=True))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("config.errors.ConfigError: POSTROOM_TRACING is true")
    assert "pip install 'postroom[otel]'" in last


def test_tracing_off_settings_give_no_tracing(settings: PostroomSettings) -> None:
    assert tracing_for(settings) is None
    assert tracing_for(settings, worker=True) is None


async def test_tracing_an_enqueue_is_a_producer_span_whose_context_the_job_record_carries(
    traced_settings: PostroomSettings, span_exporter: InMemorySpanExporter
) -> None:
    tracer = trace.get_tracer("tests")
    async with await PostroomClient.connect(traced_settings) as client:
        with tracer.start_as_current_span("request") as request:
            job = await client.enqueue(
                echo.call(Greeting(messageId="m1", text="hi")), job_id="traced-1"
            )
        raw = await client.redis.get(client.keys.of(QueueName.DELIVERY).job(job.job_id))
    [send] = named(span_exporter.get_finished_spans(), SEND)
    assert send.kind is SpanKind.PRODUCER
    assert send.parent is not None and send.parent.span_id == request.get_span_context().span_id
    assert dict(send.attributes or {}) == {
        "messaging.system": "postroom",
        "messaging.destination.name": "message-delivery",
        "messaging.message.id": "traced-1",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "postroom.task": "tests.echo",
        "postroom.created": True,
    }
    record = orjson.loads(raw)
    span = send.context
    assert span is not None
    traceparent = f"00-{span.trace_id:032x}-{span.span_id:016x}-{span.trace_flags:02x}"
    assert record["tc"] == {"traceparent": traceparent}
    # The arguments are unchanged, the context beside them; the record parser keeps it.
    assert record["k"] == {"greeting": {"messageId": "m1", "text": "hi"}}
    assert parse_job_record(raw).trace == record["tc"]


async def test_tracing_each_try_is_a_consumer_span_under_and_linked_to_its_enqueue(
    traced_settings: PostroomSettings, span_exporter: InMemorySpanExporter
) -> None:
    key = f"flaky-{uuid.uuid4().hex}"
    worker = running_worker(traced_settings, queues=[QueueName.DELIVERY])
    async with await PostroomClient.connect(traced_settings) as client, worker:
        job = await client.enqueue(observed.fails_once.call(_secret(key)))
        assert await job.result(timeout=30) == 2
    spans = span_exporter.get_finished_spans()
    [send] = named(spans, SEND)
    tries = named(spans, PROCESS)
    assert [s.attributes["postroom.try"] for s in tries if s.attributes] == [1, 2]
    producer = send.context
    assert producer is not None
    for span in tries:
        assert span.kind is SpanKind.CONSUMER
        assert span.context is not None and span.context.trace_id == producer.trace_id
        assert span.parent is not None and span.parent.span_id == producer.span_id
        assert [link.context.span_id for link in span.links] == [producer.span_id]
        attributes = span.attributes or {}
        assert attributes["messaging.system"] == "postroom"
        assert attributes["messaging.destination.name"] == "message-delivery"
        assert attributes["messaging.message.id"] == job.job_id
        assert attributes["messaging.operation.type"] == "process"
        assert attributes["postroom.task"] == "tests.observed.fails_once"
        assert attributes["messaging.destination.partition.id"] == "0"
    first, second = tries
    assert first.attributes is not None and first.attributes["postroom.outcome"] == "retried"
    assert first.attributes["postroom.retry_in_s"] == observed.QUICK.base
    assert first.status.status_code is StatusCode.ERROR
    assert first.attributes["error.type"] == "RuntimeError"
    [event] = first.events
    assert event.attributes is not None
    assert event.attributes["exception.message"] == "the first try fails"
    assert second.attributes is not None and second.attributes["postroom.outcome"] == "completed"
    assert second.status.status_code is StatusCode.UNSET
    # Nothing of the payload reaches a span.
    text = repr([(s.attributes, [e.attributes for e in s.events]) for s in spans])
    assert "the secret body" not in text and "sk-do-not-leak" not in text


async def test_tracing_a_failed_validation_keeps_the_refused_value_out_of_the_span(
    traced_settings: PostroomSettings, span_exporter: InMemorySpanExporter
) -> None:
    worker = running_worker(traced_settings, queues=[QueueName.DELIVERY])
    async with await PostroomClient.connect(traced_settings) as client, worker:
        job = await client.enqueue(observed.validates.call(_secret("k")))
        with pytest.raises(Exception, match="validation error"):
            await job.result(timeout=30)
    [run] = named(span_exporter.get_finished_spans(), PROCESS)
    assert run.attributes is not None and run.attributes["postroom.outcome"] == "dead_lettered"
    assert run.attributes["postroom.dead_letter.reason"] == "max-tries"  # its one try
    [event] = run.events
    assert event.attributes == {
        "exception.type": "ValidationError",
        "exception.message": "<value>: Input should be a valid integer, unable to parse string as "
        "an integer",  # its field and reason, as the logs have them
    }


async def test_tracing_a_job_without_a_usable_trace_context_runs_as_a_new_trace(
    traced_settings: PostroomSettings, span_exporter: InMemorySpanExporter
) -> None:
    """A `tc` field of the wrong shape is ignored by the record's check; one whose
    traceparent does not parse is ignored by the propagator: either way the job runs."""
    bad_shapes = [5, "00-abc", {"traceparent": 5}, {"baggage": "user=ada"}, {}]
    for tc in bad_shapes:
        data = {"f": "tests.echo", "a": [], "k": {}, "t": None, "et": 1, "tc": tc}
        assert check_job_record(data).trace is None
    async with await PostroomClient.connect(traced_settings) as client:
        keys = client.keys.of(QueueName.DELIVERY)
        record: dict[str, Any] = {
            "f": "tests.echo",
            "a": [],
            "k": {"greeting": {"messageId": "m1", "text": "hi"}},
            "t": None,
            "et": 1,
            "tc": {"traceparent": "00-not-a-trace-01"},
        }
        await client.redis.set(keys.job("odd-tc"), orjson.dumps(record))
        await client.redis.zadd(keys.queue, {"odd-tc": 0})  # as a stock arq client scores it
        async with running_worker(traced_settings, queues=[QueueName.DELIVERY]):
            result = await client.job("odd-tc", echo).result(timeout=30)
    assert result["text"] == "hi"
    [run] = named(span_exporter.get_finished_spans(), PROCESS)
    assert run.parent is None and list(run.links) == []
    assert run.attributes is not None and run.attributes["postroom.outcome"] == "completed"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def job_log_records() -> Iterator[list[logging.LogRecord]]:
    """The records of the worker's job lines, as any handler sees them."""
    handler = _Records()
    job_logger = logging.getLogger("workers.runner.observation")
    job_logger.addHandler(handler)
    level = job_logger.level
    job_logger.setLevel(logging.INFO)
    try:
        yield handler.records
    finally:
        job_logger.removeHandler(handler)
        job_logger.setLevel(level)


async def test_tracing_log_records_of_a_run_carry_its_trace_and_span_ids(
    traced_settings: PostroomSettings,
    span_exporter: InMemorySpanExporter,
    job_log_records: list[logging.LogRecord],
) -> None:
    worker = running_worker(traced_settings, queues=[QueueName.DELIVERY])
    async with await PostroomClient.connect(traced_settings) as client, worker:
        job = await client.enqueue(echo.call(Greeting(messageId="m1", text="hi")))
        await job.result(timeout=30)
    [run] = named(span_exporter.get_finished_spans(), PROCESS)
    assert run.context is not None
    [record] = [r for r in job_log_records if getattr(r, "job_id", None) == job.job_id]
    assert record.getMessage().startswith("job completed")
    line = json.loads(JsonFormatter().format(record))
    assert line["trace_id"] == f"{run.context.trace_id:032x}"
    assert line["span_id"] == f"{run.context.span_id:016x}"


async def test_tracing_off_log_records_carry_no_trace_ids(
    settings: PostroomSettings, job_log_records: list[logging.LogRecord]
) -> None:
    worker = running_worker(settings, queues=[QueueName.DELIVERY])
    async with await PostroomClient.connect(settings) as client, worker:
        job = await client.enqueue(echo.call(Greeting(messageId="m1", text="hi")))
        await job.result(timeout=30)
    [record] = [r for r in job_log_records if getattr(r, "job_id", None) == job.job_id]
    assert "trace_id" not in json.loads(JsonFormatter().format(record))


async def test_tracing_queued_events_carry_the_publisher_s_trace_to_their_handlers(
    traced_settings: PostroomSettings, span_exporter: InMemorySpanExporter
) -> None:
    queue = traced_settings.event_queue
    worker = running_worker(traced_settings, queues=[queue])
    async with await PostroomClient.connect(traced_settings) as client, worker:
        event = Traced()
        with trace.get_tracer("tests").start_as_current_span("publisher") as publisher:
            assert await QueuedEventBus(client, queue=queue).publish(event)
        await client.job(event.id, DISPATCH_TASKS[queue]).result(timeout=30)
    trace_id = publisher.get_span_context().trace_id
    [send] = named(span_exporter.get_finished_spans(), f"send {queue.value}")
    [run] = named(span_exporter.get_finished_spans(), f"process {queue.value}")
    assert send.context is not None and send.context.trace_id == trace_id
    assert run.context is not None and run.context.trace_id == trace_id
    assert run.attributes is not None and run.attributes["messaging.message.id"] == event.id
    assert handled_in[event.id] == trace_id


async def test_tracing_in_memory_events_are_handled_inside_the_publisher_s_span(
    traced_settings: PostroomSettings,
) -> None:
    tracing_for(traced_settings)
    event = Traced()
    with trace.get_tracer("tests").start_as_current_span("publisher") as publisher:
        await InMemoryEventBus().publish(event)
    assert handled_in[event.id] == publisher.get_span_context().trace_id


async def test_tracing_an_smtp_send_is_a_client_span_under_the_current_one(
    traced_settings: PostroomSettings,
    span_exporter: InMemorySpanExporter,
    smtp_server: SmtpServer,
    ca_file: Path,
) -> None:
    tracing_for(traced_settings)
    message = RenderedMessage(title="Hi", body="the secret body")
    with trace.get_tracer("tests").start_as_current_span("job") as job:
        async with EmailChannel(smtp_settings(smtp_server, ca_file)) as channel:
            await channel.send("ada@example.com", message)
    [smtp] = named(span_exporter.get_finished_spans(), "smtp send")
    assert smtp.kind is SpanKind.CLIENT
    assert smtp.parent is not None and smtp.parent.span_id == job.get_span_context().span_id
    assert dict(smtp.attributes or {}) == {
        "network.protocol.name": "smtp",
        "server.address": "127.0.0.1",
        "server.port": smtp_server.port,
    }
    assert len(smtp_server.received) == 1


def test_tracing_off_an_smtp_span_is_nothing(span_exporter: InMemorySpanExporter) -> None:
    from workers import client_span

    span_exporter.clear()
    with client_span("smtp send", {"server.address": "x"}):
        pass
    assert span_exporter.get_finished_spans() == ()


def test_tracing_bad_exporter_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from config.settings import load_settings

    monkeypatch.setenv("POSTROOM_TRACING_EXPORTER", "zipkin")
    with pytest.raises(ConfigError, match="POSTROOM_TRACING_EXPORTER"):
        load_settings()


def test_tracing_a_message_s_headers_carry_its_producer_span_to_its_consumer_span(
    traced_settings: PostroomSettings, span_exporter: InMemorySpanExporter
) -> None:
    """What a transport with message headers (AMQP) uses: the producer's context out, a
    consumer span under it from the headers as they come back (strings, or bytes)."""
    tracing = tracing_for(traced_settings)
    assert tracing is not None
    with tracing.producing("send events", {"messaging.system": "rabbitmq"}) as headers:
        pass
    received = {name: value.encode() for name, value in headers.items()}
    with tracing.consumed("process events.group", received, {"messaging.system": "rabbitmq"}):
        pass
    with tracing.consumed("process events.group", {"traceparent": 5}, {}):  # not a context
        pass
    [send] = named(span_exporter.get_finished_spans(), "send events")
    first, unrelated = named(span_exporter.get_finished_spans(), "process events.group")
    assert send.kind is SpanKind.PRODUCER and send.context is not None
    assert headers["traceparent"].split("-")[2] == f"{send.context.span_id:016x}"
    assert first.kind is SpanKind.CONSUMER
    assert first.parent is not None and first.parent.span_id == send.context.span_id
    assert [link.context.span_id for link in first.links] == [send.context.span_id]
    assert unrelated.parent is None and list(unrelated.links) == []


async def test_tracing_context_stays_outside_sealed_arguments_and_reaches_the_run(
    traced_settings: PostroomSettings, span_exporter: InMemorySpanExporter
) -> None:
    """With payload encryption the arguments are sealed; the trace context is a field of its
    own beside them, plaintext (ids only), and the run still joins the enqueue's trace."""
    from tests.test_payload_encryption import new_key, with_keys

    sealed = with_keys(traced_settings, {"k1": new_key()}, "k1", payload_encryption=True)
    async with await PostroomClient.connect(sealed) as client:
        job = await client.enqueue(echo.call(Greeting(messageId="m1", text="sealed hello")))
        raw = await client.redis.get(client.keys.of(QueueName.DELIVERY).job(job.job_id))
        async with running_worker(sealed, queues=[QueueName.DELIVERY]):
            assert (await job.result(timeout=30))["text"] == "sealed hello"
    record = orjson.loads(raw)
    assert b"sealed hello" not in raw and set(record["k"]) == {"$sealed"}
    [send] = named(span_exporter.get_finished_spans(), SEND)
    [run] = named(span_exporter.get_finished_spans(), PROCESS)
    assert send.context is not None and run.parent is not None
    assert record["tc"]["traceparent"].split("-")[2] == f"{send.context.span_id:016x}"
    assert run.parent.span_id == send.context.span_id
