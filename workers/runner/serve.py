"""Starting a worker process: load the tasks, find (or start) Redis, run the supervisor."""

from __future__ import annotations

import gc
import importlib
from collections.abc import Iterable

import uvloop

from config.queues import QueueName
from config.settings import PostroomSettings
from workers.connection.redis_server import resolve_redis
from workers.registry import registry
from workers.runner.supervisor import Supervisor
from workers.runtime import Runtime


def load_task_modules(modules: Iterable[str]) -> None:
    """Import the modules whose `@task` decorators register the tasks."""
    for module in modules:
        importlib.import_module(module)


def run_worker_process(
    settings: PostroomSettings, queues: Iterable[QueueName] | None = None, *, burst: bool = False
) -> int:
    """Run the queues of one process on uvloop until a signal; returns the exit code."""
    load_task_modules(settings.task_modules)
    # What start-up built (modules, task models, settings) lives as long as the process:
    # out of the collector's reach, a full collection no longer walks it, a pause that
    # would land on whichever job is starting then.
    gc.freeze()
    redis_settings, server = resolve_redis(settings)
    supervisor = Supervisor(Runtime(settings), registry, redis_settings, queues, burst=burst)
    try:
        uvloop.run(supervisor.run())
    finally:
        if server is not None:
            server.stop()
    return 0
