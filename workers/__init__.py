"""postroom's runtime: register tasks with `@task`, enqueue with `PostroomClient`.

`Settings` is what `arq workers.Settings` runs: every queue in one process.
"""

from config.queues import BackoffPolicy, QueueName
from workers.arq_settings import WorkerSettings
from workers.client import JobFailedError, JobHandle, PostroomClient
from workers.context import JobContext
from workers.crontab import Cron
from workers.errors import (
    ConfigError,
    PayloadValidationError,
    PermanentError,
    PostroomError,
    TaskDefinitionError,
    UnknownTaskError,
)
from workers.job_status import JobInfo, JobState
from workers.priority import Priority
from workers.progress import Progress
from workers.queue_stats import QueueStats
from workers.registry import JobRequest, Task, TaskRegistry, registry, task

Settings = WorkerSettings()

__all__ = [
    "BackoffPolicy",
    "ConfigError",
    "Cron",
    "JobContext",
    "JobFailedError",
    "JobHandle",
    "JobInfo",
    "JobRequest",
    "JobState",
    "PayloadValidationError",
    "PermanentError",
    "PostroomClient",
    "PostroomError",
    "Priority",
    "Progress",
    "QueueName",
    "QueueStats",
    "Settings",
    "Task",
    "TaskDefinitionError",
    "TaskRegistry",
    "UnknownTaskError",
    "registry",
    "task",
]
