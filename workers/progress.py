"""Progress a running task reports, readable by anyone holding the job id."""

from __future__ import annotations

import time
from typing import Any

from arq.connections import ArqRedis
from pydantic import BaseModel, Field

from workers.serialization import dumps


class Progress(BaseModel):
    """The latest report; every field is optional so a task says only what it knows."""

    percentage: float | None = Field(default=None, ge=0, le=100)
    step: str | None = None
    current_step: int | None = Field(default=None, ge=0)
    total_steps: int | None = Field(default=None, ge=1)
    data: Any = None
    updated_at: float


class ProgressReporter:
    """`await ctx["progress"](percentage=40, step="chunk 2/5")`: one SET, kept with the result."""

    def __init__(self, redis: ArqRedis, key: str, ttl: float) -> None:
        self._redis = redis
        self._key = key
        self._ttl_ms = max(int(ttl * 1000), 1)

    async def __call__(
        self,
        percentage: float | None = None,
        *,
        step: str | None = None,
        current_step: int | None = None,
        total_steps: int | None = None,
        data: Any = None,
    ) -> Progress:
        if percentage is None and current_step is not None and total_steps is not None:
            percentage = min(100.0, 100.0 * current_step / total_steps)
        progress = Progress(
            percentage=percentage,
            step=step,
            current_step=current_step,
            total_steps=total_steps,
            data=data,
            updated_at=time.time(),
        )
        await self._redis.set(self._key, dumps(progress), px=self._ttl_ms)
        return progress
