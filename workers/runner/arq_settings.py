"""`arq workers.Settings`: all the queues in the one process arq's CLI starts.

arq's CLI builds a single `Worker` from these settings. That Worker is a host: its queue
gets no jobs, and its `on_startup` runs postroom's supervisor (the per-queue Workers, the
signal handling, the drain) until a signal, then ends the host the way arq's own shutdown does.
"""

from __future__ import annotations

import asyncio
from _collections_abc import dict_items, dict_keys
from collections.abc import Iterator
from typing import Any

import uvloop
from arq.worker import func

from config.settings import load_settings
from workers.connection.connections import arq_redis
from workers.connection.redis_server import resolve_redis
from workers.observe.logs import configure_logging
from workers.registry import registry
from workers.runner.serve import load_task_modules
from workers.runner.supervisor import Supervisor
from workers.runtime import Runtime
from workers.store.keys import Keys
from workers.store.serialization import dumps, loads


async def _control(ctx: dict[str, Any]) -> None:
    """The host Worker's only function (arq requires one); nothing enqueues it."""


def build_arq_settings() -> dict[str, Any]:
    """What arq's `Worker(**settings)` receives; called when arq first reads `Settings`."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    load_task_modules(settings.task_modules)
    # arq's Worker adopts the current event loop when it is built: make that uvloop.
    asyncio.set_event_loop(uvloop.new_event_loop())
    redis_settings, server = resolve_redis(settings)
    runtime = Runtime(settings)

    async def on_startup(ctx: dict[str, Any]) -> None:
        await Supervisor(runtime, registry, redis_settings).run()
        # Drained: end the host Worker as a signal would (arq's run() then closes it, exit 0).
        raise asyncio.CancelledError

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        if server is not None:
            server.stop()

    queue_name = Keys(settings.key_prefix).control_queue()
    return {
        "functions": [func(_control, name="postroom.control")],
        "queue_name": queue_name,
        "redis_settings": redis_settings,
        # arq's own Sentinel pool would drop the sentinels' credentials (connections.py).
        "redis_pool": arq_redis(
            redis_settings,
            job_serializer=dumps,
            job_deserializer=loads,
            default_queue_name=queue_name,
        )
        if redis_settings.sentinel
        else None,
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        "poll_delay": 5,
        "health_check_interval": 60,
        "job_serializer": dumps,
        "job_deserializer": loads,
    }


class WorkerSettings(dict[str, Any]):
    """A mapping arq reads like a Settings class; it is built on first read, not at import."""

    def _built(self) -> WorkerSettings:
        if not super().__len__():
            self.update(build_arq_settings())
        return self

    def items(self) -> dict_items[str, Any]:
        return super(WorkerSettings, self._built()).items()

    def keys(self) -> dict_keys[str, Any]:
        return super(WorkerSettings, self._built()).keys()

    def __getitem__(self, key: str) -> Any:
        return super(WorkerSettings, self._built()).__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        return super(WorkerSettings, self._built()).get(key, default)

    def __iter__(self) -> Iterator[str]:
        return super(WorkerSettings, self._built()).__iter__()

    def __len__(self) -> int:
        return super(WorkerSettings, self._built()).__len__()


# `arq workers.Settings` (workers/__init__.py hands this one out).
Settings = WorkerSettings()
