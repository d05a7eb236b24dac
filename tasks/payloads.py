"""What the jobs take and return: the seed system's fields, in camelCase or snake_case.

Payloads are stored (and results returned) in camelCase, the seed's wire format, so a job
enqueued by a JavaScript service reads the same as one from Python. A bad payload is refused
at enqueue with the field named (`message.recipientId: Field required`).
"""

from __future__ import annotations

import string
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)
from pydantic.alias_generators import to_camel


def _utc(value: datetime) -> datetime:
    """Aware and in UTC; a naive time is taken to be UTC already (JavaScript's toJSON is)."""
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:  # a ValueError is what pydantic reports as the field's error
        raise ValueError(f"{value.isoformat()} is outside the years 1 to 9999 in UTC") from None


# Ids of messages, users and conversations: the platform's own, opaque, never empty.
Id = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Timestamp = Annotated[datetime, AfterValidator(_utc)]
# Per-recipient template variables ($name in a template takes variables["name"]).
Variables = dict[str, str | int | float]


def now() -> datetime:
    return datetime.now(UTC)


class Payload(BaseModel):
    """Base of every payload and result: camelCase on the wire, either case accepted."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class SendMessage(Payload):
    """A message for one recipient; `send-message` stores it, records and publishes it."""

    message_id: Id
    sender_id: Id
    recipient_id: Id
    conversation_id: Id
    content: str
    requires_encryption: bool = False
    created_at: Timestamp = Field(default_factory=now)


class MessageSent(Payload):
    message_id: str
    recipient_id: str
    # False when a retry found the message stored already (the first write wins).
    stored: bool
    encrypted: bool
    # How many real-time subscribers (WebSocket servers) received it.
    listeners: int


class DeliveryConfirmation(Payload):
    """A receipt from the recipient's side: delivered, read, or failed with a reason."""

    message_id: Id
    recipient_id: Id
    status: Literal["delivered", "read", "failed"]
    failure_reason: Annotated[str, StringConstraints(min_length=1, max_length=500)] | None = None
    # When it happened on the device (default: when the job runs).
    at: Timestamp | None = None

    @model_validator(mode="after")
    def _failure_has_a_reason(self) -> DeliveryConfirmation:
        if self.status == "failed" and self.failure_reason is None:
            raise ValueError("failureReason is required when status is failed")
        return self


class DeliveryRecorded(Payload):
    message_id: str
    recipient_id: str
    status: str
    # False when the receipt changed nothing: a duplicate, or older than what is recorded.
    changed: bool


NotificationType = Literal["push", "email", "sms", "in_app"]


class SendNotification(Payload):
    """A notification on one channel; `title` and `message` are templates over `variables`.

    `to` is where the channel delivers: the device token (push), the e-mail address, or the
    phone number (SMS); an in-app notification goes to `recipientId`'s inbox and needs none.
    """

    recipient_id: Id
    type: NotificationType
    title: Annotated[str, StringConstraints(max_length=500)]
    message: Annotated[str, StringConstraints(max_length=20_000)]
    to: Annotated[str, StringConstraints(min_length=1, max_length=500)] | None = None
    variables: Variables = {}
    message_id: Id | None = None
    # Extra data for the device (push) or the inbox entry (in-app): the seed's pushPayload.
    data: dict[str, str] = Field(default={}, alias="pushPayload")
    # Stable across retries; default: the job's id.
    notification_id: Id | None = None
    created_at: Timestamp = Field(default_factory=now)

    @model_validator(mode="after")
    def _address_for_the_channel(self) -> SendNotification:
        if self.type != "in_app" and self.to is None:
            raise ValueError(f"to is required for a {self.type} notification")
        return self


class NotificationSent(Payload):
    notification_id: str
    type: str
    # Set for in-app notifications: how many real-time subscribers received it.
    listeners: int | None = None


class EncryptionJob(Payload):
    """`encrypt` a stored message at rest, `decrypt` it (or `content`, an envelope's text),
    or `rotate` it to the active key."""

    message_id: Id
    operation: Literal["encrypt", "decrypt", "rotate"]
    content: str | None = None
    algorithm: Literal["AES-256-GCM"] = "AES-256-GCM"
    created_at: Timestamp = Field(default_factory=now)


class EncryptionResult(Payload):
    message_id: str
    operation: str
    key_id: str | None
    # Whether the stored message changed (encrypt and rotate).
    changed: bool = False
    # The plaintext, for decrypt only.
    plaintext: str | None = None


class RotationResult(Payload):
    rotated: int
    active_key_id: str


class IndexingJob(Payload):
    """Add a message to the search index, replace its text, or remove it.

    Without `content`, the stored message's text is indexed (decrypted when it is stored
    encrypted and `index_encrypted_messages` allows it).
    """

    message_id: Id
    operation: Literal["index", "update", "delete"]
    content: str | None = None
    sender_id: Id | None = None
    conversation_id: Id | None = None
    created_at: Timestamp = Field(default_factory=now)


class IndexingResult(Payload):
    message_id: str
    operation: str
    # False when there was nothing to do: deleting an unindexed message, or an encrypted one
    # kept out of the index (`skipped` says why).
    changed: bool
    skipped: str | None = None


class BatchSend(Payload):
    """One message to many recipients, in chunks of `chunkSize`, `chunkDelay` ms apart.

    `content` is a template: `recipientVariables[recipientId]` fills it for each recipient.
    """

    sender_id: Id
    recipient_ids: Annotated[list[Id], Field(min_length=1, max_length=1_000_000)]
    content: str
    conversation_id: Id | None = None
    recipient_variables: dict[str, Variables] = {}
    requires_encryption: bool = False
    chunk_size: int = Field(default=100, ge=1, le=10_000)
    chunk_delay: int = Field(default=0, ge=0, le=60_000)
    created_at: Timestamp = Field(default_factory=now)

    @model_validator(mode="after")
    def _every_recipient_fills_the_template(self) -> BatchSend:
        """Refused at enqueue, not half-way through the batch: each recipient's variables."""
        template = string.Template(self.content)
        if not template.is_valid():
            raise ValueError("content is not a valid template ($name, ${name}, $$ for $)")
        wanted = set(template.get_identifiers())
        if not wanted:
            return self
        for recipient in self.recipient_ids:
            given = self.recipient_variables.get(recipient, {})
            missing = sorted(name for name in wanted if given.get(name) is None)
            if missing:
                raise ValueError(
                    f"recipientVariables[{recipient!r}] lacks {', '.join(missing)} "
                    "for the content template"
                )
        return self


class BatchSent(Payload):
    batch_id: str
    recipients: int
    # Child jobs this run enqueued; a retried batch skips what an earlier try enqueued.
    enqueued: int
    chunks: int


class CleanupJob(Payload):
    """Retention: what `cleanupType` names, older than `retentionDays`, `batchSize` per
    transaction; `dryRun` counts and deletes nothing."""

    cleanup_type: Literal[
        "all", "old_messages", "deleted_conversations", "expired_attachments", "dead_letters"
    ] = "all"
    # Default: the `message_retention_days` setting.
    retention_days: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=1_000, ge=1, le=100_000)
    dry_run: bool = False
    created_at: Timestamp | None = None


class CleanupResult(Payload):
    dry_run: bool
    messages: int = 0
    deliveries: int = 0
    search_entries: int = 0
    attachments: int = 0
    conversations: int = 0
    dead_letters: int = 0
