"""Retention: a dry run counts, and the real run (in small batches) deletes exactly that."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from tasks.store import (
    Attachment,
    CleanupCounts,
    Conversation,
    Delivery,
    Message,
    MessageStore,
    Notification,
    SearchEntry,
    add_attachment,
    cleanup,
    delete_conversation,
    index_message,
    record_sent,
    save_message,
    store_notification,
)
from tests.store.helpers import count_rows

NOW = datetime(2025, 6, 1, tzinfo=UTC)
CUTOFF = NOW - timedelta(days=30)
OLD = NOW - timedelta(days=40)
RECENT = NOW - timedelta(days=1)
MODELS = (Message, Delivery, SearchEntry, Attachment, Conversation, Notification)


async def _message(
    store: MessageStore, message_id: str, conversation_id: str, at: datetime
) -> None:
    """A message sent to two recipients and indexed."""
    async with store.transaction() as session:
        await save_message(
            session,
            message_id=message_id,
            conversation_id=conversation_id,
            sender_id="alice",
            content=f"text of {message_id}",
            created_at=at,
        )
        for recipient in ("bob", "carol"):
            await record_sent(session, message_id, recipient, at=at)
        await index_message(
            session,
            message_id=message_id,
            conversation_id=conversation_id,
            sender_id="alice",
            text=f"text of {message_id}",
        )


async def _attachment(
    store: MessageStore, directory: Path, message_id: str, expires_at: datetime | None
) -> Path:
    path = directory / f"{message_id}-{expires_at is not None}.bin"
    path.write_bytes(b"x" * 10)
    async with store.transaction() as session:
        await add_attachment(
            session,
            attachment_id=path.name,
            message_id=message_id,
            path=str(path),
            size=10,
            expires_at=expires_at,
        )
    return path


async def _counts(store: MessageStore) -> dict[str, int]:
    return {model.__tablename__: await count_rows(store, model) for model in MODELS}


async def test_dry_run_counts_and_the_real_run_deletes_exactly_that(
    store: MessageStore, tmp_path: Path
) -> None:
    for n in range(5):
        await _message(store, f"old-{n}", "live", OLD)
    for n in range(2):
        await _message(store, f"new-{n}", "live", RECENT)
    for n in range(3):
        await _message(store, f"dead-{n}", "dead", RECENT)
    await _message(store, "kept", "other", RECENT)
    async with store.transaction() as session:
        assert await delete_conversation(session, "dead", at=RECENT)
        await store_notification(
            session, recipient_id="bob", title="t", body="b", message_id="old-0"
        )

    expired = await _attachment(store, tmp_path, "new-0", NOW - timedelta(hours=1))
    of_old_message = await _attachment(store, tmp_path, "old-1", None)
    of_dead_conversation = await _attachment(store, tmp_path, "dead-0", NOW + timedelta(days=9))
    kept = await _attachment(store, tmp_path, "new-1", NOW + timedelta(days=1))
    expected = CleanupCounts(
        messages=8, deliveries=16, search_entries=8, attachments=3, conversations=1
    )
    before = await _counts(store)

    dry = await cleanup(store, older_than=CUTOFF, batch_size=3, dry_run=True, now=NOW)
    assert dry == expected
    assert await _counts(store) == before
    assert all(path.exists() for path in (expired, of_old_message, of_dead_conversation, kept))

    real = await cleanup(store, older_than=CUTOFF, batch_size=3, dry_run=False, now=NOW)
    assert real == dry
    after = await _counts(store)
    assert after == {
        "messages": 3,
        "deliveries": 6,
        "message_search": 3,
        "attachments": 1,
        "conversations": 2,
        "notifications": 1,
    }
    assert not expired.exists()
    assert not of_old_message.exists()
    assert not of_dead_conversation.exists()
    assert kept.exists()
    async with store.transaction() as session:
        remaining = set(await session.scalars(select(Message.id)))
        notification = (await session.scalars(select(Notification))).one()
    assert remaining == {"new-0", "new-1", "kept"}
    assert notification.message_id is None  # the recipient's record outlives the message

    again = await cleanup(store, older_than=CUTOFF, batch_size=3, dry_run=False, now=NOW)
    assert again == CleanupCounts()


async def test_a_file_already_gone_does_not_stop_cleanup(
    store: MessageStore, tmp_path: Path
) -> None:
    await _message(store, "m1", "c1", RECENT)
    path = await _attachment(store, tmp_path, "m1", NOW - timedelta(days=1))
    path.unlink()
    counts = await cleanup(store, older_than=CUTOFF, batch_size=10, dry_run=False, now=NOW)
    assert counts == CleanupCounts(attachments=1)
    assert await count_rows(store, Attachment) == 0


async def test_batch_size_must_be_positive(store: MessageStore) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        await cleanup(store, older_than=CUTOFF, batch_size=0, dry_run=True)
