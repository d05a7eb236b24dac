"""E-mail through an SMTP server with aiosmtplib, one connection per message.

A connection per message leaves the channel without session state to go stale (servers drop
idle sessions, and a half-dead pooled one turns into spurious retries); at notification
volumes the handshake is cheap. SMTP reply codes decide the outcome: 5xx is ProviderRejected,
4xx and lost or refused connections are ProviderUnavailable. Errors carry the server's short
reply text (it says which rule refused the mail) but never the message or the password.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr

import aiosmtplib
from aiosmtplib.protocol import SMTPProtocol

from config.errors import ConfigError
from config.notify import SmtpSettings
from tasks.notify.channel import Channel
from tasks.notify.errors import (
    ChannelNotConfigured,
    InvalidRecipient,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
)
from tasks.notify.templates import RenderedMessage
from workers import client_span

REPLY_LIMIT = 200

logger = logging.getLogger(__name__)


def _address(value: str) -> str:
    """The bare address of `value` ("Name <a@b>" or "a@b"); InvalidRecipient if it has none."""
    address = parseaddr(value)[1]
    if "\r" in value or "\n" in value or "@" not in address:
        raise InvalidRecipient("not a usable e-mail address")
    return address


def build_message(sender: str, recipient: str, message: RenderedMessage) -> EmailMessage:
    """A plain-text e-mail; the title, flattened to one line, is the subject."""
    email = EmailMessage()
    email["From"] = sender
    email["To"] = recipient
    email["Subject"] = " ".join(message.title.splitlines())
    email["Date"] = format_datetime(datetime.now(UTC))
    # A domain of our own: the default would ask DNS for this machine's name on every message.
    email["Message-ID"] = make_msgid(
        domain=parseaddr(sender)[1].rpartition("@")[2] or "postroom.invalid"
    )
    email.set_content(message.body)
    return email


async def _closed(connection: SMTPProtocol | None, limit: float) -> None:
    """Wait, at most `limit` seconds, until the connection's socket is closed.

    Closing a TLS connection takes a round trip (close_notify), and closing any transport takes
    a turn of the loop: a caller that moves on at once (a worker shutting down, a test's loop
    ending) would otherwise leave the socket open. The protocol drops its transport when the
    connection is lost, after the socket was closed.
    """
    await asyncio.sleep(0)
    if connection is None:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    # aiosmtplib offers no event for it; noqa: a bounded poll of its public state.
    while connection.transport is not None and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.005)


class _SMTP(aiosmtplib.SMTP):
    """aiosmtplib's client, remembering its connection even when connecting fails part-way
    (a refused STARTTLS handshake), so that `_closed` can wait for that socket too."""

    connection: SMTPProtocol | None = None

    # The timeout parameter (ASYNC109) is aiosmtplib's own signature, overridden.
    async def _create_connection(
        self,
        timeout: float | None,  # noqa: ASYNC109
    ) -> aiosmtplib.SMTPResponse:
        response = await super()._create_connection(timeout)
        self.connection = self.protocol
        return response


def _reply(text: str) -> str:
    return " ".join(text.split())[:REPLY_LIMIT]


class EmailChannel(Channel):
    """Sends as `settings.sender`; STARTTLS is required unless the settings turn it off."""

    channel = "email"

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self.provider = f"{settings.host}:{settings.effective_port}" if settings.host else None
        self._tls_context: ssl.SSLContext | None = None
        if settings.ca_file is not None:
            try:
                self._tls_context = ssl.create_default_context(cafile=str(settings.ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(
                    f"SmtpSettings.ca_file: cannot load {settings.ca_file}: {exc}"
                ) from None

    async def send(self, recipient: str, message: RenderedMessage) -> None:
        settings = self.settings
        if settings.host is None or self.provider is None:
            raise ChannelNotConfigured("the email channel is not configured (SmtpSettings.host)")
        sender_header = settings.sender or ""
        try:
            sender = _address(sender_header)
        except InvalidRecipient:
            raise ChannelNotConfigured(
                "the email channel has no sender address (SmtpSettings.sender)"
            ) from None
        address = _address(recipient)
        email = build_message(sender_header, recipient, message)
        smtp = _SMTP(
            hostname=settings.host,
            port=settings.effective_port,
            use_tls=settings.use_tls,
            start_tls=settings.uses_starttls,
            tls_context=self._tls_context,
            username=settings.username,
            password=settings.password.get_secret_value() if settings.password else None,
            timeout=settings.timeout,
        )
        # No instrumentation covers aiosmtplib: the session is a client span of its own.
        span: dict[str, str | int] = {
            "network.protocol.name": "smtp",
            "server.address": settings.host,
            "server.port": settings.effective_port,
        }
        with client_span("smtp send", span):
            try:
                async with smtp:
                    await smtp.send_message(email, sender=sender, recipients=[address])
            except (aiosmtplib.SMTPException, OSError) as exc:
                error = self._classify(self.provider, exc)
                logger.info("%s", error.said)  # the job's line may add the server's reply
                raise error from exc
            finally:
                await _closed(smtp.connection, settings.timeout)
        logger.debug("email sent via %s", self.provider)

    def _classify(self, provider: str, exc: aiosmtplib.SMTPException | OSError) -> ProviderError:
        if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
            exc = exc.recipients[0]
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            code, reply = exc.code, _reply(exc.message)
            if 500 <= code < 600:
                return ProviderRejected(
                    self.channel, provider, code, f"rejected, SMTP {code}", reply
                )
            return ProviderUnavailable(
                self.channel, provider, code, f"unavailable, SMTP {code}", reply
            )
        if isinstance(exc, OSError):  # refused, lost, timed out, TLS handshake failed
            detail = f"{type(exc).__name__}: {_reply(str(exc))}"
            return ProviderUnavailable(self.channel, provider, None, f"unavailable, {detail}")
        # The server lacks what the settings require (STARTTLS, AUTH, SMTPUTF8): a retry
        # would meet the same server.
        return ProviderRejected(self.channel, provider, None, f"rejected, {_reply(str(exc))}")
