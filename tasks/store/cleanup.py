"""Retention: purge old messages, deleted conversations and expired attachments, in batches.

Each batch is its own short transaction, so a large purge never holds locks (SQLite's single
writer lock above all) for long, and an interrupted run keeps what it did; the next run carries
on. What goes:

- messages created before `older_than`, or in a conversation marked deleted, with their
  deliveries, search entries and attachments (their notifications stay, unlinked);
- attachments that expired, row and file;
- conversations marked deleted.

A dry run counts exactly those rows, with the same conditions, and deletes nothing.
Attachment files are removed before their rows are committed: if the commit fails, the rows
remain and the next run deletes them (a missing file is fine), whereas the reverse order could
leave files that no row points to any more.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, cast, get_args

from pydantic import BaseModel, ConfigDict
from sqlalchemy import ColumnElement, CursorResult, Select, delete, false, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from tasks.store.database import MessageStore
from tasks.store.models import (
    Attachment,
    Base,
    Conversation,
    Delivery,
    Message,
    SearchEntry,
)
from tasks.store.timestamps import utcnow


class CleanupCounts(BaseModel):
    """Rows deleted (or, in a dry run, that would be); `attachments` counts files too."""

    model_config = ConfigDict(frozen=True)

    messages: int = 0
    deliveries: int = 0
    search_entries: int = 0
    attachments: int = 0
    conversations: int = 0

    def __add__(self, other: CleanupCounts) -> CleanupCounts:
        return CleanupCounts(
            **{name: getattr(self, name) + getattr(other, name) for name in type(self).model_fields}
        )


CleanupKind = Literal["old_messages", "deleted_conversations", "expired_attachments"]
CLEANUP_KINDS: frozenset[CleanupKind] = frozenset(get_args(CleanupKind))


class _Doomed:
    """The conditions that pick what goes, shared by the dry run and the real one."""

    def __init__(self, older_than: datetime, now: datetime, kinds: Collection[CleanupKind]) -> None:
        deleted_conversations = select(Conversation.id).where(Conversation.deleted_at.is_not(None))
        doomed_messages = []
        if "old_messages" in kinds:
            doomed_messages.append(Message.created_at < older_than)
        if "deleted_conversations" in kinds:
            doomed_messages.append(Message.conversation_id.in_(deleted_conversations))
        self.message = or_(false(), *doomed_messages)
        self.message_ids = select(Message.id).where(self.message)
        self.expired = Attachment.expires_at <= now if "expired_attachments" in kinds else false()
        self.attachment = or_(self.expired, Attachment.message_id.in_(self.message_ids))
        self.conversation = (
            Conversation.deleted_at.is_not(None) if "deleted_conversations" in kinds else false()
        )


# One batch: how many rows of its own table it took (fewer than asked: the last batch), and
# everything it deleted.
Batch = tuple[int, CleanupCounts]


async def cleanup(
    store: MessageStore,
    *,
    older_than: datetime,
    batch_size: int,
    dry_run: bool,
    kinds: Collection[CleanupKind] = CLEANUP_KINDS,
    now: datetime | None = None,
) -> CleanupCounts:
    """Purge (or with `dry_run`, count) what retention removes, `batch_size` rows at a time.

    `kinds` narrows it to old messages, deleted conversations (their messages too) or expired
    attachments; `now` decides which attachments have expired (default: the current time).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    doomed = _Doomed(older_than, now or utcnow(), kinds)
    if dry_run:
        async with store.transaction() as session:
            return await _count(session, doomed)
    total = CleanupCounts()
    # Messages first: they take their attachments along, and empty the deleted conversations.
    for purge in (_purge_messages, _purge_expired_attachments, _purge_conversations):
        while True:
            async with store.transaction() as session:
                taken, counts = await purge(session, doomed, batch_size)
            total += counts
            if taken < batch_size:
                break
    return total


async def _count(session: AsyncSession, doomed: _Doomed) -> CleanupCounts:
    async def count(model: type[Base], where: ColumnElement[bool]) -> int:
        return (await session.scalar(select(func.count()).select_from(model).where(where))) or 0

    return CleanupCounts(
        messages=await count(Message, doomed.message),
        deliveries=await count(Delivery, Delivery.message_id.in_(doomed.message_ids)),
        search_entries=await count(SearchEntry, SearchEntry.message_id.in_(doomed.message_ids)),
        attachments=await count(Attachment, doomed.attachment),
        conversations=await count(Conversation, doomed.conversation),
    )


async def _purge_messages(session: AsyncSession, doomed: _Doomed, limit: int) -> Batch:
    """A batch of messages, with everything that refers to them."""
    ids = list(await session.scalars(doomed.message_ids.limit(limit)))
    if not ids:
        return 0, CleanupCounts()
    files = select(Attachment.id, Attachment.path).where(Attachment.message_id.in_(ids))
    return len(ids), CleanupCounts(
        attachments=await _remove_attachments(session, files),
        deliveries=await _delete(session, Delivery, Delivery.message_id.in_(ids)),
        search_entries=await _delete(session, SearchEntry, SearchEntry.message_id.in_(ids)),
        messages=await _delete(session, Message, Message.id.in_(ids)),
    )


async def _purge_expired_attachments(session: AsyncSession, doomed: _Doomed, limit: int) -> Batch:
    files = select(Attachment.id, Attachment.path).where(doomed.expired).limit(limit)
    removed = await _remove_attachments(session, files)
    return removed, CleanupCounts(attachments=removed)


async def _purge_conversations(session: AsyncSession, doomed: _Doomed, limit: int) -> Batch:
    ids = list(
        await session.scalars(select(Conversation.id).where(doomed.conversation).limit(limit))
    )
    deleted = await _delete(session, Conversation, Conversation.id.in_(ids)) if ids else 0
    return len(ids), CleanupCounts(conversations=deleted)


async def _remove_attachments(session: AsyncSession, files: Select[str, str]) -> int:
    """Delete the attachments `files` selects (id, path): their files, then their rows."""
    rows = (await session.execute(files)).all()
    if not rows:
        return 0
    await asyncio.to_thread(_unlink, [path for _, path in rows])
    return await _delete(session, Attachment, Attachment.id.in_([id_ for id_, _ in rows]))


def _unlink(paths: Sequence[str]) -> None:
    for path in paths:
        Path(path).unlink(missing_ok=True)


async def _delete(session: AsyncSession, model: type[Base], where: ColumnElement[bool]) -> int:
    statement = delete(model).where(where).execution_options(synchronize_session=False)
    # DELETE's row count is exact on both drivers; AsyncSession types every result as Result.
    return cast("CursorResult[Any]", await session.execute(statement)).rowcount
