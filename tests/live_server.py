"""A real uvicorn server on a free 127.0.0.1 port, run in a thread with its own event loop."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp


@contextlib.contextmanager
def live_server(app: ASGIApp, within: float = 30) -> Iterator[str]:
    """Serve `app` until the block ends; yields its base URL (with a trailing slash).

    A thread of its own keeps uvicorn away from the test's loop and its signal handlers (it
    installs none outside the main thread); the app's lifespan runs in that thread's loop.
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
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(within)
        sock.close()
