"""Headers an event carries besides its body: where trace context (`traceparent`) travels.

A tracing integration appends to `outgoing` a function giving the headers to add to an
event's message when it is published; the consumer puts a delivery's headers in `incoming`
while its handlers run, so the integration can read them back (`incoming.get()`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any

from workers.events.model import DomainEvent

HeaderHook = Callable[[DomainEvent], Mapping[str, str]]

outgoing: list[HeaderHook] = []
incoming: ContextVar[Mapping[str, Any]] = ContextVar("postroom_event_headers", default={})  # noqa: B039


def outgoing_headers(event: DomainEvent) -> dict[str, str]:
    """The headers every registered hook gives for `event`, later hooks winning."""
    headers: dict[str, str] = {}
    for hook in outgoing:
        headers.update(hook(event))
    return headers
