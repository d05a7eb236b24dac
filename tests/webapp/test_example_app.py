"""The example app end to end: HTTP in, a real worker, WebSockets and search out."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import httpx
import orjson
from sqlalchemy import func, select
from websockets.asyncio.client import ClientConnection, connect

from config.queues import QueueName
from tasks.store import Delivery, MessageStore, create_engine, database_url
from tests.conftest import eventually
from tests.tasks.conftest import inbox
from tests.webapp.conftest import ExampleApp
from workers.client import PostroomClient

DEADLINE = 60.0


async def subscribed(example: ExampleApp, user_id: str) -> ClientConnection:
    """A WebSocket of `user_id`, once the app confirmed its subscription."""
    socket = await connect(f"{example.ws_url}/ws/{user_id}")
    first = orjson.loads(await asyncio.wait_for(socket.recv(), DEADLINE))
    assert first == {"type": "subscribed", "userId": user_id}
    return socket


async def next_event(socket: ClientConnection, kind: str = "message") -> dict[str, Any]:
    """The next event of type `kind` on the socket (events of other types pass by)."""
    async with asyncio.timeout(DEADLINE):
        while True:
            event: dict[str, Any] = orjson.loads(await socket.recv())
            if event["type"] == kind:
                return event


async def job(http: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    response = await http.get(f"/jobs/{job_id}")
    assert response.status_code == 200, response.text
    info: dict[str, Any] = response.json()
    return info


async def test_posted_message_reaches_recipients_socket_and_search_and_its_read_receipt_the_sender(
    example_app: ExampleApp,
) -> None:
    async with httpx.AsyncClient(base_url=example_app.base_url, timeout=30) as http:
        socket = await subscribed(example_app, "bob")
        sender = await subscribed(example_app, "alice")
        try:
            body = {
                "senderId": "alice",
                "recipientIds": ["bob"],
                "content": "Lunch at the harbour at noon?",
                "urgent": True,
            }
            response = await http.post("/conversations/c-lunch/messages", json=body)
            assert response.status_code == 202, response.text
            accepted = response.json()
            message_id = accepted["messageId"]
            assert accepted["priority"] == "urgent" and accepted["stored"] is True
            jobs = accepted["jobs"]

            event = await next_event(socket)
            assert event["messageId"] == message_id
            assert event["conversationId"] == "c-lunch"
            assert event["senderId"] == "alice"
            assert event["content"] == "Lunch at the harbour at noon?"

            # Bob's client says it read the message; Alice's socket hears of it.
            await socket.send(orjson.dumps({"type": "receipt", "messageId": message_id}))
            error = await next_event(socket, "error")
            assert error["detail"] == [{"field": "status", "message": "Field required"}]
            receipt = {"type": "receipt", "messageId": message_id, "status": "read"}
            await socket.send(orjson.dumps(receipt).decode())  # a text frame; the first was binary
            heard = await next_event(sender, "receipt")
            assert heard["messageId"] == message_id
            assert (heard["recipientId"], heard["status"]) == ("bob", "read")
        finally:
            await socket.close()
            await sender.close()

        delivery = jobs["delivery"]["bob"]

        async def delivered() -> bool:
            return bool((await job(http, delivery))["state"] == "complete")

        await eventually(delivered, "the delivery job completed", DEADLINE)
        info = await job(http, delivery)
        assert info["task"] == "send-message"
        assert info["progress"]["percentage"] == 100

        async def found() -> bool:
            response = await http.get("/search", params={"q": "harbour"})
            assert response.status_code == 200, response.text
            return message_id in [hit["messageId"] for hit in response.json()]

        await eventually(found, "search found the message", DEADLINE)
        [hit] = (await http.get("/search", params={"q": "harbour noon"})).json()
        assert hit["content"] == "Lunch at the harbour at noon?"

        # The same message id again (a client retrying its POST): nothing new is stored or sent.
        again = await http.post(
            "/conversations/c-lunch/messages", json={**body, "messageId": message_id}
        )
        assert again.status_code == 202
        assert again.json()["stored"] is False and again.json()["jobs"] == jobs
        # Or as the Idempotency-Key header.
        keyed = await http.post(
            "/conversations/c-lunch/messages", json=body, headers={"Idempotency-Key": message_id}
        )
        assert keyed.json()["messageId"] == message_id and keyed.json()["stored"] is False


async def test_bad_message_is_refused_naming_the_field(example_app: ExampleApp) -> None:
    async with httpx.AsyncClient(base_url=example_app.base_url, timeout=30) as http:
        response = await http.post(
            "/conversations/c1/messages", json={"senderId": "alice", "content": "hi"}
        )
        assert response.status_code == 422
        assert ["body", "recipientIds"] in [error["loc"] for error in response.json()["detail"]]
        assert (await http.get("/jobs/no-such-job")).status_code == 404


async def test_broadcast_to_1000_users_reports_100_percent_and_each_gets_exactly_one_message(
    example_app: ExampleApp,
) -> None:
    recipients = [f"fan-{n:04d}" for n in range(1_000)]
    watched = recipients[:: len(recipients) // 4]  # four of them on real WebSockets
    settings = example_app.settings
    async with (
        httpx.AsyncClient(base_url=example_app.base_url, timeout=30) as http,
        inbox(settings) as box,
        await PostroomClient.connect(settings) as client,
    ):
        sockets = [await subscribed(example_app, user) for user in watched]
        try:
            response = await http.post(
                "/broadcasts",
                json={
                    "senderId": "newsroom",
                    "recipientIds": recipients,
                    "content": "Big news, $name!",
                    "recipientVariables": {user: {"name": user} for user in recipients},
                    "chunkSize": 100,
                    "broadcastId": f"news-{uuid.uuid4().hex}",
                },
            )
            assert response.status_code == 202, response.text
            accepted = response.json()
            assert accepted["recipients"] == 1_000 and accepted["created"] is True
            batch_id = accepted["batchJobId"]

            async def finished() -> bool:
                return bool((await job(http, batch_id))["state"] == "complete")

            await eventually(finished, "the batch job completed", DEADLINE)
            info = await job(http, batch_id)
            assert info["progress"]["percentage"] == 100
            assert info["progress"]["data"] == {"recipients": 1_000, "of": 1_000}

            def messages() -> Counter[str]:
                return Counter(
                    user
                    for user, events in box.events.items()
                    for event in events
                    if event["type"] == "message"
                )

            async def all_sent() -> bool:
                stats = await client.queue_stats(QueueName.DELIVERY)
                idle = stats.waiting + stats.active + stats.delayed == 0
                return idle and sum(messages().values()) >= 1_000

            await eventually(all_sent, "every recipient's message was published", DEADLINE)
            assert messages() == Counter({user: 1 for user in recipients})
            for user, socket in zip(watched, sockets, strict=True):
                event = await next_event(socket)
                assert event["content"] == f"Big news, {user}!"
        finally:
            for socket in sockets:
                await socket.close()

    # And in the store: one delivery row per recipient.
    engine = create_engine(database_url(None, settings.data_dir))
    async with MessageStore(engine) as store, store.transaction() as session:
        rows = await session.execute(
            select(Delivery.recipient_id, func.count())
            .where(Delivery.message_id.like(f"{batch_id}:%"))
            .group_by(Delivery.recipient_id)
        )
        assert {user: count for user, count in rows} == {user: 1 for user in recipients}


async def test_admin_api_is_mounted_under_admin_and_masks_message_bodies(
    example_app: ExampleApp,
) -> None:
    async with httpx.AsyncClient(base_url=example_app.base_url, timeout=30) as http:
        assert (await http.get("/admin/health/live")).status_code == 200
        body = {"senderId": "carol", "recipientIds": ["dave"], "content": "the secret plan"}
        accepted = (await http.post("/conversations/c-plan/messages", json=body)).json()
        delivery = accepted["jobs"]["delivery"]["dave"]

        async def delivered() -> bool:
            return bool((await job(http, delivery))["state"] == "complete")

        await eventually(delivered, "the delivery job completed", DEADLINE)
        response = await http.get(f"/admin/jobs/{delivery}")
        assert response.status_code == 200, response.text
        detail = response.json()
        assert detail["task"] == "send-message" and detail["state"] == "complete"
        assert detail["payload"]["message"]["content"] == "***"
        assert detail["payload"]["message"]["recipientId"] == "dave"
        numbers = (await http.get("/admin/queues/message-delivery")).json()
        assert numbers["completed"] >= 1
