"""Events and handlers the event bus tests publish, registered on the global handlers (the ones
workers dispatch from). Each handler records its calls here, by event id."""

from __future__ import annotations

from collections import Counter
from typing import Literal

from workers.errors import PermanentError
from workers.events import DomainEvent, on

# (handler, event id) -> how many times it was called.
calls: Counter[tuple[str, str]] = Counter()


class Greeted(DomainEvent):
    type: Literal["tests.greeted"] = "tests.greeted"
    name: str
    # The flaky handler fails this many times before it succeeds.
    failures: int = 0
    # The flaky handler raises PermanentError instead.
    refuse: bool = False


class Unheard(DomainEvent):
    """An event no handler (and no registration) knows of."""

    type: Literal["tests.unheard"] = "tests.unheard"


@on(Greeted)
async def record_greeting(event: Greeted) -> None:
    calls["record", event.id] += 1


@on(Greeted)
async def flaky_greeting(event: Greeted) -> None:
    calls["flaky", event.id] += 1
    if event.refuse:
        raise PermanentError(f"{event.name} is not welcome")
    if calls["flaky", event.id] <= event.failures:
        raise RuntimeError(f"flaky failure {calls['flaky', event.id]} of {event.failures}")


def ran(event: DomainEvent) -> dict[str, int]:
    """How many times each handler was called for `event`."""
    return {handler: n for (handler, event_id), n in calls.items() if event_id == event.id}
