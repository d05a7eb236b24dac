"""Conversations, messages and their attachments.

Every write is idempotent on the platform's own ids: a job retried after a crash finds the row
it already wrote and changes nothing (the first write wins). The functions take the caller's
session and do not commit, so a task can group several of them in one transaction.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, and_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tasks.store.models import Attachment, Conversation, Message
from tasks.store.timestamps import utcnow
from tasks.store.upsert import upsert
from workers import Envelope


async def ensure_conversation(
    session: AsyncSession, conversation_id: str, *, created_at: datetime | None = None
) -> bool:
    """Create the conversation unless it exists; True when it was created."""
    statement = (
        upsert(session, Conversation)
        .values(id=conversation_id, created_at=created_at or utcnow())
        .on_conflict_do_nothing(index_elements=[Conversation.id])
        .returning(Conversation.id)
    )
    return (await session.execute(statement)).scalar_one_or_none() is not None


async def delete_conversation(
    session: AsyncSession, conversation_id: str, *, at: datetime | None = None
) -> bool:
    """Mark the conversation deleted (`cleanup` purges it); True unless it was already marked."""
    statement = (
        update(Conversation)
        .where(Conversation.id == conversation_id, Conversation.deleted_at.is_(None))
        .values(deleted_at=at or utcnow())
        .returning(Conversation.id)
    )
    return (await session.execute(statement)).scalar_one_or_none() is not None


async def save_message(
    session: AsyncSession,
    *,
    message_id: str,
    conversation_id: str,
    sender_id: str,
    content: str,
    encrypted: bool = False,
    key_id: str | None = None,
    created_at: datetime | None = None,
) -> bool:
    """Store a message (and its conversation if new); True unless `message_id` was stored.

    `content` is the ciphertext when `encrypted`, sealed with the key named by `key_id`.
    """
    await ensure_conversation(session, conversation_id, created_at=created_at)
    statement = (
        upsert(session, Message)
        .values(
            id=message_id,
            conversation_id=conversation_id,
            sender_id=sender_id,
            content=content,
            encrypted=encrypted,
            key_id=key_id,
            created_at=created_at or utcnow(),
        )
        .on_conflict_do_nothing(index_elements=[Message.id])
        .returning(Message.id)
    )
    return (await session.execute(statement)).scalar_one_or_none() is not None


async def get_message(session: AsyncSession, message_id: str) -> Message | None:
    return await session.get(Message, message_id)


async def add_attachment(
    session: AsyncSession,
    *,
    attachment_id: str,
    message_id: str,
    path: str,
    size: int,
    expires_at: datetime | None = None,
) -> bool:
    """Record a file of a message; True unless `attachment_id` was recorded.

    `path` should be absolute: `cleanup` deletes the file at that path, from any directory.
    """
    statement = (
        upsert(session, Attachment)
        .values(
            id=attachment_id, message_id=message_id, path=path, size=size, expires_at=expires_at
        )
        .on_conflict_do_nothing(index_elements=[Attachment.id])
        .returning(Attachment.id)
    )
    return (await session.execute(statement)).scalar_one_or_none() is not None


async def store_sealed(
    session: AsyncSession,
    message_id: str,
    envelope: Envelope,
    *,
    expected_key_id: str | None,
) -> bool:
    """Store a message's content sealed in `envelope` (encrypted at rest, or re-encrypted).

    Compare-and-set on the key id the caller read (None: plaintext): when a concurrent job got
    there first, nothing changes and the answer is False.
    """
    statement = (
        update(Message)
        .where(Message.id == message_id, _key_is(expected_key_id))
        .values(content=envelope.to_text(), encrypted=True, key_id=envelope.key_id)
        .returning(Message.id)
    )
    return (await session.execute(statement)).scalar_one_or_none() is not None


def _key_is(key_id: str | None) -> ColumnElement[bool]:
    if key_id is None:
        return Message.encrypted.is_(False)
    return and_(Message.encrypted.is_(True), Message.key_id == key_id)


async def encrypted_under_other_keys(
    session: AsyncSession, active_key_id: str, *, after: str = "", limit: int = 500
) -> list[Message]:
    """Encrypted messages not under `active_key_id`, by id after `after`: a rotation's page."""
    query = (
        select(Message)
        .where(Message.encrypted.is_(True), Message.key_id != active_key_id, Message.id > after)
        .order_by(Message.id)
        .limit(limit)
    )
    return list((await session.scalars(query)).all())
