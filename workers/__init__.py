"""postroom's runtime: register tasks with `@task`, enqueue with `PostroomClient`.

`Settings` is what `arq workers.Settings` runs: every queue in one process.
"""

from config.queues import BackoffPolicy, QueueName
from workers.arq_settings import WorkerSettings
from workers.client import JobFailedError, JobHandle, PostroomClient
from workers.context import JobContext
from workers.errors import (
    ConfigError,
    PayloadValidationError,
    PermanentError,
    PostroomError,
    TaskDefinitionError,
    UnknownTaskError,
)
from workers.registry import JobRequest, Task, TaskRegistry, registry, task

Settings = WorkerSettings()

__all__ = [
    "BackoffPolicy",
    "ConfigError",
    "JobContext",
    "JobFailedError",
    "JobHandle",
    "JobRequest",
    "PayloadValidationError",
    "PermanentError",
    "PostroomClient",
    "PostroomError",
    "QueueName",
    "Settings",
    "Task",
    "TaskDefinitionError",
    "TaskRegistry",
    "UnknownTaskError",
    "registry",
    "task",
]
