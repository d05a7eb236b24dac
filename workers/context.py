"""What a task receives as its first argument."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, TypedDict

from arq.connections import ArqRedis

from config.queues import QueueName
from config.settings import PostroomSettings

if TYPE_CHECKING:
    from workers.progress import ProgressReporter
    from workers.runtime import Runtime


class JobContext(TypedDict):
    """arq's per-job ctx plus postroom's: where the job runs and which try this is."""

    redis: ArqRedis
    job_id: str
    job_try: int
    enqueue_time: datetime
    score: int
    queue: QueueName
    task: str
    settings: PostroomSettings
    runtime: Runtime
    # `await ctx["progress"](percentage=..., step=..., current_step=..., total_steps=..., data=...)`
    progress: ProgressReporter
