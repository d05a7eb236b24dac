"""The e-mail channel against a real aiosmtpd server: STARTTLS with a private CA, and AUTH."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from config.errors import ConfigError
from config.notify import SmtpSettings
from tasks.notify import (
    ChannelNotConfigured,
    EmailChannel,
    InvalidRecipient,
    ProviderRejected,
    ProviderUnavailable,
    RenderedMessage,
)
from tests.mail_server import SMTP_PASSWORD, SMTP_USER, SmtpServer
from workers.errors import PermanentError

MESSAGE = RenderedMessage(title="Your code", body="Hello Ada,\n\nyour code is 4711. Grüße!\n")


def smtp_settings(server: SmtpServer, ca_file: Path | None, **overrides: object) -> SmtpSettings:
    values = {
        "host": "127.0.0.1",
        "port": server.port,
        "username": SMTP_USER,
        "password": SMTP_PASSWORD,
        "sender": "Postroom <noreply@example.com>",
        "ca_file": ca_file,
        "timeout": 5,
    }
    return SmtpSettings.model_validate(values | overrides)


async def test_a_message_is_delivered_over_starttls_with_auth(
    smtp_server: SmtpServer, ca_file: Path
) -> None:
    async with EmailChannel(smtp_settings(smtp_server, ca_file)) as channel:
        await channel.send("Ada Lovelace <ada@example.com>", MESSAGE)

    [received] = smtp_server.received
    assert received.tls
    assert received.authenticated
    assert received.mail_from == "noreply@example.com"
    assert received.rcpt_tos == ["ada@example.com"]
    message = received.message
    assert message["From"] == "Postroom <noreply@example.com>"
    assert message["To"] == "Ada Lovelace <ada@example.com>"
    assert message["Subject"] == "Your code"
    assert message["Message-ID"].endswith("@example.com>")
    assert message["Date"]
    assert message.get_content_type() == "text/plain"
    assert message.get_content().replace("\r\n", "\n") == MESSAGE.body  # CRLF on the wire


async def test_a_multi_line_title_becomes_a_one_line_subject(
    smtp_server: SmtpServer, ca_file: Path
) -> None:
    async with EmailChannel(smtp_settings(smtp_server, ca_file)) as channel:
        await channel.send("ada@example.com", RenderedMessage("Your\ncode\r\nBcc: x@y.z", "b"))
    [received] = smtp_server.received
    assert received.message["Subject"] == "Your code Bcc: x@y.z"
    assert received.message["Bcc"] is None


async def test_a_550_for_the_recipient_is_a_permanent_rejection(
    smtp_server: SmtpServer, ca_file: Path, notify_logs: pytest.LogCaptureFixture
) -> None:
    async with EmailChannel(smtp_settings(smtp_server, ca_file)) as channel:
        with pytest.raises(ProviderRejected) as caught:
            await channel.send("reject@example.com", MESSAGE)
    error = caught.value
    assert isinstance(error, PermanentError)
    assert error.status == 550
    assert str(error) == (
        f"email provider 127.0.0.1:{smtp_server.port}: rejected, SMTP 550 5.1.1 mailbox unavailable"
    )
    assert smtp_server.received == []
    for text in (str(error), notify_logs.text):
        assert SMTP_PASSWORD not in text
        assert "4711" not in text


async def test_a_451_is_retryable(smtp_server: SmtpServer, ca_file: Path) -> None:
    async with EmailChannel(smtp_settings(smtp_server, ca_file)) as channel:
        with pytest.raises(ProviderUnavailable) as caught:
            await channel.send("busy@example.com", MESSAGE)
    assert not isinstance(caught.value, PermanentError)
    assert caught.value.status == 451


async def test_wrong_credentials_are_a_permanent_rejection(
    smtp_server: SmtpServer, ca_file: Path
) -> None:
    settings = smtp_settings(smtp_server, ca_file, password="wrong-password")
    async with EmailChannel(settings) as channel:
        with pytest.raises(ProviderRejected) as caught:
            await channel.send("ada@example.com", MESSAGE)
    assert caught.value.status == 535
    assert "wrong-password" not in str(caught.value)


async def test_an_untrusted_certificate_is_refused(smtp_server: SmtpServer) -> None:
    # Without the test CA, the system's CAs cannot verify the server: no mail goes out.
    settings = smtp_settings(smtp_server, ca_file=None)
    async with EmailChannel(settings) as channel:
        with pytest.raises(ProviderUnavailable, match="certificate verify failed"):
            await channel.send("ada@example.com", MESSAGE)
    assert smtp_server.received == []


async def test_a_refused_connection_is_retryable(closed_port: int, ca_file: Path) -> None:
    settings = SmtpSettings(host="127.0.0.1", port=closed_port, sender="a@example.com")
    async with EmailChannel(settings) as channel:
        with pytest.raises(ProviderUnavailable, match=f"127.0.0.1:{closed_port}") as caught:
            await channel.send("ada@example.com", MESSAGE)
    assert caught.value.status is None


async def test_unconfigured_and_unusable_addresses_fail_permanently(
    smtp_server: SmtpServer, ca_file: Path
) -> None:
    async with EmailChannel(SmtpSettings()) as channel:
        with pytest.raises(ChannelNotConfigured, match=r"SmtpSettings\.host"):
            await channel.send("ada@example.com", MESSAGE)
    async with EmailChannel(smtp_settings(smtp_server, ca_file, sender=None)) as channel:
        with pytest.raises(ChannelNotConfigured, match=r"SmtpSettings\.sender"):
            await channel.send("ada@example.com", MESSAGE)
    async with EmailChannel(smtp_settings(smtp_server, ca_file)) as channel:
        for recipient in ("not an address", "ada@example.com\r\nBcc: eve@example.com"):
            with pytest.raises(InvalidRecipient):
                await channel.send(recipient, MESSAGE)
    assert smtp_server.received == []


def test_smtp_settings_defaults_and_contradictions(tmp_path: Path) -> None:
    assert SmtpSettings(host="mail").uses_starttls
    assert SmtpSettings(host="mail").effective_port == 587
    assert not SmtpSettings(host="mail", use_tls=True).uses_starttls
    assert SmtpSettings(host="mail", use_tls=True).effective_port == 465
    assert SmtpSettings(host="mail", starttls=False).effective_port == 25
    with pytest.raises(ValidationError, match="exclude each other"):
        SmtpSettings(use_tls=True, starttls=True)
    with pytest.raises(ValidationError, match="go together"):
        SmtpSettings(username="user")
    with pytest.raises(ConfigError, match=r"SmtpSettings\.ca_file"):
        EmailChannel(SmtpSettings(host="mail", ca_file=tmp_path / "missing.pem"))
