"""A real uvicorn server on a free 127.0.0.1 port, run in a thread with its own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator

import uvicorn
from starlette.types import ASGIApp


@contextlib.asynccontextmanager
async def live_server(app: ASGIApp, within: float = 30) -> AsyncIterator[str]:
    """Serve `app` until the block ends; yields its base URL (with a trailing slash).

    A thread of its own keeps uvicorn off the test's event loop (where a worker may run) and
    away from signal handlers (it installs none outside the main thread); the app's lifespan
    runs in that thread's loop.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + within
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the live server did not start")
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, within)
        sock.close()
