"""OpenTelemetry's in-memory exporter behind the test process's tracer provider, and settings
with tracing on (a pytest plugin: see conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from config.settings import PostroomSettings
from workers.observe.trace_gate import stop_tracing


@pytest.fixture(scope="session")
def span_exporter() -> InMemorySpanExporter:
    """Every span this process ends, as the application's own provider would export it (a
    provider is set once per process: the first test that traces sets it for the session)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture
def traced_settings(
    settings: PostroomSettings, span_exporter: InMemorySpanExporter
) -> Iterator[PostroomSettings]:
    """The test's settings with POSTROOM_TRACING on; tracing is undone after the test."""
    span_exporter.clear()
    try:
        yield settings.model_copy(update={"tracing": True})
    finally:
        stop_tracing()
        span_exporter.clear()


def named(spans: tuple[ReadableSpan, ...] | list[ReadableSpan], name: str) -> list[ReadableSpan]:
    """The spans called `name`, in the order they started."""
    return sorted((s for s in spans if s.name == name), key=lambda s: s.start_time or 0)
