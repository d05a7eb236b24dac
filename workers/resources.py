"""Services a worker process's tasks share: a database engine, an HTTP client, a keyring.

Each is opened on first use and closed when the worker stops. Opening on first use means a
worker serving only the cleanup queue never connects to the SMTP server, and a service that is
down fails the jobs that need it (which retry) instead of the worker's start.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Any, TypeVar, cast

from config.settings import PostroomSettings

T = TypeVar("T")

# Opens a service for the settings; leaving the context closes it. The factory itself is the
# service's identity: `resources.get(message_store)` opens one store per process.
ResourceFactory = Callable[[PostroomSettings], AbstractAsyncContextManager[T]]


class Resources:
    """The process's open services, by factory."""

    def __init__(self, settings: PostroomSettings) -> None:
        self.settings = settings
        self._open: dict[ResourceFactory[Any], Any] = {}
        self._stack = AsyncExitStack()
        # One lock for all: services open rarely, and concurrent jobs must not open one twice.
        self._lock = asyncio.Lock()

    async def get(self, factory: ResourceFactory[T]) -> T:
        """The service `factory` opens, opened now if this is its first use."""
        if factory not in self._open:
            async with self._lock:
                if factory not in self._open:
                    self._open[factory] = await self._stack.enter_async_context(
                        factory(self.settings)
                    )
        return cast(T, self._open[factory])

    async def aclose(self) -> None:
        """Close every service, last opened first; they open again if used afterwards."""
        async with self._lock:
            self._open.clear()
            stack, self._stack = self._stack, AsyncExitStack()
            await stack.aclose()
