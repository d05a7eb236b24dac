"""The admin app mounted under a prefix of a host web app, served by a real uvicorn: with the
host's client, or with its own opened on first use and closed by the host's lifespan."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import uvicorn
from fastapi import FastAPI

from config.settings import PostroomSettings
from tests.admin.conftest import AUTH, TOKEN
from tests.admin.tasks import note
from workers.client import PostroomClient
from workers.ops.admin import create_admin_app


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """`app` served by uvicorn on a free loopback port, lifespan and all; yields its URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None))
    run = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if run.done():
                run.result()
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await run


async def test_mounted_with_the_host_s_client_which_the_host_closes(
    settings: PostroomSettings,
) -> None:
    async with await PostroomClient.connect(settings) as client:
        host = FastAPI()
        host.mount("/admin", create_admin_app(client=client, token=TOKEN))

        @host.get("/")
        async def home() -> dict[str, str]:
            return {"app": "host"}

        async with serving(host) as url, httpx.AsyncClient(base_url=url, headers=AUTH) as http:
            assert (await http.get("/")).json() == {"app": "host"}
            body = {"task": "admin.greet", "payload": note(1)}
            job = (await http.post("/admin/jobs", json=body)).json()
            info = (await http.get(f"/admin/jobs/{job['job_id']}")).json()
            assert info["state"] == "queued"
            assert (await http.get("/admin/queues/message-delivery")).json()["waiting"] == 1
            assert (await http.get("/admin/health/live")).status_code == 200
            assert (
                await http.get("/admin/queues", headers={"Authorization": ""})
            ).status_code == 401
            schema = (await http.get("/admin/openapi.json")).json()
            assert "/queues/{queue}/failed/{job_id}/retry" in schema["paths"]
        # The admin app did not close the host's client.
        assert await client.redis.ping()


async def test_mounted_with_its_own_client_closed_by_the_host_s_lifespan(
    settings: PostroomSettings,
) -> None:
    admin = create_admin_app(settings=settings, token=TOKEN)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with admin.router.lifespan_context(admin):
            yield

    host = FastAPI(lifespan=lifespan)
    host.mount("/admin", admin)
    async with serving(host) as url, httpx.AsyncClient(base_url=url, headers=AUTH) as http:
        stats = await http.get("/admin/queues")
        assert stats.status_code == 200 and len(stats.json()) == 6
        opened = await admin.state.admin.client()
        assert await opened.redis.ping()
    # The host's lifespan closed the client the admin app opened: no connection is left open.
    pool = opened.redis.connection_pool
    assert not pool._in_use_connections
    assert not any(c.is_connected for c in pool._available_connections)
