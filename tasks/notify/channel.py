"""What every notification channel offers: send one message to one recipient, then close."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

from tasks.notify.templates import RenderedMessage


class Channel(ABC):
    """A channel to one provider; use it as `async with` (or call `aclose`) to free it."""

    @abstractmethod
    async def send(self, recipient: str, message: RenderedMessage) -> None:
        """Deliver or raise: ProviderRejected (permanent) or ProviderUnavailable (retry)."""

    async def aclose(self) -> None:  # noqa: B027 - channels without resources keep this
        """Release the channel's connections; idempotent."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
