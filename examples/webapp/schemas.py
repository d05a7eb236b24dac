"""The example app's request and response bodies: camelCase, like the jobs' payloads."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from tasks.payloads import BatchSend, Id, Payload
from workers.store.priority import Priority


class PostMessage(Payload):
    """A message to the conversation's other members."""

    sender_id: Id
    recipient_ids: Annotated[list[Id], Field(min_length=1, max_length=1_000)]
    content: Annotated[str, StringConstraints(min_length=1, max_length=20_000)]
    # Delivered (and notified) before any non-urgent job of the queue.
    urgent: bool = False
    # The idempotency key: a client retrying its POST with the same id stores and enqueues
    # nothing twice (default: a new id).
    message_id: Id | None = None


class MessageJobs(Payload):
    delivery: dict[str, str]
    notification: dict[str, str]
    indexing: str


class MessageAccepted(Payload):
    message_id: str
    priority: Priority
    # False when an earlier request with this message id stored it (its jobs are the same).
    stored: bool
    jobs: MessageJobs


class PostBroadcast(BatchSend):
    """A `batch-send`: `content` is a template over `recipientVariables[recipientId]`."""

    urgent: bool = False
    # The idempotency key, and the batch's job id (default: a new id).
    broadcast_id: Id | None = None


class BroadcastAccepted(Payload):
    batch_job_id: str
    recipients: int
    # False when the broadcast id was taken: this is the earlier broadcast's job.
    created: bool


class NotificationAccepted(Payload):
    job_id: str
    # False when the notification id was taken: this is the earlier notification's job.
    created: bool


class Hit(Payload):
    message_id: str
    conversation_id: str
    sender_id: str
    rank: float
    # None for a message stored encrypted.
    content: str | None
