"""The FastAPI/Starlette integration under a real uvicorn: one client per app, for routes,
WebSockets and mounted apps alike, opened at startup and closed at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
import uvicorn
from fastapi import Depends, FastAPI, WebSocket
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from websockets.asyncio.client import connect

from config.settings import PostroomSettings, load_settings
from tests.conftest import eventually, running_worker
from tests.sample_tasks import Greeting, echo
from tests.webapp.conftest import free_port
from workers.client import PostroomClient
from workers.events import InMemoryEventBus
from workers.integrations import open_client
from workers.integrations.asgi import (
    EventBusDep,
    PostroomClientDep,
    PostroomLifespan,
    get_client,
)


@contextlib.asynccontextmanager
async def serving(app: Starlette) -> AsyncIterator[str]:
    """`app` under uvicorn on a free loopback port, lifespan included; yields its address."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="on", log_level="warning")
    )
    run = asyncio.create_task(server.serve())

    async def started() -> bool:
        if run.done():
            run.result()  # raise what stopped it
        return server.started

    try:
        await eventually(started, "uvicorn started", 30)
        yield f"127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        await run


def greeting_app(settings: PostroomSettings, seen: dict[str, Any]) -> FastAPI:
    @contextlib.asynccontextmanager
    async def own_lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        # Runs inside postroom's, so the client is there already.
        seen["at startup"] = app.state.postroom
        yield {"greeting": "hello"}

    app = FastAPI(lifespan=PostroomLifespan(settings, then=own_lifespan))
    admin = FastAPI()  # mounted: its own lifespan would never run

    @app.post("/greet/{text}")
    async def greet(text: str, client: PostroomClientDep, bus: EventBusDep) -> dict[str, Any]:
        seen["route"], seen["bus"] = client, bus
        job = await client.enqueue(echo.call(Greeting(messageId=f"m-{text}", text=text)))
        return {"jobId": job.job_id}

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, client: PostroomClientDep) -> None:
        seen["websocket"] = client
        await websocket.accept()
        await websocket.send_text(websocket.state.greeting)

    @admin.get("/who")
    async def who(client: Annotated[PostroomClient, Depends(get_client)]) -> dict[str, str]:
        seen["mounted"] = client
        return {"prefix": client.settings.key_prefix}

    app.mount("/admin", admin)
    return app


async def test_routes_websockets_and_mounted_apps_share_the_lifespans_client(
    settings: PostroomSettings,
) -> None:
    seen: dict[str, Any] = {}
    app = greeting_app(settings, seen)
    async with serving(app) as address, httpx.AsyncClient(base_url=f"http://{address}") as http:
        response = await http.post("/greet/hi")
        assert response.status_code == 200, response.text
        job_id = response.json()["jobId"]
        assert (await http.get("/admin/who")).json() == {"prefix": settings.key_prefix}
        async with connect(f"ws://{address}/ws") as socket_:
            assert await socket_.recv() == "hello"
        async with running_worker(settings):
            client: PostroomClient = seen["route"]
            result = await client.job(job_id, echo).result(timeout=30)
        assert result["text"] == "hi"
    assert seen["at startup"] is seen["route"] is seen["websocket"] is seen["mounted"]
    assert not hasattr(app.state, "postroom")  # gone with the closed client
    assert isinstance(seen["bus"], InMemoryEventBus)


async def test_plain_starlette_app_gets_the_client_from_get_client(
    settings: PostroomSettings,
) -> None:
    async def prefix(request: Request) -> JSONResponse:
        return JSONResponse({"prefix": get_client(request).settings.key_prefix})

    app = Starlette(routes=[Route("/", prefix)], lifespan=PostroomLifespan(settings))
    async with serving(app) as address, httpx.AsyncClient(base_url=f"http://{address}") as http:
        assert (await http.get("/")).json() == {"prefix": settings.key_prefix}


async def test_route_of_an_app_without_the_lifespan_says_what_is_missing() -> None:
    app = FastAPI()

    @app.get("/")
    async def index(client: PostroomClientDep) -> None:
        pass

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
        with pytest.raises(RuntimeError, match="create the app with lifespan=postroom_lifespan"):
            await http.get("/")


def answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(16).startswith(b"+PONG")
    return False


async def test_open_client_starts_the_embedded_redis_without_redis_url_and_stops_it(
    tmp_path: Path,
) -> None:
    port = free_port()
    settings = load_settings(data_dir=tmp_path, embedded_redis_port=port, key_prefix="embedded")
    async with open_client(settings, embedded_redis=True) as client:
        assert await client.redis.ping()
        assert answers(port)
    assert not answers(port)
    assert (tmp_path / "redis").is_dir()
