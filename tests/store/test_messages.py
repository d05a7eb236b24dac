"""Messages, deliveries and notifications: idempotent writes, receipts that only move forward."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.exc import StatementError

from tasks.store import (
    Delivery,
    DeliveryStatus,
    MessageStore,
    NotificationStatus,
    get_delivery,
    get_message,
    list_notifications,
    mark_delivered,
    mark_failed,
    mark_notification_read,
    mark_read,
    record_sent,
    save_message,
    store_notification,
)
from tasks.store.models import Conversation, Message
from tests.store.helpers import count_rows

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


async def _message(store: MessageStore, message_id: str = "m1") -> None:
    async with store.transaction() as session:
        await save_message(
            session, message_id=message_id, conversation_id="c1", sender_id="alice", content="hi"
        )


async def test_saving_a_message_twice_keeps_the_first(store: MessageStore) -> None:
    async with store.transaction() as session:
        first = await save_message(
            session,
            message_id="m1",
            conversation_id="c1",
            sender_id="alice",
            content="c2VjcmV0",
            encrypted=True,
            key_id="k1",
            created_at=T0.astimezone(timezone(timedelta(hours=2))),
        )
    async with store.transaction() as session:
        again = await save_message(
            session, message_id="m1", conversation_id="c1", sender_id="alice", content="other"
        )
        message = await get_message(session, "m1")
    assert (first, again) == (True, False)
    assert message is not None
    assert (message.content, message.encrypted, message.key_id) == ("c2VjcmV0", True, "k1")
    # Any zone in, UTC out, on both backends.
    assert message.created_at == T0
    assert message.created_at.tzinfo is UTC
    assert await count_rows(store, Message) == 1
    assert await count_rows(store, Conversation) == 1


async def test_a_naive_timestamp_is_refused(store: MessageStore) -> None:
    with pytest.raises(StatementError, match="naive datetime"):
        async with store.transaction() as session:
            await save_message(
                session,
                message_id="m1",
                conversation_id="c1",
                sender_id="alice",
                content="hi",
                created_at=datetime(2025, 1, 1),  # no time zone, on purpose
            )


async def test_a_retried_send_leaves_one_delivery(store: MessageStore) -> None:
    await _message(store)
    async with store.transaction() as session:
        first = await record_sent(session, "m1", "bob", at=T0)
    async with store.transaction() as session:
        again = await record_sent(session, "m1", "bob", at=T0 + timedelta(seconds=5))
        delivery = await get_delivery(session, "m1", "bob")
    assert (first, again) == (True, False)
    assert await count_rows(store, Delivery) == 1
    assert delivery is not None
    assert (delivery.status, delivery.sent_at) == (DeliveryStatus.SENT, T0)


async def test_receipts_never_go_backwards(store: MessageStore) -> None:
    await _message(store)
    read_at = T0 + timedelta(minutes=2)
    async with store.transaction() as session:
        await record_sent(session, "m1", "bob", at=T0)
        assert await mark_read(session, "m1", "bob", at=read_at)
        # A late "delivered" receipt and a stale failure change nothing once it is read.
        assert not await mark_delivered(session, "m1", "bob", at=T0 + timedelta(minutes=3))
        assert not await mark_failed(session, "m1", "bob", "timeout", at=T0 + timedelta(minutes=4))
        assert not await mark_read(session, "m1", "bob", at=T0 + timedelta(minutes=5))
    async with store.transaction() as session:
        delivery = await get_delivery(session, "m1", "bob")
    assert delivery is not None
    assert delivery.status is DeliveryStatus.READ
    assert (delivery.sent_at, delivery.delivered_at, delivery.read_at) == (T0, read_at, read_at)
    assert (delivery.failed_at, delivery.failure_reason) == (None, None)


async def test_receipts_in_order_and_before_the_send_is_recorded(store: MessageStore) -> None:
    await _message(store)
    async with store.transaction() as session:
        # The device's receipt can beat the delivery task's own bookkeeping.
        assert await mark_delivered(session, "m1", "bob", at=T0 + timedelta(seconds=1))
        assert not await record_sent(session, "m1", "bob", at=T0)
        assert await mark_read(session, "m1", "bob", at=T0 + timedelta(seconds=9))
        delivery = await get_delivery(session, "m1", "bob")
    assert delivery is not None
    assert delivery.status is DeliveryStatus.READ
    assert delivery.delivered_at == T0 + timedelta(seconds=1)
    assert delivery.read_at == T0 + timedelta(seconds=9)


async def test_a_failure_is_recorded_and_a_retry_sends_again(store: MessageStore) -> None:
    await _message(store)
    async with store.transaction() as session:
        assert await record_sent(session, "m1", "bob", at=T0)
        assert await mark_failed(session, "m1", "bob", "provider 503", at=T0 + timedelta(1))
        failed = await get_delivery(session, "m1", "bob")
        assert failed is not None
        assert (failed.status, failed.failure_reason) == (DeliveryStatus.FAILED, "provider 503")
        assert failed.failed_at == T0 + timedelta(1)
        assert await record_sent(session, "m1", "bob", at=T0 + timedelta(2))
        assert await mark_delivered(session, "m1", "bob", at=T0 + timedelta(3))
        assert not await mark_failed(session, "m1", "bob", "late error")
    async with store.transaction() as session:
        delivery = await get_delivery(session, "m1", "bob")
    assert delivery is not None
    assert delivery.status is DeliveryStatus.DELIVERED
    assert delivery.failure_reason == "provider 503"


async def test_in_app_notifications_are_stored_once_and_listed_newest_first(
    store: MessageStore,
) -> None:
    await _message(store)
    async with store.transaction() as session:
        for n in range(3):
            await store_notification(
                session,
                notification_id=f"n{n}",
                recipient_id="bob",
                title=f"title {n}",
                body="body",
                message_id="m1",
                data={"conversation": "c1", "n": n},
                created_at=T0 + timedelta(minutes=n),
            )
        # The retried task's second attempt: same id, nothing new.
        await store_notification(
            session, notification_id="n0", recipient_id="bob", title="again", body="again"
        )
        await store_notification(session, recipient_id="carol", title="other", body="other")
    async with store.transaction() as session:
        assert await mark_notification_read(session, "n1", at=T0 + timedelta(hours=1))
        assert not await mark_notification_read(session, "n1")
        listed = await list_notifications(session, "bob")
        unread = await list_notifications(session, "bob", unread_only=True)
    assert [n.id for n in listed] == ["n2", "n1", "n0"]
    assert listed[2].title == "title 0"
    assert listed[0].data == {"conversation": "c1", "n": 2}
    assert listed[1].status is NotificationStatus.READ
    assert listed[1].read_at == T0 + timedelta(hours=1)
    assert [n.id for n in unread] == ["n2", "n0"]
    assert {n.status for n in unread} == {NotificationStatus.SENT}
