"""One request to the example app, followed in one trace: the HTTP server span, the enqueue's
producer span, the job's two tries (the first failing at a real local HTTP provider, the retry
succeeding) and the provider calls nested under them, with SQLAlchemy's statements too."""

from __future__ import annotations

from collections.abc import Sequence

import httpx
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from pytest_httpserver import HTTPServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from config.notify import PushSettings
from config.queues import QueueName
from config.settings import PostroomSettings
from examples.webapp.app import create_app
from tasks.message_notification import send_notification
from tests.conftest import running_worker
from tests.tasks.conftest import fast_retries
from tests.traces import named
from tests.webapp.test_lifespan import serving
from workers.client import PostroomClient
from workers.integrations.asgi import trace_requests

NOTIFY = {
    "recipientId": "u1",
    "type": "push",
    "title": "Hello $name",
    "message": "a push body",
    "variables": {"name": "Ada"},
    "to": "device-1",
    "notificationId": "n-traced",
}


def _parent_of(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def _id(span: ReadableSpan) -> int:
    assert span.context is not None
    span_id: int = span.context.span_id
    return span_id


def _attribute(span: ReadableSpan, stable: str, old: str) -> object:
    """An attribute by its stable semantic-convention name or the older one (which the
    instrumentations still write unless OTEL_SEMCONV_STABILITY_OPT_IN asks otherwise)."""
    attributes = span.attributes or {}
    return attributes.get(stable, attributes.get(old))


def _under(span: ReadableSpan, ancestor: ReadableSpan, spans: Sequence[ReadableSpan]) -> bool:
    """Whether `ancestor` is on the way from `span` up to its trace's root."""
    by_id = {_id(s): s for s in spans}
    parent = _parent_of(span)
    while parent is not None:
        if parent == _id(ancestor):
            return True
        up = by_id.get(parent)
        parent = None if up is None else _parent_of(up)
    return False


async def test_tracing_one_request_to_the_example_app_is_one_trace_through_its_job_and_retry(
    traced_settings: PostroomSettings,
    span_exporter: InMemorySpanExporter,
    httpserver: HTTPServer,
) -> None:
    # The push gateway is unavailable once, then takes the notification.
    httpserver.expect_ordered_request("/push", method="POST").respond_with_data("", status=503)
    httpserver.expect_ordered_request("/push", method="POST").respond_with_json({"id": "p1"})
    settings = traced_settings.model_copy(
        update={
            "push": PushSettings.model_validate({"url": httpserver.url_for("/push")}),
            "queues": fast_retries(),
        }
    )
    worker = running_worker(settings, queues=[QueueName.NOTIFICATION])
    async with worker, serving(create_app(settings)) as address:
        async with httpx.AsyncClient(base_url=f"http://{address}") as http:
            response = await http.post("/notifications", json=NOTIFY)
        assert response.status_code == 202, response.text
        job_id = response.json()["jobId"]
        async with await PostroomClient.connect(settings) as client:
            sent = await client.job(job_id, send_notification).result(timeout=30)
    assert sent.notification_id == "n-traced"
    assert len(httpserver.log) == 2

    spans = span_exporter.get_finished_spans()
    [server] = [s for s in spans if s.kind is SpanKind.SERVER]
    assert server.name == "POST /notifications"
    assert server.context is not None
    trace_id = server.context.trace_id
    in_trace = [s for s in spans if s.context is not None and s.context.trace_id == trace_id]

    [send] = named(in_trace, "send message-notification")
    assert send.kind is SpanKind.PRODUCER and _under(send, server, in_trace)
    assert send.attributes is not None and send.attributes["messaging.message.id"] == job_id

    tries = named(in_trace, "process message-notification")
    assert [s.attributes and s.attributes["postroom.outcome"] for s in tries] == [
        "retried",
        "completed",
    ]
    for number, run in enumerate(tries, 1):
        assert run.kind is SpanKind.CONSUMER and _parent_of(run) == _id(send)
        assert run.attributes is not None and run.attributes["postroom.try"] == number
        assert [link.context.span_id for link in run.links] == [_id(send)]
    assert tries[0].status.status_code is StatusCode.ERROR

    # Each try's call to the provider nests under it, with the provider's answer.
    for run, status in zip(tries, (503, 200), strict=True):
        children = [s for s in in_trace if s.kind is SpanKind.CLIENT and _parent_of(s) == _id(run)]
        [call] = [s for s in children if _attribute(s, "url.full", "http.url")]
        assert call.name == "POST"
        assert _attribute(call, "url.full", "http.url") == httpserver.url_for("/push")
        assert _attribute(call, "http.response.status_code", "http.status_code") == status
    # So do the task's statements to the message store (SQLAlchemy's spans).
    for run in tries:
        statements = [s for s in in_trace if _parent_of(s) == _id(run) and s is not run]
        systems = {_attribute(s, "db.system.name", "db.system") for s in statements}
        assert "sqlite" in systems, [s.name for s in statements]


async def test_tracing_a_starlette_app_gets_a_server_span_per_request(
    traced_settings: PostroomSettings, span_exporter: InMemorySpanExporter
) -> None:
    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello")

    app = Starlette(routes=[Route("/hello", hello)])
    trace_requests(app, traced_settings)
    async with serving(app) as address, httpx.AsyncClient(base_url=f"http://{address}") as http:
        assert (await http.get("/hello")).text == "hello"
    [server] = [s for s in span_exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert _attribute(server, "url.path", "http.target") == "/hello"


def test_tracing_off_trace_requests_leaves_the_app_as_it_was(settings: PostroomSettings) -> None:
    app = Starlette(routes=[])
    trace_requests(app, settings)
    assert app.user_middleware == []
