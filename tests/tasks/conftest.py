"""The task functions end to end: a real worker, Redis, database, SMTP and HTTP servers.

Every test here runs once on SQLite and once on PostgreSQL (`store_url` is parametrised), with
the channels pointed at local servers and retries fast.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import SecretStr
from pytest_httpserver import HTTPServer
from redis.asyncio import Redis

import tasks  # noqa: F401 - registers the task functions
from config.encryption import EncryptionSettings
from config.notify import PushSettings, SmsSettings, SmtpSettings
from config.queues import QueueName, QueueTable
from config.settings import PostroomSettings
from tasks.realtime import user_channel
from tasks.store import MessageStore, create_engine
from tests.conftest import eventually, running_worker
from tests.mail_server import SMTP_PASSWORD, SMTP_USER, SmtpServer
from workers.client import PostroomClient
from workers.runner.supervisor import Supervisor

KEY_A = os.urandom(32)
KEY_B = os.urandom(32)


def b64(key: bytes) -> SecretStr:
    return SecretStr(base64.b64encode(key).decode())


def fast_retries(**overrides: Any) -> QueueTable:
    """The queue table with 50 ms backoff everywhere, so retries take no test time."""
    backoff = {"base": 0.05, "cap": 0.05, "jitter": False}
    table = {q.field: {"backoff": backoff, "poll_delay": 0.01} for q in QueueName}
    for queue, values in overrides.items():
        table[queue] = {**table[queue], **values}
    return QueueTable.model_validate(table)


def with_settings(settings: PostroomSettings, **update: Any) -> PostroomSettings:
    return settings.model_copy(update=update)


@pytest.fixture
def task_settings(
    settings: PostroomSettings,
    store_url: str,
    httpserver: HTTPServer,
    smtp_server: SmtpServer,
    ca_file: Path,
) -> PostroomSettings:
    """The suite's Redis settings plus a database of each backend and the local servers."""
    return with_settings(
        settings,
        database_url=store_url,
        queues=fast_retries(),
        encryption=EncryptionSettings(keys={"a": b64(KEY_A)}),
        push=PushSettings(url=httpserver.url_for("/push"), token=SecretStr("push-token")),
        sms=SmsSettings(url=httpserver.url_for("/sms"), api_key=SecretStr("sms-key")),
        smtp=SmtpSettings(
            host="127.0.0.1",
            port=smtp_server.port,
            username=SMTP_USER,
            password=SecretStr(SMTP_PASSWORD),
            sender="Postroom <noreply@postroom.test>",
            ca_file=ca_file,
        ),
    )


@pytest.fixture
async def task_client(task_settings: PostroomSettings) -> AsyncIterator[PostroomClient]:
    async with await PostroomClient.connect(task_settings) as client:
        yield client


@pytest.fixture
async def worker(task_settings: PostroomSettings) -> AsyncIterator[Supervisor]:
    async with running_worker(task_settings) as supervisor:
        yield supervisor


@pytest.fixture
async def db(store_url: str) -> AsyncIterator[MessageStore]:
    """The test's own connection to the database the worker writes, to look at its rows."""
    async with MessageStore(create_engine(store_url)) as store:
        yield store


class Inbox:
    """Everything published on users' real-time channels, as a WebSocket server would get it."""

    def __init__(self, redis: Redis, key_prefix: str) -> None:
        self.redis = redis
        self.key_prefix = key_prefix
        self.events: dict[str, list[dict[str, Any]]] = {}

    def of(self, user_id: str) -> list[dict[str, Any]]:
        return self.events.get(user_id, [])

    @property
    def total(self) -> int:
        return sum(len(events) for events in self.events.values())

    async def wait_for(self, count: int, within: float = 60) -> None:
        async def arrived() -> bool:
            return self.total >= count

        await eventually(arrived, f"{count} events arrived", within)

    async def _listen(self, pubsub: Any) -> None:
        prefix = user_channel(self.key_prefix, "")
        async for message in pubsub.listen():
            if message["type"] == "pmessage":
                user = message["channel"].decode().removeprefix(prefix)
                self.events.setdefault(user, []).append(orjson.loads(message["data"]))


@contextlib.asynccontextmanager
async def inbox(settings: PostroomSettings) -> AsyncIterator[Inbox]:
    """Subscribed to every user's channel until the block ends."""
    redis = Redis.from_url(str(settings.redis_url))
    pubsub = redis.pubsub()
    await pubsub.psubscribe(user_channel(settings.key_prefix, "*"))
    # Wait until Redis confirms: only then is every later publish sure to reach us.
    confirmation = await pubsub.get_message(timeout=10)
    assert confirmation is not None and confirmation["type"] == "psubscribe"
    box = Inbox(redis, settings.key_prefix)
    listening = asyncio.create_task(box._listen(pubsub))
    try:
        yield box
    finally:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
        await pubsub.aclose()
        await redis.aclose()
