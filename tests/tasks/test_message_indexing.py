"""index-message through a real worker; search finds, then stops finding, the message."""

from __future__ import annotations

from config.settings import PostroomSettings
from tasks.message_delivery import send_message
from tasks.message_indexing import index_message_task
from tasks.payloads import IndexingJob, SendMessage
from tasks.store import MessageStore
from tests.conftest import running_worker
from tests.store.helpers import found
from tests.tasks.conftest import with_settings
from workers.client import PostroomClient
from workers.runner.supervisor import Supervisor


async def run(client: PostroomClient, job: IndexingJob) -> tuple[bool, str | None]:
    result = await (await client.enqueue(index_message_task.call(job))).result(timeout=30)
    return result.changed, result.skipped


async def test_index_update_and_delete_drive_what_search_finds(
    task_client: PostroomClient, worker: Supervisor, db: MessageStore
) -> None:
    index = IndexingJob.model_validate(
        {
            "messageId": "m-1",
            "operation": "index",
            "content": "quarterly report is ready",
            "senderId": "alice",
            "conversationId": "c-1",
        }
    )
    assert await run(task_client, index) == (True, None)
    assert await found(db, "reports") == ["m-1"]
    assert await found(db, "report", sender_id="bob") == []

    update = IndexingJob(message_id="m-1", operation="update", content="holiday photos")
    assert await run(task_client, update) == (True, None)
    assert await found(db, "report") == []
    assert await found(db, "photo", conversation_id="c-1") == ["m-1"]

    delete = IndexingJob(message_id="m-1", operation="delete")
    assert await run(task_client, delete) == (True, None)
    assert await found(db, "photo") == []
    assert await run(task_client, delete) == (False, None)


async def test_encrypted_messages_stay_out_of_the_index_unless_allowed(
    task_settings: PostroomSettings, task_client: PostroomClient, db: MessageStore
) -> None:
    sent = SendMessage(
        message_id="m-2",
        sender_id="alice",
        recipient_id="bob",
        conversation_id="c-1",
        content="the launch code is tangerine",
        requires_encryption=True,
    )
    index = IndexingJob(message_id="m-2", operation="index")  # text from the store
    async with running_worker(task_settings):
        await (await task_client.enqueue(send_message.call(sent))).result(timeout=30)
        changed, skipped = await run(task_client, index)
    assert not changed and skipped is not None and "encrypted" in skipped
    assert await found(db, "tangerine") == []

    allowed = with_settings(task_settings, index_encrypted_messages=True)
    async with running_worker(allowed):
        assert await run(task_client, index) == (True, None)
    assert await found(db, "tangerine") == ["m-2"]
