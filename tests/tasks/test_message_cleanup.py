"""cleanup-messages through a real worker: the dry run counts what the real run deletes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from config.queues import QueueName
from config.settings import PostroomSettings
from tasks.message_cleanup import cleanup_messages
from tasks.payloads import CleanupJob
from tasks.store import (
    MessageStore,
    add_attachment,
    delete_conversation,
    index_message,
    record_sent,
    save_message,
)
from tasks.store.models import Attachment, Conversation, Message
from workers.client import PostroomClient
from workers.registry import registry
from workers.runner.supervisor import Supervisor
from workers.store.dead_letter import try_error

NOW = datetime.now(UTC)


async def seed(db: MessageStore, files: Path) -> list[Path]:
    """Two old messages, one recent, a deleted conversation, attachments expired and not."""
    paths = [files / f"file-{n}" for n in range(3)]
    for path in paths:
        path.write_bytes(b"attachment")
    async with db.transaction() as session:
        for message_id, conversation, age in (
            ("old-1", "c-1", 120),
            ("old-2", "c-1", 100),
            ("new-1", "c-1", 1),
            ("gone-1", "c-2", 1),
        ):
            await save_message(
                session,
                message_id=message_id,
                conversation_id=conversation,
                sender_id="alice",
                content=f"text of {message_id}",
                created_at=NOW - timedelta(days=age),
            )
            await record_sent(session, message_id, "bob")
            await index_message(
                session,
                message_id=message_id,
                conversation_id=conversation,
                sender_id="alice",
                text=f"text of {message_id}",
            )
        await delete_conversation(session, "c-2")
        await add_attachment(
            session, attachment_id="a-old", message_id="old-1", path=str(paths[0]), size=10
        )
        await add_attachment(
            session,
            attachment_id="a-expired",
            message_id="new-1",
            path=str(paths[1]),
            size=10,
            expires_at=NOW - timedelta(hours=1),
        )
        await add_attachment(
            session, attachment_id="a-kept", message_id="new-1", path=str(paths[2]), size=10
        )
    return paths


async def test_the_dry_run_counts_exactly_what_the_real_run_deletes(
    task_settings: PostroomSettings,
    task_client: PostroomClient,
    worker: Supervisor,
    db: MessageStore,
    tmp_path: Path,
) -> None:
    paths = await seed(db, tmp_path)
    dead_letters = task_client.dead_letters
    await dead_letters.add(
        job_id="expired-letter",
        task="send-message",
        queue=QueueName.DELIVERY,
        payload={},
        reason="permanent",
        tries=1,
        last_error=try_error(1, ValueError("x")),
        enqueued_at=None,
    )
    # Died 30 days ago: the index score is when.
    await task_client.redis.zadd(
        task_client.keys.of(QueueName.DELIVERY).dead_index,
        {"expired-letter": NOW.timestamp() - 30 * 86_400},
    )
    dry = CleanupJob(retention_days=90, batch_size=1, dry_run=True)
    counted = await (await task_client.enqueue(cleanup_messages.call(dry))).result(timeout=30)
    async with db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(Message)) == 4
    assert all(path.exists() for path in paths)
    assert await dead_letters.count(QueueName.DELIVERY) == 1

    real = dry.model_copy(update={"dry_run": False})
    deleted = await (await task_client.enqueue(cleanup_messages.call(real))).result(timeout=30)

    assert counted.model_dump(exclude={"dry_run"}) == deleted.model_dump(exclude={"dry_run"})
    assert (deleted.messages, deleted.deliveries, deleted.search_entries) == (3, 3, 3)
    assert (deleted.attachments, deleted.conversations, deleted.dead_letters) == (2, 1, 1)
    async with db.transaction() as session:
        assert list(await session.scalars(select(Message.id))) == ["new-1"]
        assert list(await session.scalars(select(Attachment.id))) == ["a-kept"]
        assert list(await session.scalars(select(Conversation.id))) == ["c-1"]
    assert [path.exists() for path in paths] == [False, False, True]
    assert await dead_letters.count(QueueName.DELIVERY) == 0


def test_cleanup_runs_daily_at_two_utc() -> None:
    schedule = registry.get("cleanup-messages").cron
    assert schedule is not None and schedule.expression == "0 2 * * *"
    assert str(schedule.timezone) == "UTC"
