"""The HTTP routes: post a message, broadcast, follow a job, search."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, status

from examples.webapp.schemas import (
    BroadcastAccepted,
    Hit,
    MessageAccepted,
    MessageJobs,
    NotificationAccepted,
    PostBroadcast,
    PostMessage,
)
from tasks.batch_sending import batch_send
from tasks.message_delivery import send_message
from tasks.message_indexing import index_message_task
from tasks.message_notification import send_notification
from tasks.payloads import BatchSend, IndexingJob, SendMessage, SendNotification
from tasks.store import MessageStore, get_message, save_message, search
from workers.integrations.asgi import PostroomClientDep
from workers.registry import JobRequest
from workers.store.job_status import JobInfo
from workers.store.priority import Priority

router = APIRouter()

PREVIEW_LENGTH = 80


def get_store(request: Request) -> MessageStore:
    store: MessageStore = request.state.store
    return store


StoreDep = Annotated[MessageStore, Depends(get_store)]
# The usual HTTP idempotency key, for clients that do not put an id in the body.
IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", min_length=1, max_length=100)
]


def message_jobs(
    conversation_id: str, message_id: str, body: PostMessage, priority: Priority
) -> tuple[list[JobRequest[Any]], MessageJobs]:
    """A delivery and an in-app notification per recipient, and one indexing job.

    The job ids derive from the message id, so a retried request enqueues nothing twice.
    """
    requests: list[JobRequest[Any]] = []
    delivery: dict[str, str] = {}
    notification: dict[str, str] = {}
    for recipient in body.recipient_ids:
        delivery[recipient] = f"{message_id}:{recipient}"
        message = SendMessage(
            message_id=message_id,
            sender_id=body.sender_id,
            recipient_id=recipient,
            conversation_id=conversation_id,
            content=body.content,
        )
        requests.append(
            send_message.call(message).with_options(job_id=delivery[recipient], priority=priority)
        )
        notification[recipient] = f"{message_id}:{recipient}:notify"
        notice = SendNotification(
            recipient_id=recipient,
            type="in_app",
            title="New message from $sender",
            message="$preview",
            variables={"sender": body.sender_id, "preview": body.content[:PREVIEW_LENGTH]},
            message_id=message_id,
        )
        requests.append(
            send_notification.call(notice).with_options(
                job_id=notification[recipient], priority=priority
            )
        )
    indexing = f"{message_id}:index"
    index = IndexingJob(message_id=message_id, operation="index")
    requests.append(
        index_message_task.call(index).with_options(job_id=indexing, priority=Priority.LOW)
    )
    return requests, MessageJobs(delivery=delivery, notification=notification, indexing=indexing)


@router.post(
    "/conversations/{conversation_id}/messages",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Store a message and enqueue its delivery, notifications and indexing",
)
async def post_message(
    conversation_id: str,
    body: PostMessage,
    client: PostroomClientDep,
    store: StoreDep,
    idempotency_key: IdempotencyKey = None,
) -> MessageAccepted:
    """`messageId` (or the `Idempotency-Key` header) makes a retried request a no-op."""
    message_id = body.message_id or idempotency_key or uuid.uuid4().hex
    priority = Priority.URGENT if body.urgent else Priority.NORMAL
    async with store.transaction() as session:
        stored = await save_message(
            session,
            message_id=message_id,
            conversation_id=conversation_id,
            sender_id=body.sender_id,
            content=body.content,
        )
    requests, jobs = message_jobs(conversation_id, message_id, body, priority)
    # Stored first, then enqueued in one round trip: a worker never looks for a message that
    # is not there yet, and a crash in between leaves a message a retried POST completes.
    await client.enqueue_many(requests)
    return MessageAccepted(message_id=message_id, priority=priority, stored=stored, jobs=jobs)


@router.post(
    "/broadcasts",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Send one message to many recipients (a batch-send job)",
)
async def post_broadcast(
    body: PostBroadcast, client: PostroomClientDep, idempotency_key: IdempotencyKey = None
) -> BroadcastAccepted:
    """`broadcastId` (or the `Idempotency-Key` header) makes a retried request a no-op."""
    batch = BatchSend.model_validate(body.model_dump(exclude={"urgent", "broadcast_id"}))
    handle = await client.enqueue(
        batch_send.call(batch),
        job_id=body.broadcast_id or idempotency_key or f"broadcast:{uuid.uuid4().hex}",
        priority=Priority.URGENT if body.urgent else Priority.NORMAL,
    )
    return BroadcastAccepted(
        batch_job_id=handle.job_id, recipients=len(batch.recipient_ids), created=handle.created
    )


@router.post(
    "/notifications",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Send one notification (push, e-mail, SMS or in-app): a send-notification job",
)
async def post_notification(
    body: SendNotification, client: PostroomClientDep, idempotency_key: IdempotencyKey = None
) -> NotificationAccepted:
    """`notificationId` (or the `Idempotency-Key` header) makes a retried request a no-op."""
    key = body.notification_id or idempotency_key
    handle = await client.enqueue(
        send_notification.call(body), job_id=f"notify:{key}" if key else None
    )
    return NotificationAccepted(job_id=handle.job_id, created=handle.created)


@router.get("/jobs/{job_id}", summary="A job's state, progress, tries and result or error")
async def get_job(job_id: str, client: PostroomClientDep) -> JobInfo:
    info = await client.job_info(job_id)
    if info is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id!r} (or it expired)")
    return info


@router.get("/search", summary="Messages matching any word of q, best first")
async def search_messages(
    store: StoreDep,
    q: Annotated[str, Query(min_length=1, max_length=500)],
    conversation_id: Annotated[str | None, Query(alias="conversationId")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> list[Hit]:
    async with store.transaction() as session:
        hits = await search(session, q, conversation_id=conversation_id, limit=limit)
        messages = [await get_message(session, hit.message_id) for hit in hits]
    return [
        Hit(
            message_id=hit.message_id,
            conversation_id=hit.conversation_id,
            sender_id=hit.sender_id,
            rank=hit.rank,
            content=message.content if message is not None and not message.encrypted else None,
        )
        for hit, message in zip(hits, messages, strict=True)
    ]


@router.get("/healthz", include_in_schema=False)
async def healthz(client: PostroomClientDep) -> dict[str, bool]:
    return {"redis": bool(await client.redis.ping())}
