"""Domain events: immutable facts with an id, a type, when they happened and a schema version."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from workers.events.errors import EventDefinitionError


def _new_id() -> str:
    return uuid.uuid4().hex


def _now() -> datetime:
    return datetime.now(UTC)


class DomainEvent(BaseModel):
    """Base of every event. A subclass names its type with a literal default:

    ```python
    class MessagePosted(DomainEvent):
        type: Literal["message.posted"] = "message.posted"
        message_id: str
    ```

    `id` is the idempotency key: publishing the same event (same id) twice runs its handlers
    once. `version` is the schema's; bump its default when the fields change incompatibly.
    Events are camelCase on the wire, like the tasks' payloads.
    """

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    id: str = Field(default_factory=_new_id, min_length=1, max_length=200)
    type: str
    occurred_at: datetime = Field(default_factory=_now)
    version: int = Field(default=1, ge=1)

    # The type name, read from the `type` field's default when the subclass is defined.
    event_type: ClassVar[str] = ""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        default = cls.model_fields["type"].default
        if not isinstance(default, str) or not default:
            raise EventDefinitionError(
                f"event {cls.__qualname__} must give `type` a default, e.g. "
                f'type: Literal["{cls.__name__}"] = "{cls.__name__}"'
            )
        cls.event_type = default

    def to_json(self) -> dict[str, Any]:
        """The event as stored in a job: JSON types, camelCase."""
        dumped: dict[str, Any] = self.model_dump(mode="json", by_alias=True)
        return dumped
