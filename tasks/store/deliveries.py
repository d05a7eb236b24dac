"""A message's delivery to each recipient: sent, then delivered, then read (or failed).

Each change is one upsert on (message_id, recipient_id), so a retried send never makes a second
row and receipts may arrive in any order or twice: the ON CONFLICT ... WHERE lets a status move
forward only, so a late "delivered" never overwrites "read", and the first timestamp of each
step is kept. A failure only counts while the message is not known to have arrived.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, literal
from sqlalchemy.ext.asyncio import AsyncSession

from tasks.store.models import Delivery, DeliveryStatus
from tasks.store.timestamps import UTCDateTime, utcnow
from tasks.store.upsert import upsert

# Statuses that a "delivered" receipt (or a new failure) may replace.
NOT_ARRIVED = (DeliveryStatus.SENT, DeliveryStatus.FAILED)


def _typed(at: datetime) -> ColumnElement[datetime]:
    # Inside an expression a bare value would be bound as a plain DateTime, skipping UTC.
    return literal(at, UTCDateTime())


async def _advance(
    session: AsyncSession,
    message_id: str,
    recipient_id: str,
    status: DeliveryStatus,
    stamps: dict[str, Any],
    changes: dict[str, Any],
    allowed: ColumnElement[bool],
) -> bool:
    """Insert the delivery with `stamps`, or apply `changes` to it when `allowed`."""
    insert = upsert(session, Delivery).values(
        message_id=message_id, recipient_id=recipient_id, status=status, **stamps
    )
    statement = insert.on_conflict_do_update(
        index_elements=[Delivery.message_id, Delivery.recipient_id],
        set_=changes,
        where=allowed,
    ).returning(Delivery.status)
    return (await session.execute(statement)).scalar_one_or_none() is not None


async def record_sent(
    session: AsyncSession, message_id: str, recipient_id: str, *, at: datetime | None = None
) -> bool:
    """The message left for the recipient; True when this changed anything (a retry: False).

    A send after a failure (the task's retry) makes the delivery "sent" again.
    """
    at = at or utcnow()
    return await _advance(
        session,
        message_id,
        recipient_id,
        DeliveryStatus.SENT,
        {"sent_at": at},
        {"status": DeliveryStatus.SENT, "sent_at": func.coalesce(Delivery.sent_at, _typed(at))},
        Delivery.status == DeliveryStatus.FAILED,
    )


async def mark_delivered(
    session: AsyncSession, message_id: str, recipient_id: str, *, at: datetime | None = None
) -> bool:
    """The recipient's device has the message; no effect once it was read."""
    at = at or utcnow()
    return await _advance(
        session,
        message_id,
        recipient_id,
        DeliveryStatus.DELIVERED,
        {"delivered_at": at},
        {"status": DeliveryStatus.DELIVERED, "delivered_at": at},
        Delivery.status.in_(NOT_ARRIVED),
    )


async def mark_read(
    session: AsyncSession, message_id: str, recipient_id: str, *, at: datetime | None = None
) -> bool:
    """The recipient read the message (so it was delivered too, if no receipt said so)."""
    at = at or utcnow()
    return await _advance(
        session,
        message_id,
        recipient_id,
        DeliveryStatus.READ,
        {"delivered_at": at, "read_at": at},
        {
            "status": DeliveryStatus.READ,
            "read_at": at,
            "delivered_at": func.coalesce(Delivery.delivered_at, _typed(at)),
        },
        Delivery.status != DeliveryStatus.READ,
    )


async def mark_failed(
    session: AsyncSession,
    message_id: str,
    recipient_id: str,
    reason: str,
    *,
    at: datetime | None = None,
) -> bool:
    """Sending failed for `reason`; ignored once the message was delivered or read."""
    at = at or utcnow()
    return await _advance(
        session,
        message_id,
        recipient_id,
        DeliveryStatus.FAILED,
        {"failed_at": at, "failure_reason": reason},
        {"status": DeliveryStatus.FAILED, "failed_at": at, "failure_reason": reason},
        Delivery.status.in_(NOT_ARRIVED),
    )


async def get_delivery(
    session: AsyncSession, message_id: str, recipient_id: str
) -> Delivery | None:
    return await session.get(Delivery, (message_id, recipient_id))
