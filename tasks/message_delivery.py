"""The message-delivery queue: `send-message` and `delivery-confirmation`.

`send-message` stores the message (sealed first when it requires encryption), records it as
sent to the recipient and publishes it on the recipient's real-time channel. Each step is
idempotent, so a retry changes no row twice: the first stored copy wins and the delivery row is
keyed by (message, recipient). Only the publish repeats; subscribers de-duplicate by message id.
"""

from __future__ import annotations

from config.queues import QueueName
from tasks.encryption import encrypt_async
from tasks.payloads import DeliveryConfirmation, DeliveryRecorded, MessageSent, SendMessage, now
from tasks.realtime import MessageEvent, ReceiptEvent, publish
from tasks.services import keyring, message_store, service
from tasks.store import (
    get_message,
    mark_delivered,
    mark_failed,
    mark_read,
    record_sent,
    save_message,
)
from workers import JobContext, task


# On a partitioned queue a conversation's messages share a partition (and a batch's chunks
# their checkpoint's slot).
@task(queue=QueueName.DELIVERY, name="send-message", partition_by="message.conversationId")
async def send_message(ctx: JobContext, message: SendMessage) -> MessageSent:
    """Store, record and publish one message for one recipient."""
    store = await service(ctx, message_store)
    content, key_id = message.content, None
    if message.requires_encryption:
        envelope = await encrypt_async(
            await service(ctx, keyring), message.content, message_id=message.message_id
        )
        content, key_id = envelope.to_text(), envelope.key_id
    await ctx["progress"](percentage=25, step="validated", current_step=1, total_steps=3)
    async with store.transaction() as session:
        stored = await save_message(
            session,
            message_id=message.message_id,
            conversation_id=message.conversation_id,
            sender_id=message.sender_id,
            content=content,
            encrypted=message.requires_encryption,
            key_id=key_id,
            created_at=message.created_at,
        )
        await record_sent(session, message.message_id, message.recipient_id)
    await ctx["progress"](percentage=60, step="stored", current_step=2, total_steps=3)
    event = MessageEvent(
        message_id=message.message_id,
        conversation_id=message.conversation_id,
        sender_id=message.sender_id,
        content=message.content,
        created_at=message.created_at,
    )
    listeners = await publish(ctx["redis"], ctx["settings"].key_prefix, message.recipient_id, event)
    await ctx["progress"](percentage=100, step="published", current_step=3, total_steps=3)
    return MessageSent(
        message_id=message.message_id,
        recipient_id=message.recipient_id,
        stored=stored,
        encrypted=message.requires_encryption,
        listeners=listeners,
    )


@task(queue=QueueName.DELIVERY, name="delivery-confirmation")
async def delivery_confirmation(ctx: JobContext, receipt: DeliveryConfirmation) -> DeliveryRecorded:
    """Record a delivered, read or failed receipt, and tell the sender when it moved forward.

    Receipts only move a delivery forward (sent, delivered, read), whatever order they come
    in; a failure needs `failureReason` and is ignored once the message arrived.
    """
    store = await service(ctx, message_store)
    async with store.transaction() as session:
        if receipt.status == "delivered":
            changed = await mark_delivered(
                session, receipt.message_id, receipt.recipient_id, at=receipt.at
            )
        elif receipt.status == "read":
            changed = await mark_read(
                session, receipt.message_id, receipt.recipient_id, at=receipt.at
            )
        else:
            changed = await mark_failed(
                session,
                receipt.message_id,
                receipt.recipient_id,
                receipt.failure_reason or "",
                at=receipt.at,
            )
        message = await get_message(session, receipt.message_id) if changed else None
    if message is not None:
        event = ReceiptEvent(
            message_id=receipt.message_id,
            recipient_id=receipt.recipient_id,
            status=receipt.status,
            at=receipt.at or now(),
        )
        await publish(ctx["redis"], ctx["settings"].key_prefix, message.sender_id, event)
    return DeliveryRecorded(
        message_id=receipt.message_id,
        recipient_id=receipt.recipient_id,
        status=receipt.status,
        changed=changed,
    )
