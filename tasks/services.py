"""The services the tasks use, one of each per worker process (see workers/resources.py).

A task asks for one with `await service(ctx, message_store)`: the first call opens it (the
store migrates its schema first), later calls share it, and the worker closes it on shutdown.
Each reads its part of the settings, so a deployment points it at its real server through the
environment (`DATABASE_URL`, `POSTROOM_SMTP__HOST`, ...).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeVar

from config.settings import PostroomSettings
from tasks.encryption import Keyring, load_keyring
from tasks.notify import EmailChannel, PushChannel, SmsChannel
from tasks.store import MessageStore
from workers import JobContext, ResourceFactory

T = TypeVar("T")


async def service(ctx: JobContext, factory: ResourceFactory[T]) -> T:
    """The worker process's instance of the service `factory` opens."""
    return await ctx["runtime"].resources.get(factory)


@asynccontextmanager
async def message_store(settings: PostroomSettings) -> AsyncIterator[MessageStore]:
    store = await MessageStore.open(settings.database_url, data_dir=settings.data_dir)
    try:
        yield store
    finally:
        await store.close()


@asynccontextmanager
async def keyring(settings: PostroomSettings) -> AsyncIterator[Keyring]:
    yield load_keyring(settings.encryption, settings.data_dir)


@asynccontextmanager
async def push_channel(settings: PostroomSettings) -> AsyncIterator[PushChannel]:
    async with PushChannel(settings.push) as channel:
        yield channel


@asynccontextmanager
async def sms_channel(settings: PostroomSettings) -> AsyncIterator[SmsChannel]:
    async with SmsChannel(settings.sms) as channel:
        yield channel


@asynccontextmanager
async def email_channel(settings: PostroomSettings) -> AsyncIterator[EmailChannel]:
    async with EmailChannel(settings.smtp) as channel:
        yield channel
