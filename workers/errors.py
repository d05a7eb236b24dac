"""Postroom's exceptions.

PostroomError
├── ConfigError            (a setting has a wrong value; defined in config.errors)
├── TaskDefinitionError    (a @task declaration is wrong; raised at import)
├── UnknownTaskError       (a task name nobody registered)
├── PayloadValidationError (a payload does not match its task's signature)
├── PermanentError         (raised by a task: retrying cannot help, dead-letter now)
├── RateLimited            (raised by a task: its provider said "too many requests", defer)
└── NotReplicatedError     (an enqueue reached the primary but not enough replicas in time)
"""

from __future__ import annotations

from pydantic import ValidationError

from config.errors import ConfigError, PostroomError
from workers.error_text import own_words, problems


class TaskDefinitionError(PostroomError, TypeError):
    """Raised at import when a @task declaration is invalid; the message names the task."""


class UnknownTaskError(PostroomError, LookupError):
    """Raised when a task name is not registered."""


class PayloadValidationError(PostroomError, ValueError):
    """Raised when a payload does not validate against its task; names the task and fields."""

    def __init__(self, task: str, errors: list[tuple[str, str]]) -> None:
        self.task = task
        self.errors = errors
        super().__init__(self._text(task, errors))

    @staticmethod
    def _text(task: str, errors: list[tuple[str, str]]) -> str:
        detail = "; ".join(f"{field}: {message}" for field, message in errors)
        return f"invalid payload for task {task!r}: {detail}"

    @classmethod
    def of(cls, task: str, error: ValidationError, prefix: str = "") -> PayloadValidationError:
        """The error of `error`'s fields; where logs leave out what a task raised, they show
        its fields and the reasons pydantic words from the schema (error_text.py)."""
        invalid = cls(task, problems(error, prefix=prefix, empty="<payload>"))
        safe = problems(error, prefix=prefix, empty="<payload>", quoting=False)
        return own_words(invalid, cls._text(task, safe))

    @property
    def fields(self) -> list[str]:
        return [field for field, _ in self.errors]


class PermanentError(PostroomError):
    """Raised by a task when retrying cannot help; the job goes straight to the dead letters."""


class RateLimited(PostroomError):
    """Raised by a task whose provider answered "too many requests" (HTTP 429 with
    Retry-After): the job is deferred by `retry_after` seconds without spending a try. Each
    job is deferred so at most POSTROOM_MAX_RATE_LIMITED times, then dead-lettered as
    `rate-limited`, so a provider refusing forever cannot keep a job alive forever."""

    def __init__(self, message: str = "rate limited", *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


__all__ = [
    "ConfigError",
    "PayloadValidationError",
    "PermanentError",
    "PostroomError",
    "RateLimited",
    "TaskDefinitionError",
    "UnknownTaskError",
]


class NotReplicatedError(PostroomError):
    """An enqueue the primary wrote but fewer replicas than `POSTROOM_ENQUEUE_WAIT_REPLICAS`
    confirmed in time: a failover now could lose it. Retry with the same job ids."""

    def __init__(self, job_ids: list[str], wanted: int, confirmed: int, timeout_ms: int) -> None:
        self.job_ids = job_ids
        self.confirmed = confirmed
        super().__init__(
            f"jobs {', '.join(job_ids[:3])}{' ...' if len(job_ids) > 3 else ''}: on the primary "
            f"but confirmed by {confirmed} of POSTROOM_ENQUEUE_WAIT_REPLICAS={wanted} replicas "
            f"within {timeout_ms} ms"
        )
