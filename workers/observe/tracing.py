"""OpenTelemetry tracing of jobs, the one module that imports `opentelemetry`.

Loaded through trace_gate.tracing_for only when `POSTROOM_TRACING` is true. Spans follow
OpenTelemetry's messaging conventions:

- an enqueue is a PRODUCER span `send <queue>` per job, under whatever span is current (the
  HTTP request's); its W3C trace context goes into the job record's own field `tc`
  (`{"traceparent": ..., "tracestate": ...}`), beside the arguments and never inside them;
- each try of a job is a CONSUMER span `process <queue>`, a child of that producer span (so
  the retries of a request's job stay in the request's trace) and linked to it; the task's
  HTTP, SQL and SMTP calls nest under it;
- the attributes: messaging.system "postroom", messaging.destination.name (the queue),
  messaging.message.id (the job id), messaging.operation.type/name, postroom.task; a try's
  also messaging.destination.partition.id, postroom.try and, once it ended, postroom.outcome
  (with postroom.retry_in_s or postroom.dead_letter.reason; a failed try's span has status
  ERROR and the error's type).

The tracer provider is the process's global one when the application set one up (an SDK
`TracerProvider`); otherwise one is installed here exporting as `POSTROOM_TRACING_EXPORTER`
says: OTLP over HTTP (`OTEL_EXPORTER_OTLP_ENDPOINT`, default http://localhost:4318), the
console, or nothing. While tracing is on, every log record made inside a span carries its
`trace_id` and `span_id` (logs.py prints them).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from config.settings import PostroomSettings
from workers.error_text import shown

if TYPE_CHECKING:
    from config.queues import QueueName
    from workers.store.enqueue import NewJob
    from workers.store.keys import QueueKeys
    from workers.store.outcome import RunOutcome

logger = logging.getLogger(__name__)

TRACER_NAME = "postroom"
SYSTEM = "postroom"
# The trace context a job carries is W3C's alone: baggage (the global propagator's other
# half) could carry anything the request had, and a job record is not the place for it.
PROPAGATOR = TraceContextTextMapPropagator()
# A try that ended so is a failed one: its span's status is ERROR.
FAILED = frozenset({"retried", "dead_lettered"})


def _provider(exporter: str) -> TracerProvider:
    """A tracer provider exporting as `POSTROOM_TRACING_EXPORTER` says."""
    # OTEL_SERVICE_NAME (or OTEL_RESOURCE_ATTRIBUTES) names the service when set.
    named = os.environ.get("OTEL_SERVICE_NAME") or "service.name" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    provider = TracerProvider(resource=Resource.create({} if named else {SERVICE_NAME: SYSTEM}))
    if exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    elif exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    return provider


def _log_ids(previous: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    """A log record factory adding the current span's trace and span ids to each record."""

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            record.trace_id = trace.format_trace_id(span.trace_id)
            record.span_id = trace.format_span_id(span.span_id)
        return record

    return factory


