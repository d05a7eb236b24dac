"""The queue table: each queue's concurrency, timeout and retry policy, as validated data."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, model_validator

from config.rate_limits import RateLimitSpec


class QueueName(StrEnum):
    """The six queues; the value is the name operators see in logs, metrics and Redis keys."""

    DELIVERY = "message-delivery"
    NOTIFICATION = "message-notification"
    INDEXING = "message-indexing"
    ENCRYPTION = "message-encryption"
    BATCH = "batch-message-sending"
    CLEANUP = "message-cleanup"

    @property
    def field(self) -> str:
        """The attribute of `QueueTable` (and the env-var segment) that configures this queue."""
        return self.value.replace("-", "_")


class BackoffPolicy(BaseModel):
    """How long to wait before try n+1: `base * 2**(n-1)` (exponential) or `base` (fixed)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["exponential", "fixed"] = "exponential"
    base: PositiveFloat = 1.0
    cap: PositiveFloat = 300.0
    jitter: bool = True

    @model_validator(mode="after")
    def _cap_not_below_base(self) -> BackoffPolicy:
        if self.cap < self.base:
            raise ValueError(f"cap ({self.cap}) must not be below base ({self.base})")
        return self


class QueueConfig(BaseModel):
    """One queue's policy. Timeouts are seconds; `grace` bounds the shutdown drain."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    concurrency: PositiveInt
    max_tries: PositiveInt
    backoff: BackoffPolicy
    timeout: PositiveFloat
    # Seconds between polls when the queue is idle: the floor of enqueue-to-start latency.
    poll_delay: PositiveFloat = 0.05
    # Ready ids a claim looks at at most; must exceed the fleet-wide running jobs or idle
    # workers starve (a running job stays in its queue until it finishes, and is skipped).
    queue_read_limit: PositiveInt | None = None
    # Seconds a dead letter is kept; None means the deployment's `dead_letter_retention`.
    dead_letter_retention: PositiveFloat | None = None
    # How many slots (Redis Cluster shards) the queue is split over (keys.py `Keys.route`).
    partitions: Annotated[int, Field(ge=1, le=1024)] = 1
    # How fast the queue's jobs may start, across every worker process (`100/s`, `600/m`,
    # `100/s burst=20`; config/rate_limits.py); None: as fast as the workers go.
    rate_limit: RateLimitSpec | None = None

    @property
    def read_limit(self) -> int:
        return self.queue_read_limit or max(self.concurrency * 20, 200)


def _queue(
    concurrency: int, max_tries: int, backoff: str, base: float, timeout: float
) -> QueueConfig:
    kind: Literal["exponential", "fixed"] = "fixed" if backoff == "fixed" else "exponential"
    return QueueConfig(
        concurrency=concurrency,
        max_tries=max_tries,
        backoff=BackoffPolicy(kind=kind, base=base, cap=max(base * 32, 300.0)),
        timeout=timeout,
    )


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


class QueueTable(BaseModel):
    """All six queues; defaults are the seed system's table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    message_delivery: QueueConfig = _queue(10, 5, "exponential", 2, 30)
    message_notification: QueueConfig = _queue(15, 3, "exponential", 1, 20)
    message_indexing: QueueConfig = _queue(3, 3, "exponential", 3, 60)
    message_encryption: QueueConfig = _queue(5, 3, "exponential", 2, 45)
    batch_message_sending: QueueConfig = _queue(2, 3, "exponential", 5, 300)
    message_cleanup: QueueConfig = _queue(1, 2, "fixed", 10, 600)

    @model_validator(mode="before")
    @classmethod
    def _merge_partial_overrides(cls, data: Any) -> Any:
        """Let `POSTROOM_QUEUES__MESSAGE_DELIVERY__CONCURRENCY=20` change one field, not all."""
        if not isinstance(data, dict):
            return data
        merged = dict(data)
        for name, value in data.items():
            field = cls.model_fields.get(name)
            if isinstance(value, dict) and field is not None and field.default is not None:
                merged[name] = _deep_merge(field.default.model_dump(), value)
        return merged

    def __getitem__(self, queue: QueueName) -> QueueConfig:
        config: QueueConfig = getattr(self, queue.field)
        return config

    def items(self) -> list[tuple[QueueName, QueueConfig]]:
        return [(queue, self[queue]) for queue in QueueName]
