"""Sleeping that a stop request cuts short: every background loop waits this way."""

from __future__ import annotations

import asyncio
import contextlib


async def sleep_unless(event: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds`, or less if `event` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
