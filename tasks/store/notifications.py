"""Notifications a recipient was sent, kept as their in-app inbox and as a send record.

A caller that may retry (a task) passes its own `notification_id`, derived from what it
notifies about, so a second run finds the first run's row instead of notifying twice.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tasks.store.models import Channel, Notification, NotificationStatus
from tasks.store.timestamps import utcnow
from tasks.store.upsert import upsert


async def store_notification(
    session: AsyncSession,
    *,
    recipient_id: str,
    title: str,
    body: str,
    channel: Channel = Channel.IN_APP,
    message_id: str | None = None,
    data: dict[str, Any] | None = None,
    notification_id: str | None = None,
    status: NotificationStatus | None = None,
    created_at: datetime | None = None,
) -> str:
    """Store a notification unless `notification_id` exists; returns its id.

    An in-app notification is in the inbox once stored, so its status defaults to "sent";
    the other channels' default to "pending" until their provider accepts them.
    """
    notification_id = notification_id or uuid.uuid4().hex
    if status is None:
        status = (
            NotificationStatus.SENT if channel is Channel.IN_APP else NotificationStatus.PENDING
        )
    statement = (
        upsert(session, Notification)
        .values(
            id=notification_id,
            recipient_id=recipient_id,
            channel=channel,
            message_id=message_id,
            title=title,
            body=body,
            data=data or {},
            status=status,
            created_at=created_at or utcnow(),
        )
        .on_conflict_do_nothing(index_elements=[Notification.id])
    )
    await session.execute(statement)
    return notification_id


async def list_notifications(
    session: AsyncSession,
    recipient_id: str,
    *,
    channel: Channel | None = Channel.IN_APP,
    unread_only: bool = False,
    limit: int = 50,
) -> list[Notification]:
    """The recipient's notifications on `channel` (None: all), newest first."""
    query = select(Notification).where(Notification.recipient_id == recipient_id)
    if channel is not None:
        query = query.where(Notification.channel == channel)
    if unread_only:
        query = query.where(Notification.read_at.is_(None))
    query = query.order_by(Notification.created_at.desc(), Notification.id.desc()).limit(limit)
    return list((await session.scalars(query)).all())


async def mark_notification_read(
    session: AsyncSession, notification_id: str, *, at: datetime | None = None
) -> bool:
    """Mark it read; True unless it was already read (or does not exist)."""
    statement = (
        update(Notification)
        .where(Notification.id == notification_id, Notification.read_at.is_(None))
        .values(read_at=at or utcnow(), status=NotificationStatus.READ)
        .returning(Notification.id)
    )
    return (await session.execute(statement)).scalar_one_or_none() is not None


async def set_notification_status(
    session: AsyncSession, notification_id: str, status: NotificationStatus
) -> bool:
    """Record what the provider did with it (sent or failed); never undoes a read."""
    statement = (
        update(Notification)
        .where(Notification.id == notification_id, Notification.read_at.is_(None))
        .values(status=status)
        .returning(Notification.id)
    )
    return (await session.execute(statement)).scalar_one_or_none() is not None
