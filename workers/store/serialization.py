"""orjson in place of arq's pickle: nothing a Redis writer stores can execute code in a worker."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from typing import Any

import orjson
from pydantic import BaseModel

from workers.error_text import message
from workers.store.job_record import MalformedJobRecord, malformed_payload, parse_job_record

# The internal task every queue runs for a job it cannot decode or route; see execution.py.
UNDELIVERABLE_TASK = "postroom.undeliverable"


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, BaseException):
        # arq stores a failed job's exception as its result; keep its type and message (a
        # ValidationError's without the values it refused: error_text.message).
        return {"error": type(value).__name__, "message": message(value)}
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"cannot serialize {type(value).__name__}")


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_default, option=orjson.OPT_NON_STR_KEYS)


def loads(raw: bytes | str) -> Any:
    return orjson.loads(raw)


def _undeliverable(
    task: str | None, reason: str, payload: Any, *, malformed: bool = False
) -> dict[str, Any]:
    return {
        "f": UNDELIVERABLE_TASK,
        "a": [],
        "k": {"task": task, "reason": reason, "payload": payload, "malformed": malformed},
        "t": None,
        "et": int(time.time() * 1000),
    }


def job_decoder(known_tasks: Collection[str]) -> Callable[[bytes], dict[str, Any]]:
    """A job deserializer that turns what arq would delete into a job for the dead letters.

    arq fails (and deletes) a job it cannot decode or whose function the worker lacks, and
    trusts every field's type; this decoder checks the record's shape (job_record.py) and
    routes a malformed record, or one naming no task of the queue, to `UNDELIVERABLE_TASK`
    with the reason and what it could keep of the record.
    """

    def decode(raw: bytes) -> dict[str, Any]:
        try:
            record = parse_job_record(raw)
        except MalformedJobRecord as exc:
            return _undeliverable(None, str(exc), malformed_payload(raw), malformed=True)
        if record.task not in known_tasks or record.task == UNDELIVERABLE_TASK:
            return _undeliverable(
                record.task,
                f"no task {record.task!r} is registered on this queue",
                {"args": record.args, "kwargs": record.kwargs},
            )
        return {
            "f": record.task,
            "a": record.args,
            "k": record.kwargs,
            "t": record.job_try,
            "et": record.enqueue_ms,
            "tc": record.trace,
        }

    return decode
