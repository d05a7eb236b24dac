"""Notification failures, split by what a retry can do about them.

Messages name the channel, the provider's host and the status; never the message, the
recipient's token or a credential, since they end up in logs and dead letters. An SMTP
server's reply, which may quote the recipient's address, follows them: the log lines leave it
out where the payloads are sealed.
"""

from __future__ import annotations

from config.errors import PostroomError
from workers import PermanentError, RateLimited, own_words


class ChannelNotConfigured(PermanentError):
    """Raised when sending through a channel whose settings name no provider."""


class InvalidRecipient(PermanentError, ValueError):
    """Raised when a recipient cannot be addressed at all (e.g. a header-breaking address)."""


class ProviderError(PostroomError):
    """A provider's answer (or its absence); `status` is the HTTP status or SMTP reply code."""

    def __init__(
        self, channel: str, provider: str, status: int | None, detail: str, reply: str = ""
    ) -> None:
        self.channel = channel
        self.provider = provider
        self.status = status
        # The provider's own `reply` may quote the message (a recipient's address): `said`
        # leaves it out, and so does a log line where the payloads are sealed (own_words).
        self.said = f"{channel} provider {provider}: {detail}"
        super().__init__(f"{self.said} {reply}" if reply else self.said)
        own_words(self, self.said)


class ProviderRejected(ProviderError, PermanentError):
    """The provider refused this message (HTTP 4xx, SMTP 5xx): sending it again cannot help."""


class ProviderUnavailable(ProviderError):
    """The provider could not take the message now (5xx, 429, timeout, no connection): retry."""


class ProviderThrottled(ProviderUnavailable, RateLimited):
    """The provider answered 429 with a Retry-After: the runtime defers the job by that long
    without spending a try (RateLimited), a bounded number of times."""

    def __init__(self, channel: str, provider: str, retry_after: float) -> None:
        super().__init__(
            channel, provider, 429, f"too many requests, HTTP 429, retry after {retry_after:g}s"
        )
        self.retry_after = retry_after
