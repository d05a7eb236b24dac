"""The message-notification queue: `send-notification` on push, e-mail, SMS or in-app.

The notification is stored first (id: the payload's or the job's, so a retry finds the same
row), then sent, then marked sent. A provider's 4xx (or SMTP 5xx) is a PermanentError: the
notification is marked failed and the job goes to the dead letters. A 5xx, timeout or lost
connection raises ProviderUnavailable, and the job retries with backoff; a 429 with
Retry-After defers it by that long without spending a try. A channel's rate limit
(`POSTROOM_RATE_LIMITS__SMS=10/s`) is taken before each send, cluster-wide. An in-app
notification is in the inbox once stored, and is published on the user's real-time channel.
Neither the body nor the provider's credentials reach a log line.
"""

from __future__ import annotations

from config.queues import QueueName
from tasks.notify import Channel, MessageTemplate, ProviderRejected, RenderedMessage
from tasks.payloads import NotificationSent, SendNotification
from tasks.realtime import NotificationEvent, publish
from tasks.services import email_channel, message_store, push_channel, service, sms_channel
from tasks.store import Channel as StoredChannel
from tasks.store import (
    MessageStore,
    NotificationStatus,
    get_message,
    set_notification_status,
    store_notification,
)
from workers import JobContext, task


@task(queue=QueueName.NOTIFICATION, name="send-notification")
async def send_notification(ctx: JobContext, notification: SendNotification) -> NotificationSent:
    rendered = MessageTemplate(notification.title, notification.message).render(
        notification.variables
    )
    notification_id = notification.notification_id or ctx["job_id"]
    store = await service(ctx, message_store)
    async with store.transaction() as session:
        # The message may not be stored yet (its delivery job runs on another queue) or at all
        # (a deployment keeping messages elsewhere): then its id stays in the data, unlinked.
        data = dict(notification.data)
        message_id = notification.message_id
        if message_id is not None and await get_message(session, message_id) is None:
            data.setdefault("messageId", message_id)
            message_id = None
        await store_notification(
            session,
            notification_id=notification_id,
            recipient_id=notification.recipient_id,
            channel=StoredChannel(notification.type),
            title=rendered.title,
            body=rendered.body,
            message_id=message_id,
            data=data,
            created_at=notification.created_at,
        )
    if notification.type == "in_app":
        event = NotificationEvent(
            notification_id=notification_id,
            title=rendered.title,
            body=rendered.body,
            message_id=notification.message_id,
            data=notification.data,
        )
        prefix = ctx["settings"].key_prefix
        listeners = await publish(ctx["redis"], prefix, notification.recipient_id, event)
        return NotificationSent(
            notification_id=notification_id, type=notification.type, listeners=listeners
        )
    assert notification.to is not None  # the payload's validator requires it
    # The channel's own limit (POSTROOM_RATE_LIMITS__SMS=10/s, ...), across every worker:
    # waits for this job's start slot, or defers the job to it; nothing when unset.
    await ctx["throttle"](notification.type)
    try:
        await _send(ctx, notification, notification.to, rendered)
    except ProviderRejected:
        await _set_status(store, notification_id, NotificationStatus.FAILED)
        raise
    await _set_status(store, notification_id, NotificationStatus.SENT)
    return NotificationSent(notification_id=notification_id, type=notification.type)


async def _send(
    ctx: JobContext, notification: SendNotification, to: str, message: RenderedMessage
) -> None:
    if notification.type == "push":
        push = await service(ctx, push_channel)
        await push.send(to, message, data=notification.data)
        return
    channel: Channel = await service(
        ctx, email_channel if notification.type == "email" else sms_channel
    )
    await channel.send(to, message)


async def _set_status(
    store: MessageStore, notification_id: str, status: NotificationStatus
) -> None:
    async with store.transaction() as session:
        await set_notification_status(session, notification_id, status)
