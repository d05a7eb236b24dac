"""The wire form of a domain event, for consumers in any language (the RabbitMQ transport).

```json
{"id": "5f0c...", "type": "message.posted", "occurredAt": "2026-12-03T14:05:00.123456Z",
 "version": 1, "data": {"messageId": "m1"}}
```

`id`, `type`, `occurredAt` (ISO 8601 with a UTC offset) and `version` are every event's;
`data` holds the event's own fields, camelCase. A body that is not JSON, not this shape, of a
type this process does not know, or whose `data` its class refuses raises `MalformedEvent`
naming the field, so a consumer can dead-letter it with the reason.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from workers.error_text import own_words, problems
from workers.events.errors import UnknownEventError
from workers.events.handlers import EventHandlers
from workers.events.model import DomainEvent

# The fields of the envelope itself; an event's own fields go under `data`.
ENVELOPE_FIELDS = ("id", "type", "occurredAt", "version")
CONTENT_TYPE = "application/json"


class MalformedEvent(ValueError):
    """A message that cannot be an event here; `reason` is one of the REASONS below."""

    REASONS = ("not-json", "schema", "unknown-type", "invalid-data")

    def __init__(self, reason: str, detail: str, safe: str | None = None) -> None:
        self.reason = reason
        super().__init__(detail)
        # Worded here, but for a validator's own reasons (`safe` leaves them out): error_text.
        own_words(self, safe)


class EventEnvelope(BaseModel):
    """The documented schema of an event message (what a foreign publisher must send)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    id: str = Field(min_length=1, max_length=200)
    type: str = Field(min_length=1, max_length=200)
    occurred_at: datetime = Field(alias="occurredAt")
    version: int = Field(ge=1)
    data: dict[str, Any]


def encode(event: DomainEvent) -> bytes:
    """The event's envelope as JSON bytes."""
    fields = event.to_json()
    head = {name: fields.pop(name) for name in ENVELOPE_FIELDS}
    return orjson.dumps({**head, "data": fields})


def _invalid(reason: str, intro: str, errors: ValidationError, where: str) -> MalformedEvent:
    def fields(quoting: bool) -> str:
        found = problems(errors, prefix=f"{where}.", quoting=quoting)
        return intro + "; ".join(f"{field.strip('.')}: {why}" for field, why in found)

    return MalformedEvent(reason, fields(True), fields(False))


def decode(body: bytes, registry: EventHandlers) -> DomainEvent:
    """The event `body` holds, as its registered class; `MalformedEvent` says why not."""
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedEvent("not-json", f"the message is not JSON: {exc}") from None
    try:
        envelope = EventEnvelope.model_validate(raw)
    except ValidationError as exc:
        raise _invalid("schema", "not an event envelope: ", exc, "") from None
    try:
        event_class = registry.event_class(envelope.type)
    except UnknownEventError as exc:
        raise MalformedEvent("unknown-type", str(exc)) from None
    clash = sorted(set(envelope.data) & {*ENVELOPE_FIELDS, "occurred_at"})
    if clash:
        raise MalformedEvent("schema", f"data must not repeat the envelope's fields: {clash}")
    head = {name: raw[name] for name in ENVELOPE_FIELDS}
    try:
        return event_class.model_validate({**head, **envelope.data})
    except ValidationError as exc:
        raise _invalid("invalid-data", f"event {envelope.type}: ", exc, "data") from None
