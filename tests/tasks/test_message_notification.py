"""send-notification on each channel, against a local HTTP server and a local SMTP server."""

from __future__ import annotations

import pytest
from pytest_httpserver import HTTPServer

from config.settings import PostroomSettings
from tasks.message_notification import send_notification
from tasks.payloads import SendNotification
from tasks.store import Channel, MessageStore, NotificationStatus, list_notifications, save_message
from tests.conftest import eventually
from tests.mail_server import SmtpServer
from tests.tasks.conftest import inbox
from workers.client import PostroomClient
from workers.errors import PayloadValidationError
from workers.runner.supervisor import Supervisor
from workers.store.job_status import JobState

BODY = "Hi $name, you have a new message from $sender"


def notification(kind: str, **overrides: object) -> SendNotification:
    fields = {
        "recipientId": "bob",
        "type": kind,
        "title": "New message",
        "message": BODY,
        "variables": {"name": "Bob", "sender": "Alice"},
        "messageId": "m-1",
    }
    return SendNotification.model_validate(fields | overrides)


async def status_of(db: MessageStore, notification_id: str) -> NotificationStatus:
    async with db.transaction() as session:
        stored = await list_notifications(session, "bob", channel=None)
    return next(n.status for n in stored if n.id == notification_id)


async def test_push_retries_a_500_then_is_sent(
    task_client: PostroomClient, worker: Supervisor, httpserver: HTTPServer, db: MessageStore
) -> None:
    httpserver.expect_ordered_request("/push", method="POST").respond_with_data("", status=500)
    httpserver.expect_ordered_request("/push", method="POST").respond_with_json({"id": "p1"})
    push = notification("push", to="device-1", pushPayload={"conversationId": "c-1"})
    handle = await task_client.enqueue(send_notification.call(push))
    sent = await handle.result(timeout=30)

    info = await handle.info()
    assert info is not None and info.tries == 2
    assert [request.get_json() for request, _ in httpserver.log] == [
        {
            "to": "device-1",
            "title": "New message",
            "body": "Hi Bob, you have a new message from Alice",
            "data": {"conversationId": "c-1"},
        }
    ] * 2
    assert await status_of(db, sent.notification_id) is NotificationStatus.SENT
    async with db.transaction() as session:
        [stored] = await list_notifications(session, "bob", channel=Channel.PUSH)
    # The message is not stored (yet): its id is kept in the data, unlinked.
    assert stored.message_id is None and stored.data["messageId"] == "m-1"


async def test_a_400_is_dead_lettered_with_its_reason(
    task_client: PostroomClient, worker: Supervisor, httpserver: HTTPServer, db: MessageStore
) -> None:
    httpserver.expect_request("/sms", method="POST").respond_with_data("bad number", status=400)
    handle = await task_client.enqueue(send_notification.call(notification("sms", to="+1555")))

    async def dead_lettered() -> bool:
        info = await handle.info()
        return info is not None and info.state is JobState.DEAD_LETTERED

    await eventually(dead_lettered, "the SMS job is dead-lettered")
    letter = await task_client.dead_letters.get(handle.job_id)
    assert letter is not None and letter.reason == "permanent"
    assert "rejected, HTTP 400" in letter.errors[-1].message
    assert len(httpserver.log) == 1  # a permanent failure is not retried
    assert httpserver.log[0][0].form["body"] == "Hi Bob, you have a new message from Alice"
    assert await status_of(db, handle.job_id) is NotificationStatus.FAILED


async def test_email_arrives_at_the_smtp_server(
    task_client: PostroomClient, worker: Supervisor, smtp_server: SmtpServer, db: MessageStore
) -> None:
    email = notification("email", to="Bob <bob@example.test>", notificationId="n-email")
    await (await task_client.enqueue(send_notification.call(email))).result(timeout=30)

    [received] = smtp_server.received
    assert received.rcpt_tos == ["bob@example.test"]
    assert received.tls and received.authenticated
    assert received.message["Subject"] == "New message"
    assert received.message.get_content().strip() == "Hi Bob, you have a new message from Alice"
    assert await status_of(db, "n-email") is NotificationStatus.SENT


async def test_in_app_is_stored_in_the_inbox_and_published(
    task_settings: PostroomSettings,
    task_client: PostroomClient,
    worker: Supervisor,
    db: MessageStore,
) -> None:
    async with db.transaction() as session:  # the message it is about is stored
        await save_message(
            session, message_id="m-1", conversation_id="c-1", sender_id="alice", content="hi"
        )
    async with inbox(task_settings) as box:
        in_app = notification("in_app", notificationId="n-1")
        sent = await (await task_client.enqueue(send_notification.call(in_app))).result(30)
        await box.wait_for(1)

    assert sent.listeners == 1
    assert box.of("bob")[0]["notificationId"] == "n-1"
    assert box.of("bob")[0]["body"] == "Hi Bob, you have a new message from Alice"
    async with db.transaction() as session:
        [stored] = await list_notifications(session, "bob", channel=Channel.IN_APP)
    assert (stored.id, stored.status, stored.message_id) == ("n-1", NotificationStatus.SENT, "m-1")


async def test_a_channel_address_and_the_template_variables_are_checked(
    task_client: PostroomClient, worker: Supervisor
) -> None:
    push_without_address = notification("in_app").model_dump(by_alias=True) | {"type": "push"}
    with pytest.raises(PayloadValidationError, match="to is required for a push notification"):
        await task_client.enqueue_payload(
            "send-notification", {"notification": push_without_address}
        )
    handle = await task_client.enqueue(
        send_notification.call(notification("in_app", variables={"name": "Bob"}))
    )

    async def dead_lettered() -> bool:
        info = await handle.info()
        return info is not None and info.state is JobState.DEAD_LETTERED

    await eventually(dead_lettered, "the job missing a template variable is dead-lettered")
    letter = await task_client.dead_letters.get(handle.job_id)
    assert letter is not None and letter.errors[-1].type == "TemplateError"
    assert "'sender'" in letter.errors[-1].message
