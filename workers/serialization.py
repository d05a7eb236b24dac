"""orjson in place of arq's pickle: nothing a Redis writer stores can execute code in a worker."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Collection
from typing import Any

import orjson
from pydantic import BaseModel

# The internal task every queue runs for a job it cannot decode or route; see execution.py.
UNDELIVERABLE_TASK = "postroom.undeliverable"


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, BaseException):
        # arq stores a failed job's exception as its result; keep its type and message.
        return {"error": type(value).__name__, "message": str(value)}
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"cannot serialize {type(value).__name__}")


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_default, option=orjson.OPT_NON_STR_KEYS)


def loads(raw: bytes | str) -> Any:
    return orjson.loads(raw)


def _undeliverable(task: str | None, reason: str, payload: Any) -> dict[str, Any]:
    return {
        "f": UNDELIVERABLE_TASK,
        "a": [],
        "k": {"task": task, "reason": reason, "payload": payload},
        "t": None,
        "et": int(time.time() * 1000),
    }


def job_decoder(known_tasks: Collection[str]) -> Callable[[bytes], dict[str, Any]]:
    """A job deserializer that turns what arq would delete into a job for the dead letters.

    arq fails (and deletes) a job it cannot decode or whose function the worker lacks; this
    decoder instead routes such a job to `UNDELIVERABLE_TASK` with the raw payload and reason.
    """

    def decode(raw: bytes) -> dict[str, Any]:
        try:
            data = orjson.loads(raw)
            task, args, kwargs = data["f"], data["a"], data["k"]
            data["t"], data["et"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            text = base64.b64encode(raw).decode() if isinstance(raw, bytes) else repr(raw)
            return _undeliverable(None, f"undecodable job data: {exc}", {"raw_base64": text})
        if task not in known_tasks:
            return _undeliverable(
                task,
                f"no task {task!r} is registered on this queue",
                {"args": args, "kwargs": kwargs},
            )
        job: dict[str, Any] = data
        return job

    return decode
