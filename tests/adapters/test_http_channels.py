"""Push and SMS channels against a real local HTTP server (pytest-httpserver)."""

from __future__ import annotations

import base64
import email.utils
import time

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from config.notify import PushSettings, SmsSettings
from tasks.notify import (
    ChannelNotConfigured,
    ProviderRejected,
    ProviderThrottled,
    ProviderUnavailable,
    PushChannel,
    RenderedMessage,
    SmsChannel,
)
from workers.errors import PermanentError, RateLimited

TOKEN = "push-token-do-not-leak"
API_KEY = "sms-key-do-not-leak"
DEVICE = "device-token-123"
MESSAGE = RenderedMessage(title="Your code", body="secret body 4711")


def push_settings(server: HTTPServer, **overrides: object) -> PushSettings:
    return PushSettings.model_validate({"url": server.url_for("/push"), "token": TOKEN} | overrides)


def sms_settings(server: HTTPServer, **overrides: object) -> SmsSettings:
    values = {"url": server.url_for("/sms"), "api_key": API_KEY, "sender": "Postroom"}
    return SmsSettings.model_validate(values | overrides)


def assert_nothing_leaked(text: str) -> None:
    for secret in (TOKEN, API_KEY, MESSAGE.body, DEVICE):
        assert secret not in text


