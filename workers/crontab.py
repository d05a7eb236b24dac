"""`Cron`: a task's schedule, the value `@task(cron=...)` takes (cron.py enqueues its ticks)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


@dataclass(frozen=True)
class Cron:
    """A crontab schedule ("0 2 * * *"; a sixth field is seconds) in a time zone (UTC)."""

    expression: str
    timezone: str = "UTC"
    payload: Mapping[str, Any] = field(default_factory=dict)

    def problem(self) -> str | None:
        """Why this schedule is invalid, or None."""
        from croniter import croniter  # with dateutil, 1 MiB: loaded by deployments with cron

        if not croniter.is_valid(self.expression):
            return f"invalid crontab {self.expression!r}"
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            return f"unknown time zone {self.timezone!r}"
        return None

    def ticks(self, after: float, upto: float) -> list[float]:
        """Epoch seconds of the ticks in (after, upto], evaluated in the schedule's zone."""
        from croniter import croniter

        start = datetime.fromtimestamp(after, ZoneInfo(self.timezone))
        schedule = croniter(self.expression, start)
        found: list[float] = []
        while (tick := schedule.get_next(float)) <= upto:
            found.append(tick)
        return found

    def next_tick(self, after: float) -> float:
        from croniter import croniter

        start = datetime.fromtimestamp(after, ZoneInfo(self.timezone))
        return float(croniter(self.expression, start).get_next(float))
