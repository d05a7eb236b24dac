"""`WS /ws/{user_id}`: the user's real-time channel (tasks.realtime) out, receipts in.

The first frame, `{"type": "subscribed"}`, is sent once Redis confirmed the subscription:
every event published after it reaches this socket. Each event is forwarded as published
(`{"type": "message" | "receipt" | "notification", ...}`); delivery is at least once, so
clients de-duplicate by `messageId`. The client acknowledges a message with
`{"type": "receipt", "messageId": ..., "status": "delivered" | "read"}`, which becomes a
`delivery-confirmation` job (its sender then gets a receipt event); a frame that does not
validate is answered with `{"type": "error", "detail": [...]}` naming the field.

Each socket holds its own Redis connection, which suits an example; a server with many
sockets per process would share one subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Literal

import orjson
from fastapi import APIRouter, WebSocket
from pydantic import ValidationError
from starlette.websockets import WebSocketDisconnect

from tasks.message_delivery import delivery_confirmation
from tasks.payloads import DeliveryConfirmation, Id, Payload
from tasks.realtime import user_channel
from workers.client import PostroomClient
from workers.integrations.asgi import PostroomClientDep

router = APIRouter()

# How long to wait for Redis to confirm the subscription before giving up on the socket.
SUBSCRIBE_TIMEOUT = 10.0


class Receipt(Payload):
    """What the recipient's client says about a message it got."""

    type: Literal["receipt"]
    message_id: Id
    status: Literal["delivered", "read"]


class Connection:
    """One user's socket: sends from the forwarder and the receipt loop never interleave."""

    def __init__(self, websocket: WebSocket, client: PostroomClient, user_id: str) -> None:
        self.websocket = websocket
        self.client = client
        self.user_id = user_id
        self._send_lock = asyncio.Lock()

    async def send(self, text: str) -> None:
        async with self._send_lock:
            await self.websocket.send_text(text)

    async def forward(self, pubsub: Any) -> None:
        async for message in pubsub.listen():
            if message["type"] == "message":
                await self.send(message["data"].decode())

    async def receive(self) -> None:
        """Turn the client's receipts (text or binary frames) into jobs until it goes away."""
        while True:
            frame = await self.websocket.receive()
            if frame["type"] == "websocket.disconnect":
                return
            data = frame.get("text") or frame.get("bytes") or b""
            try:
                receipt = Receipt.model_validate_json(data)
                confirmation = DeliveryConfirmation(
                    message_id=receipt.message_id,
                    recipient_id=self.user_id,
                    status=receipt.status,
                )
            except ValidationError as exc:
                detail = [
                    {"field": ".".join(map(str, err["loc"])), "message": err["msg"]}
                    for err in exc.errors()
                ]
                await self.send(orjson.dumps({"type": "error", "detail": detail}).decode())
                continue
            await self._confirm(receipt, confirmation)

    async def _confirm(self, receipt: Receipt, confirmation: DeliveryConfirmation) -> None:
        await self.client.enqueue(
            delivery_confirmation.call(confirmation),
            # A receipt sent twice (a reconnecting client) is recorded once.
            job_id=f"receipt:{receipt.message_id}:{self.user_id}:{receipt.status}",
        )


@router.websocket("/ws/{user_id}")
async def realtime(websocket: WebSocket, user_id: str, client: PostroomClientDep) -> None:
    await websocket.accept()
    connection = Connection(websocket, client, user_id)
    pubsub = client.redis.pubsub()
    try:
        await pubsub.subscribe(user_channel(client.settings.key_prefix, user_id))
        confirmation = await pubsub.get_message(timeout=SUBSCRIBE_TIMEOUT)
        if confirmation is None or confirmation["type"] != "subscribe":
            await websocket.close(code=1011, reason="could not subscribe")
            return
        await websocket.send_json({"type": "subscribed", "userId": user_id})
        tasks = {
            asyncio.create_task(connection.forward(pubsub)),
            asyncio.create_task(connection.receive()),
        }
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for task in done:
            # A send to a socket that just closed is the client leaving, not an error.
            with contextlib.suppress(WebSocketDisconnect):
                task.result()
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
