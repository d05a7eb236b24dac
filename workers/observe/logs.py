"""Logging set-up, done once by the entry points (never at import).

A job's log records carry `queue`, `task`, `job_id` and `job_try` as record attributes
(`extra=`), plus `outcome`, `duration` and `error_type` where they apply: the JSON format puts
them in each object, the plain format appends them as `key=value`. Payloads never go in,
and a URL's password in a message (a provider's error quoting the URL it called) is `***`.
A logged traceback (`exc_info`) is stdlib's, without local variables, and a pydantic error in
it gives its fields and reasons, never the values it refused (error_text.traceback_text).
With tracing on (tracing.py), a record made inside a span also has `trace_id` and `span_id`.
"""

from __future__ import annotations

import logging
import sys
from enum import Enum
from typing import Any, Literal

import orjson

from config.redaction import redact_credentials
from workers.error_text import traceback_text

LogFormat = Literal["plain", "json"]
FIELDS = (
    "queue",
    "task",
    "job_id",
    "job_try",
    "outcome",
    "duration",
    "error_type",
    "trace_id",
    "span_id",
)


def _field(record: logging.LogRecord, name: str) -> Any:
    value = getattr(record, name, None)
    return value.value if isinstance(value, Enum) else value  # a QueueName as its name


class _Formatter(logging.Formatter):
    def formatException(self, ei: Any) -> str:
        text = traceback_text(ei[1]) if isinstance(ei[1], BaseException) else ""
        return text.rstrip("\n")


class JsonFormatter(_Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": record.created,
            "level": record.levelname,
            "logger": record.name,
            "message": redact_credentials(record.getMessage()),
        }
        line.update({k: _field(record, k) for k in FIELDS if hasattr(record, k)})
        if record.exc_info:
            line["exc"] = redact_credentials(self.formatException(record.exc_info))
        return orjson.dumps(line, default=str).decode()


class PlainFormatter(_Formatter):
    """`time level logger: message key=value ...`, the job's fields after the message."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)
        fields = [f"{k}={_field(record, k)}" for k in FIELDS if hasattr(record, k)]
        return f"{text} {' '.join(fields)}" if fields else text

    def format(self, record: logging.LogRecord) -> str:
        return redact_credentials(super().format(record))


def configure_logging(level: str = "INFO", fmt: LogFormat | str = "plain") -> None:
    """Set up the process's logging (entry points only: it changes logging's globals)."""
    # Neither format shows the caller's file and line, thread or process: logging's own
    # "Optimization" advice, which saves a quarter of each line's cost (a stack walk among it).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else PlainFormatter())
    for name in ("workers", "tasks", "config", "arq"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
    # arq's only Worker is arq_settings.py's host, which runs no jobs: its start-up lines
    # repeat postroom's. Its warnings (a Redis problem, say) still show.
    logging.getLogger("arq.worker").setLevel(max(logging.WARNING, logging.getLevelName(level)))
