"""Events and handlers the event bus tests publish, registered on the global handlers (the ones
workers dispatch from). Each handler records its calls here, by event id."""

from __future__ import annotations

from collections import Counter
from typing import Literal

from tests.sample_tasks import Greeting, echo
from workers.errors import PermanentError
from workers.events import DomainEvent, EventContext, on

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


class Followed(DomainEvent):
    """Its handler enqueues a follow-up job (`tests.echo`, id `follow-up:<event id>`)."""

    type: Literal["tests.followed"] = "tests.followed"
    text: str


@on(Followed)
async def follow_up(event: Followed, context: EventContext) -> None:
    assert context.client is not None
    calls["follow-up", event.id] += 1
    if context.job is not None:
        calls["in a job", event.id] += 1
    greeting = Greeting(messageId=event.id, text=event.text)
    await context.client.enqueue(echo.call(greeting), job_id=f"follow-up:{event.id}")


def ran(event: DomainEvent) -> dict[str, int]:
    """How many times each handler was called for `event`."""
    return {handler: n for (handler, event_id), n in calls.items() if event_id == event.id}
