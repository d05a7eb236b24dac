"""Progress a running task reports, readable by anyone holding the job id."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

from workers.errors import PostroomError
from workers.store.scripts import LuaScript, RedisClient
from workers.store.serialization import dumps

# KEYS: the progress key, the job's running marker. ARGV: the report, its TTL ms, the run's
# lease token. A run that lost its job to another worker must not overwrite its progress.
_REPORT = LuaScript.file("report_progress")


class LeaseLostError(PostroomError):
    """This run no longer holds its job: another worker took it over (its lease had lapsed
    while this worker could not reach Redis). Raised into the task so it stops."""


class Progress(BaseModel):
    """The latest report; every field is optional so a task says only what it knows."""

    percentage: float | None = Field(default=None, ge=0, le=100)
    step: str | None = None
    current_step: int | None = Field(default=None, ge=0)
    total_steps: int | None = Field(default=None, ge=1)
    data: Any = None
    updated_at: float


class ProgressReporter:
    """`await ctx["progress"](percentage=40, step="chunk 2/5")`: one script call that writes
    the report, kept with the result, while the run still holds its job (`fence`: the job's
    running marker and the run's lease token)."""

    def __init__(
        self,
        redis: RedisClient,
        key: str,
        ttl: float,
        *,
        fence: tuple[str, str],
        seal: Callable[[Any], Any] | None = None,
    ) -> None:
        self._redis = redis
        self._key = key
        self._ttl_ms = max(int(ttl * 1000), 1)
        self._fence = fence
        self._seal = seal  # the job's sealing of its progress record (sealing.py), if any

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
        marker, token = self._fence
        record = progress if self._seal is None else self._seal(progress.model_dump(mode="json"))
        args = (dumps(record), self._ttl_ms, token)
        if not await _REPORT(self._redis, (self._key, marker), args):
            raise LeaseLostError("this run lost its job to another worker; it stops here")
        return progress
