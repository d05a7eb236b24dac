"""send-message and delivery-confirmation through a real worker, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from config.settings import PostroomSettings
from tasks.encryption import Envelope, load_keyring
from tasks.message_delivery import delivery_confirmation, send_message
from tasks.payloads import DeliveryConfirmation, SendMessage
from tasks.store import DeliveryStatus, MessageStore, get_delivery, get_message
from tests.tasks.conftest import inbox
from workers.client import PostroomClient
from workers.errors import PayloadValidationError
from workers.runner.supervisor import Supervisor

SECRET = "meet me at the usual place"


def message(**overrides: object) -> SendMessage:
    # The seed's camelCase field names, as a JavaScript service would send them.
    fields = {
        "messageId": "m-1",
        "senderId": "alice",
        "recipientId": "bob",
        "conversationId": "c-1",
        "content": SECRET,
        "requiresEncryption": True,
        "createdAt": "2026-11-01T12:00:00Z",
    }
    return SendMessage.model_validate(fields | overrides)


async def test_a_message_is_stored_encrypted_recorded_and_published_once(
    task_settings: PostroomSettings,
    task_client: PostroomClient,
    worker: Supervisor,
    db: MessageStore,
) -> None:
    async with inbox(task_settings) as box:
        handle = await task_client.enqueue(send_message.call(message()))
        sent = await handle.result(timeout=30)
        await box.wait_for(1)
        # The same message again, as a retry after a lost acknowledgement would send it.
        again = await (await task_client.enqueue(send_message.call(message()))).result(timeout=30)
        await box.wait_for(2)

    assert (sent.stored, sent.encrypted, sent.listeners) == (True, True, 1)
    assert (again.stored, again.listeners) == (False, 1)
    event = box.of("bob")[0]
    assert event == {
        "type": "message",
        "messageId": "m-1",
        "conversationId": "c-1",
        "senderId": "alice",
        "content": SECRET,
        "createdAt": "2026-11-01T12:00:00Z",
    }
    assert box.of("bob")[1]["messageId"] == event["messageId"]  # subscribers de-duplicate by it
    async with db.transaction() as session:
        stored = await get_message(session, "m-1")
        delivery = await get_delivery(session, "m-1", "bob")
    assert stored is not None and stored.encrypted and stored.key_id == "a"
    assert SECRET not in stored.content
    keyring = load_keyring(task_settings.encryption, task_settings.data_dir)
    plaintext = keyring.decrypt(Envelope.from_text(stored.content), message_id="m-1")
    assert plaintext.decode() == SECRET
    assert delivery is not None and delivery.status is DeliveryStatus.SENT


async def test_receipts_move_forward_and_tell_the_sender(
    task_settings: PostroomSettings,
    task_client: PostroomClient,
    worker: Supervisor,
    db: MessageStore,
) -> None:
    await (await task_client.enqueue(send_message.call(message()))).result(timeout=30)
    read_at = datetime(2026, 11, 1, 12, 5, tzinfo=UTC)
    async with inbox(task_settings) as box:
        read = DeliveryConfirmation(message_id="m-1", recipient_id="bob", status="read", at=read_at)
        first = await (await task_client.enqueue(delivery_confirmation.call(read))).result(30)
        # A "delivered" receipt that arrives late must not move the delivery back.
        late = read.model_copy(update={"status": "delivered", "at": read_at - timedelta(minutes=1)})
        second = await (await task_client.enqueue(delivery_confirmation.call(late))).result(30)
        await box.wait_for(1)

    assert (first.changed, second.changed) == (True, False)
    assert box.of("alice") == [
        {
            "type": "receipt",
            "messageId": "m-1",
            "recipientId": "bob",
            "status": "read",
            "at": "2026-11-01T12:05:00Z",
        }
    ]
    async with db.transaction() as session:
        delivery = await get_delivery(session, "m-1", "bob")
    assert delivery is not None
    assert delivery.status is DeliveryStatus.READ
    assert delivery.read_at == read_at and delivery.delivered_at == read_at


async def test_bad_payloads_are_refused_at_enqueue_naming_the_field(
    task_client: PostroomClient,
) -> None:
    with pytest.raises(PayloadValidationError, match=r"message\.recipientId"):
        await task_client.enqueue_payload(
            "send-message",
            {"message": {"messageId": "m", "senderId": "a", "conversationId": "c", "content": ""}},
        )
    with pytest.raises(PayloadValidationError, match="failureReason is required"):
        await task_client.enqueue_payload(
            "delivery-confirmation",
            {"receipt": {"messageId": "m", "recipientId": "b", "status": "failed"}},
        )
    # snake_case is accepted too.
    handle = await task_client.enqueue_payload(
        "delivery-confirmation",
        {
            "receipt": {
                "message_id": "m",
                "recipient_id": "b",
                "status": "failed",
                "failure_reason": "device unregistered",
            }
        },
    )
    assert handle.created
