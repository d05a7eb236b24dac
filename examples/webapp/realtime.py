"""`WS /ws/{user_id}`: forwards the user's real-time channel (tasks.realtime) to the socket.

The first frame, `{"type": "subscribed"}`, is sent once Redis confirmed the subscription:
every event published after it reaches this socket. Each event is forwarded as published
(`{"type": "message" | "receipt" | "notification", ...}`); delivery is at least once, so
clients de-duplicate by `messageId`. Each socket holds its own Redis connection, which suits
an example; a server with many sockets per process would share one subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from tasks.realtime import user_channel
from workers.integrations.asgi import PostroomClientDep

logger = logging.getLogger(__name__)

router = APIRouter()

# How long to wait for Redis to confirm the subscription before giving up on the socket.
SUBSCRIBE_TIMEOUT = 10.0


async def _forward(pubsub: Any, websocket: WebSocket) -> None:
    async for message in pubsub.listen():
        if message["type"] == "message":
            await websocket.send_text(message["data"].decode())


async def _until_disconnected(websocket: WebSocket) -> None:
    """Read (and ignore) what the client sends until it goes away."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await websocket.receive_text()


@router.websocket("/ws/{user_id}")
async def realtime(websocket: WebSocket, user_id: str, client: PostroomClientDep) -> None:
    await websocket.accept()
    pubsub = client.redis.pubsub()
    try:
        await pubsub.subscribe(user_channel(client.settings.key_prefix, user_id))
        confirmation = await pubsub.get_message(timeout=SUBSCRIBE_TIMEOUT)
        if confirmation is None or confirmation["type"] != "subscribe":
            await websocket.close(code=1011, reason="could not subscribe")
            return
        await websocket.send_json({"type": "subscribed", "userId": user_id})
        forward = asyncio.create_task(_forward(pubsub, websocket))
        closed = asyncio.create_task(_until_disconnected(websocket))
        done, pending = await asyncio.wait({forward, closed}, return_when=asyncio.FIRST_COMPLETED)
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
