"""Push and SMS through HTTP providers, each channel with one pooled `httpx.AsyncClient`.

Answers are classified for the runtime: 2xx delivered; 429 with a Retry-After (seconds or an
HTTP date) is ProviderThrottled (the job is deferred by that long without spending a try);
408, 425, 429 without one and 5xx, timeouts and connection errors are ProviderUnavailable
(retried with backoff); any other status (4xx, and a
3xx, which means a wrong URL since redirects are not followed) is ProviderRejected
(dead-lettered). Neither the provider's answer body nor ours is kept in errors or logs: either
may echo the message or a credential. Failures are logged at INFO only: the runtime already
logs each failed try with the exception's message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

import httpx
from pydantic import AnyHttpUrl

from config.notify import PushSettings, SmsSettings
from tasks.notify.channel import Channel
from tasks.notify.errors import (
    ChannelNotConfigured,
    ProviderRejected,
    ProviderThrottled,
    ProviderUnavailable,
)
from tasks.notify.templates import RenderedMessage

RETRYABLE_STATUSES = frozenset({408, 425, 429})

logger = logging.getLogger(__name__)


def retry_after(value: str | None) -> float | None:
    """A Retry-After header's wait in seconds (delta-seconds or an HTTP date), None if it
    is missing or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _provider_name(url: httpx.URL) -> str:
    return f"{url.host}:{url.port}" if url.port else url.host


class HttpChannel(Channel):
    """POSTs to one provider URL; subclasses build the request."""

    channel: ClassVar[str]
    setting: ClassVar[str]  # names the unset URL in the "not configured" error

    def __init__(
        self,
        url: AnyHttpUrl | None,
        *,
        timeout: float,
        auth: httpx.Auth | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._url = httpx.URL(str(url)) if url is not None else None
        self.provider = _provider_name(self._url) if self._url is not None else None
        self._client = (
            httpx.AsyncClient(timeout=timeout, auth=auth, headers=headers, follow_redirects=False)
            if self._url is not None
            else None
        )

    async def _post(self, **content: Any) -> None:
        if self._client is None or self._url is None or self.provider is None:
            raise ChannelNotConfigured(
                f"the {self.channel} channel is not configured ({self.setting})"
            )
        try:
            response = await self._client.post(self._url, **content)
        except httpx.TimeoutException as exc:
            error = ProviderUnavailable(
                self.channel, self.provider, None, f"timed out ({type(exc).__name__})"
            )
            logger.info("%s", error)
            raise error from exc
        except httpx.TransportError as exc:
            error = ProviderUnavailable(
                self.channel, self.provider, None, f"connection failed ({type(exc).__name__})"
            )
            logger.info("%s", error)
            raise error from exc
        self._raise_for_status(self.provider, response)

    def _raise_for_status(self, provider: str, response: httpx.Response) -> None:
        status = response.status_code
        if 200 <= status < 300:
            logger.debug("%s sent via %s: HTTP %d", self.channel, provider, status)
            return
        wait = retry_after(response.headers.get("retry-after")) if status == 429 else None
        if wait is not None:
            throttled = ProviderThrottled(self.channel, provider, wait)
            logger.info("%s", throttled)
            raise throttled
        if status >= 500 or status in RETRYABLE_STATUSES:
            unavailable = ProviderUnavailable(
                self.channel, provider, status, f"unavailable, HTTP {status}"
            )
            logger.info("%s", unavailable)
            raise unavailable
        rejected = ProviderRejected(self.channel, provider, status, f"rejected, HTTP {status}")
        logger.info("%s", rejected)
        raise rejected

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


class PushChannel(HttpChannel):
    """JSON `{"to", "title", "body", "data"?}` to a push gateway; `to` is the device token."""

    channel = "push"
    setting = "PushSettings.url is not set"

    def __init__(self, settings: PushSettings) -> None:
        token = settings.token.get_secret_value() if settings.token else None
        super().__init__(
            settings.url,
            timeout=settings.timeout,
            headers={"Authorization": f"Bearer {token}"} if token else None,
        )

    async def send(
        self, recipient: str, message: RenderedMessage, *, data: Mapping[str, str] | None = None
    ) -> None:
        payload: dict[str, Any] = {"to": recipient, "title": message.title, "body": message.body}
        if data:
            payload["data"] = dict(data)
        await self._post(json=payload)


class SmsChannel(HttpChannel):
    """Form `to`, `body` and (when configured) `from` to an SMS provider; the title is unused."""

    channel = "sms"
    setting = "SmsSettings.url is not set"

    def __init__(self, settings: SmsSettings) -> None:
        api_key = settings.api_key.get_secret_value() if settings.api_key else None
        auth: httpx.Auth | None = None
        headers: dict[str, str] | None = None
        if settings.username is not None:
            auth = httpx.BasicAuth(settings.username, api_key or "")
        elif api_key:
            headers = {"Authorization": f"Bearer {api_key}"}
        super().__init__(settings.url, timeout=settings.timeout, auth=auth, headers=headers)
        self.sender = settings.sender

    async def send(self, recipient: str, message: RenderedMessage) -> None:
        form = {"to": recipient, "body": message.body}
        if self.sender:
            form["from"] = self.sender
        await self._post(data=form)
