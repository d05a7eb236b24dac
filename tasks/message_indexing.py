"""The message-indexing queue: `index-message` adds, replaces or removes a message's entry.

The index holds searchable words in plaintext, so a message stored encrypted is indexed only
when `index_encrypted_messages` is set; otherwise the job answers `skipped` and the message
stays out of search. Search itself is `tasks.store.search`.
"""

from __future__ import annotations

from config.queues import QueueName
from tasks.encryption import Envelope, decrypt_async
from tasks.errors import MessageNotFound
from tasks.payloads import IndexingJob, IndexingResult
from tasks.services import keyring, message_store, service
from tasks.store import Message, delete_from_index, get_message, index_message, update_index
from workers import JobContext, task

ENCRYPTED = "stored encrypted (index_encrypted_messages is off)"


@task(queue=QueueName.INDEXING, name="index-message")
async def index_message_task(ctx: JobContext, job: IndexingJob) -> IndexingResult:
    store = await service(ctx, message_store)
    if job.operation == "delete":
        async with store.transaction() as session:
            changed = await delete_from_index(session, job.message_id)
        return IndexingResult(message_id=job.message_id, operation="delete", changed=changed)
    async with store.transaction() as session:
        message = await get_message(session, job.message_id)
    if message is not None and message.encrypted and not ctx["settings"].index_encrypted_messages:
        return IndexingResult(
            message_id=job.message_id, operation=job.operation, changed=False, skipped=ENCRYPTED
        )
    # Decrypted outside any transaction: SQLite's write lock is not held through the crypto.
    text = job.content if job.content is not None else await _stored_text(ctx, job, message)
    async with store.transaction() as session:
        if job.operation == "update":
            changed = await update_index(session, job.message_id, text)
            if changed or message is None:
                return IndexingResult(
                    message_id=job.message_id, operation="update", changed=changed
                )
        conversation_id = job.conversation_id or (message.conversation_id if message else None)
        sender_id = job.sender_id or (message.sender_id if message else None)
        if conversation_id is None or sender_id is None:
            raise MessageNotFound(
                f"message {job.message_id!r} is not in the store: the job needs "
                "conversationId and senderId to index it"
            )
        await index_message(
            session,
            message_id=job.message_id,
            conversation_id=conversation_id,
            sender_id=sender_id,
            text=text,
        )
    return IndexingResult(message_id=job.message_id, operation=job.operation, changed=True)


async def _stored_text(ctx: JobContext, job: IndexingJob, message: Message | None) -> str:
    """The stored message's plaintext, for a job that carries no content."""
    if message is None:
        raise MessageNotFound(
            f"message {job.message_id!r} is not in the store and the job has no content"
        )
    if not message.encrypted:
        return message.content
    keys = await service(ctx, keyring)
    envelope = Envelope.from_text(message.content)
    return (await decrypt_async(keys, envelope, message_id=message.id)).decode()