class Tracing:
    """This process's tracing: the spans of enqueues, runs and calls."""

    def __init__(self, tracer: trace.Tracer, *, details: bool = False) -> None:
        self.tracer = tracer
        # Whether a failed try's span quotes its exception, as the logs do (error_text.py).
        self.details = details
        self._instrumented = False
        self._record_factory = logging.getLogRecordFactory()
        logging.setLogRecordFactory(_log_ids(self._record_factory))

    @classmethod
    def start(cls, settings: PostroomSettings) -> Tracing:
        """Use the application's tracer provider, or install one (see the module's doc)."""
        if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):  # none set
            trace.set_tracer_provider(_provider(settings.tracing_exporter))
            logger.info("tracing on: exporting spans to %s", settings.tracing_exporter)
        return cls(trace.get_tracer(TRACER_NAME), details=settings.error_details)

    def instrument_libraries(self) -> None:
        """Spans for the tasks' HTTP (httpx) and SQL (SQLAlchemy) calls, in this process."""
        if self._instrumented:
            return
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        HTTPXClientInstrumentor().instrument()
        # Its declared range ends below SQLAlchemy 2.1, whose engine events (all it hooks)
        # are 2.0's: tests/webapp/test_tracing.py sees the statements' spans.
        SQLAlchemyInstrumentor().instrument(skip_dep_check=True)
        self._instrumented = True

    def uninstrument_libraries(self) -> None:
        logging.setLogRecordFactory(self._record_factory)
        if not self._instrumented:
            return
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        HTTPXClientInstrumentor().uninstrument()
        SQLAlchemyInstrumentor().uninstrument()
        self._instrumented = False

    def instrument_app(self, app: Any) -> None:
        """A server span per request of a FastAPI (or Starlette) app."""
        from fastapi import FastAPI

        if isinstance(app, FastAPI):
            from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

            FastAPIInstrumentor.instrument_app(app)
            return
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        app.add_middleware(OpenTelemetryMiddleware)

    async def sent(
        self, jobs: Sequence[NewJob], write: Callable[[list[NewJob]], Awaitable[list[bool]]]
    ) -> list[bool]:
        """Write `jobs` (as `write` does) each under its PRODUCER span, whose trace context
        each job carries; a span says whether its job was new (`postroom.created`)."""
        spans = [
            self.tracer.start_span(
                f"send {job.keys.queue_name.value}",
                kind=SpanKind.PRODUCER,
                attributes={
                    "messaging.system": SYSTEM,
                    "messaging.destination.name": job.keys.queue_name.value,
                    "messaging.message.id": job.job_id,
                    "messaging.operation.type": "send",
                    "messaging.operation.name": "send",
                    "postroom.task": job.task,
                },
            )
            for job in jobs
        ]
        traced = [replace(job, trace=carrier(span)) for job, span in zip(jobs, spans, strict=True)]
        try:
            created = await write(traced)
        except BaseException as exc:
            for span in spans:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                span.end()
            raise
        for span, new in zip(spans, created, strict=True):
            span.set_attribute("postroom.created", new)
            span.end()
        return created

    async def run(
        self,
        job: Awaitable[RunOutcome],
        queue: QueueName,
        ctx: dict[str, Any],
        keys: QueueKeys,
        name: str,
        trace_context: Mapping[str, str] | None,
    ) -> RunOutcome:
        """Await one try of a job (`job`, its run not yet started) under its CONSUMER span
        (see the module's doc)."""
        parent = PROPAGATOR.extract(trace_context) if trace_context else None
        producer = trace.get_current_span(parent).get_span_context() if parent else None
        links = [Link(producer)] if producer is not None and producer.is_valid else None
        with self.tracer.start_as_current_span(
            f"process {queue.value}",
            context=parent if links else otel_context.Context(),
            kind=SpanKind.CONSUMER,
            links=links,
            attributes={
                "messaging.system": SYSTEM,
                "messaging.destination.name": queue.value,
                "messaging.message.id": ctx["job_id"],
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "messaging.destination.partition.id": str(keys.partition),
                "postroom.task": name,
                "postroom.try": ctx["job_try"],
            },
        ) as span:
            outcome = await job
            span.set_attribute("postroom.outcome", outcome.kind)
            if outcome.retry_in_s:
                span.set_attribute("postroom.retry_in_s", outcome.retry_in_s)
            if outcome.letter is not None:
                span.set_attribute("postroom.dead_letter.reason", outcome.letter.reason)
            error = outcome.exception
            if outcome.kind in FAILED and error is not None:
                span.set_attribute("error.type", type(error).__qualname__)
                event = {"exception.type": type(error).__qualname__}
                span.add_event(
                    "exception", {**event, "exception.message": shown(error, details=self.details)}
                )
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            return outcome

    @contextmanager
    def client_span(self, name: str, attributes: Mapping[str, str | int]) -> Iterator[None]:
        with self.tracer.start_as_current_span(name, kind=SpanKind.CLIENT, attributes=attributes):
            yield

    @contextmanager
    def producing(self, name: str, attributes: Mapping[str, str | int]) -> Iterator[dict[str, str]]:
        """A PRODUCER span for a message sent while the block runs; yields its W3C trace
        context, for the message's headers."""
        with self.tracer.start_as_current_span(
            name, kind=SpanKind.PRODUCER, attributes=attributes
        ) as span:
            yield carrier(span)

    @contextmanager
    def consumed(
        self, name: str, headers: Mapping[str, Any], attributes: Mapping[str, str | int]
    ) -> Iterator[None]:
        """A CONSUMER span for a message received with `headers`, child of and linked to the
        span that sent it (when they carry its trace context)."""
        parent = PROPAGATOR.extract(text_headers(headers))
        sender = trace.get_current_span(parent).get_span_context()
        valid = sender.is_valid
        with self.tracer.start_as_current_span(
            name,
            context=parent if valid else otel_context.Context(),
            kind=SpanKind.CONSUMER,
            links=[Link(sender)] if valid else None,
            attributes=attributes,
        ):
            yield


def text_headers(headers: Mapping[str, Any]) -> dict[str, str]:
    """The trace context of a message's headers as text (AMQP may hand strings as bytes)."""
    found: dict[str, str] = {}
    for name in ("traceparent", "tracestate"):
        value = headers.get(name)
        if isinstance(value, bytes):
            value = value.decode("ascii", "replace")
        if isinstance(value, str):
            found[name] = value
    return found


def carrier(span: trace.Span) -> dict[str, str]:
    """`span`'s W3C trace context: `traceparent`, and `tracestate` when it has one."""
    found: dict[str, str] = {}
    PROPAGATOR.inject(found, context=trace.set_span_in_context(span))
    return found
