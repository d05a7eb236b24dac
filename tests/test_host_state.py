"""Worker hosts sharing one Redis: host-local state stops a second host at start."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from config.errors import ConfigError
from config.queues import QueueName
from config.settings import PostroomSettings
from tests.conftest import eventually, running_worker
from workers.client import PostroomClient
from workers.connection.redis_server import resolve_redis
from workers.registry import registry
from workers.runner.supervisor import Supervisor
from workers.runtime import Runtime

SHARED = {
    "database_url": "postgresql://postgres@127.0.0.1/test",
    "encryption": {"keys": {"k1": base64.b64encode(b"k" * 32).decode()}},
}


def on_host(settings: PostroomSettings, host: str, **update: Any) -> PostroomSettings:
    return settings.model_validate({**settings.model_dump(), "host_name": host, **update})


async def recorded(client: PostroomClient, host: str) -> None:
    key = client.keys.worker_hosts()

    async def is_recorded() -> bool:
        return bool(await client.redis.hexists(key, host))

    await eventually(is_recorded, f"{host} is recorded")


async def second_host_starts(settings: PostroomSettings) -> None:
    supervisor = Supervisor(
        Runtime(settings), registry, resolve_redis(settings)[0], [QueueName.CLEANUP]
    )
    run = asyncio.create_task(supervisor.run())
    try:
        await asyncio.wait_for(asyncio.shield(run), timeout=1.0)
    except TimeoutError:
        await supervisor.stop()
        await run


@pytest.mark.parametrize("local_on", ["first", "second"])
async def test_a_second_host_stops_at_start_while_either_host_keeps_local_state(
    settings: PostroomSettings, client: PostroomClient, local_on: str
) -> None:
    first = on_host(settings, "host-a", **({} if local_on == "first" else SHARED))
    second = on_host(settings, "host-b", **(SHARED if local_on == "first" else {}))
    async with running_worker(first, queues=[QueueName.CLEANUP]):
        await recorded(client, "host-a")
        with pytest.raises(ConfigError) as refused:
            await second_host_starts(second)
    message = str(refused.value)
    assert "'host-a'" in message and "'host-b'" in message
    assert "POSTROOM_DATABASE_URL" in message and "POSTROOM_ENCRYPTION__KEYS" in message
    assert ("this host" if local_on == "second" else "host 'host-a'") in message


async def test_hosts_sharing_the_store_and_keys_run_side_by_side(
    settings: PostroomSettings, client: PostroomClient
) -> None:
    async with running_worker(on_host(settings, "host-a", **SHARED), queues=[QueueName.CLEANUP]):
        await recorded(client, "host-a")
        await second_host_starts(on_host(settings, "host-b", **SHARED))  # does not raise
