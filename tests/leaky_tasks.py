"""Tasks and an event handler whose errors quote their payloads, as careless task code does:
the payload encryption log tests plant markers in them (imported by subprocess workers too)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from config.queues import BackoffPolicy, QueueName
from workers import JobContext, RateLimited, task
from workers.events import DomainEvent, on

QUICK = BackoffPolicy(kind="fixed", base=0.05, cap=0.05, jitter=False)


class Contact(BaseModel):
    """Who a notification goes to: every field private; `content` and `deviceToken` are
    ones masking hides, the phone and the address are not."""

    phone: str
    email: str
    content: str
    device_token: str = Field(alias="deviceToken")

    @field_validator("phone")
    @classmethod
    def _international(cls, phone: str) -> str:
        if not phone.startswith("+"):
            raise ValueError(f"not an international number: {phone}")
        return phone


def quoted(contact: Contact) -> str:
    return f"{contact.phone} <{contact.email}>: {contact.content} ({contact.device_token})"


@task(queue=QueueName.DELIVERY, name="tests.leaky.bad_phone", max_tries=2, backoff=QUICK)
async def bad_phone(ctx: JobContext, contact: Contact) -> None:
    """Fails every try quoting the whole contact: retried once, then dead-lettered."""
    raise ValueError(f"bad phone {quoted(contact)}")


class Reading(BaseModel):
    count: int
    phone: str

    @field_validator("phone")
    @classmethod
    def _digits(cls, phone: str) -> str:
        raise ValueError(f"no digits in {phone}")


@task(queue=QueueName.DELIVERY, name="tests.leaky.validates", max_tries=1)
async def validates(ctx: JobContext, contact: Contact) -> None:
    """Validates data of its own, refusing values of the payload: a pydantic error quoting
    them (`input_value=...`, and a validator's own message)."""
    Reading.model_validate({"count": contact.content, "phone": contact.phone})


@task(queue=QueueName.DELIVERY, name="tests.leaky.takes")
async def takes(ctx: JobContext, contact: Contact) -> None:
    """Enqueued with arguments its model refuses (an older writer's): refused in the worker."""


@task(queue=QueueName.DELIVERY, name="tests.leaky.limited")
async def limited(ctx: JobContext, contact: Contact) -> None:
    """Its provider answers 429 quoting the recipient: deferred, then dead-lettered."""
    raise RateLimited(f"429 for {quoted(contact)}", retry_after=0.01)


class ContactAdded(DomainEvent):
    type: Literal["tests.leaky.contact-added"] = "tests.leaky.contact-added"
    phone: str
    content: str


@on(ContactAdded)
async def greet(event: ContactAdded) -> None:
    """A handler failing on every event quoting it."""
    raise RuntimeError(f"cannot greet {event.phone}: {event.content}")