async def test_push_posts_json_with_the_bearer_token(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request("/push", method="POST").respond_with_json({"id": "n1"})
    async with PushChannel(push_settings(httpserver)) as push:
        await push.send(DEVICE, MESSAGE, data={"message_id": "m1"})
    request, _ = httpserver.log[0]
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"] == "application/json"
    assert request.get_json() == {
        "to": DEVICE,
        "title": "Your code",
        "body": "secret body 4711",
        "data": {"message_id": "m1"},
    }


async def test_sms_posts_a_form_with_basic_auth(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request("/sms", method="POST").respond_with_data("", status=201)
    async with SmsChannel(sms_settings(httpserver, username="AC123")) as sms:
        await sms.send("+15550100", MESSAGE)
    request, _ = httpserver.log[0]
    credentials = base64.b64encode(f"AC123:{API_KEY}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {credentials}"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.form.to_dict() == {
        "to": "+15550100",
        "body": "secret body 4711",
        "from": "Postroom",
    }


async def test_sms_sends_an_api_key_alone_as_a_bearer_token(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request("/sms", method="POST").respond_with_data("ok")
    async with SmsChannel(sms_settings(httpserver, sender=None)) as sms:
        await sms.send("+15550100", MESSAGE)
    request, _ = httpserver.log[0]
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert "from" not in request.form


async def test_a_server_error_is_retryable_then_the_retry_succeeds(
    httpserver: HTTPServer, notify_logs: pytest.LogCaptureFixture
) -> None:
    httpserver.expect_ordered_request("/push").respond_with_data(MESSAGE.body, status=500)
    httpserver.expect_ordered_request("/push").respond_with_json({"id": "n1"})
    async with PushChannel(push_settings(httpserver)) as push:
        with pytest.raises(ProviderUnavailable) as caught:
            await push.send(DEVICE, MESSAGE)
        await push.send(DEVICE, MESSAGE)
    error = caught.value
    assert not isinstance(error, PermanentError)
    assert error.status == 500
    provider = f"{httpserver.host}:{httpserver.port}"
    assert error.provider == provider
    assert str(error) == f"push provider {provider}: unavailable, HTTP 500"
    assert len(httpserver.log) == 2
    assert "HTTP 500" in notify_logs.text
    assert_nothing_leaked(notify_logs.text)


@pytest.mark.parametrize("status", [400, 401, 404, 422])
async def test_a_client_error_is_a_permanent_rejection(
    httpserver: HTTPServer, notify_logs: pytest.LogCaptureFixture, status: int
) -> None:
    # The provider echoes the message back: that echo must not reach errors or logs either.
    answer = f"invalid message {MESSAGE.body} for {DEVICE}"
    httpserver.expect_oneshot_request("/sms").respond_with_data(answer, status=status)
    async with SmsChannel(sms_settings(httpserver)) as sms:
        with pytest.raises(ProviderRejected) as caught:
            await sms.send(DEVICE, MESSAGE)
    assert isinstance(caught.value, PermanentError)
    assert caught.value.status == status
    assert f"HTTP {status}" in str(caught.value)
    assert f"{httpserver.host}:{httpserver.port}" in str(caught.value)
    assert_nothing_leaked(str(caught.value))
    assert_nothing_leaked(notify_logs.text)


@pytest.mark.parametrize("status", [429, 503])
async def test_throttling_and_outages_are_retryable(httpserver: HTTPServer, status: int) -> None:
    httpserver.expect_oneshot_request("/sms").respond_with_data("slow down", status=status)
    async with SmsChannel(sms_settings(httpserver)) as sms:
        with pytest.raises(ProviderUnavailable) as caught:
            await sms.send("+15550100", MESSAGE)
    assert caught.value.status == status


@pytest.mark.parametrize(
    ("header", "low", "high"),
    [("7", 7, 7), (" 0 ", 0, 0), ("http-date", 25, 30)],
)
async def test_rate_limit_429_with_retry_after_is_provider_throttled(
    httpserver: HTTPServer, header: str, low: float, high: float
) -> None:
    if header == "http-date":  # half a minute from now, as an HTTP date
        header = email.utils.formatdate(time.time() + 30, usegmt=True)
    httpserver.expect_oneshot_request("/sms").respond_with_data(
        "slow down", status=429, headers={"Retry-After": header}
    )
    async with SmsChannel(sms_settings(httpserver)) as sms:
        with pytest.raises(ProviderThrottled) as caught:
            await sms.send("+15550100", MESSAGE)
    assert isinstance(caught.value, RateLimited) and isinstance(caught.value, ProviderUnavailable)
    assert low <= caught.value.retry_after <= high
    assert caught.value.status == 429
    assert_nothing_leaked(str(caught.value))


async def test_rate_limit_429_with_an_unreadable_retry_after_is_retried(
    httpserver: HTTPServer,
) -> None:
    httpserver.expect_oneshot_request("/sms").respond_with_data(
        "slow down", status=429, headers={"Retry-After": "soon"}
    )
    async with SmsChannel(sms_settings(httpserver)) as sms:
        with pytest.raises(ProviderUnavailable) as caught:
            await sms.send("+15550100", MESSAGE)
    assert not isinstance(caught.value, RateLimited)


async def test_a_refused_connection_is_retryable(
    closed_port: int, notify_logs: pytest.LogCaptureFixture
) -> None:
    settings = PushSettings.model_validate(
        {"url": f"http://127.0.0.1:{closed_port}/push", "token": TOKEN}
    )
    async with PushChannel(settings) as push:
        with pytest.raises(ProviderUnavailable, match="connection failed") as caught:
            await push.send(DEVICE, MESSAGE)
    assert caught.value.status is None
    assert f"127.0.0.1:{closed_port}" in str(caught.value)
    assert_nothing_leaked(str(caught.value))
    assert_nothing_leaked(notify_logs.text)


async def test_a_timeout_is_retryable(httpserver: HTTPServer) -> None:
    def slow(request: Request) -> Response:
        time.sleep(0.5)
        return Response("late")

    httpserver.expect_oneshot_request("/push").respond_with_handler(slow)
    async with PushChannel(push_settings(httpserver, timeout=0.1)) as push:
        with pytest.raises(ProviderUnavailable, match="timed out"):
            await push.send(DEVICE, MESSAGE)


async def test_an_unconfigured_channel_fails_permanently() -> None:
    async with PushChannel(PushSettings()) as push:
        with pytest.raises(ChannelNotConfigured, match=r"PushSettings\.url"):
            await push.send(DEVICE, MESSAGE)
    async with SmsChannel(SmsSettings()) as sms:
        with pytest.raises(PermanentError, match="sms channel is not configured"):
            await sms.send("+15550100", MESSAGE)


async def test_aclose_is_idempotent(httpserver: HTTPServer) -> None:
    push = PushChannel(push_settings(httpserver))
    await push.aclose()
    await push.aclose()
