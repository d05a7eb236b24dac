"""A job record's shape, checked in one place before anything uses it.

A job record is arq's JSON object `{"f": task, "a": args, "k": kwargs, "t": try, "et": enqueue
ms}`, written by the client or by any other Redis writer, plus, when the enqueue was traced,
postroom's `"tc": {"traceparent": ..., "tracestate": ...}` (tracing.py). arq reads its
fields unchecked, so a string where a number belongs raised deep inside a run (and killed the
worker); here every field's type and range is checked first, and a record that fails says
which field and why. The worker dead-letters such a record with that reason; the reading
tools show it as malformed.
"""

from __future__ import annotations

import base64
from typing import Any, NamedTuple

import orjson

# The latest enqueue time a datetime can hold (the end of year 9999, in ms since the epoch).
MAX_ENQUEUE_MS = 253_402_300_799_999
# arq's `_job_try` (start at try N): far above any task's max_tries (such a job is dead-lettered
# when its one try fails), and a bound on what a record can claim.
MAX_ENQUEUE_TRY = 10_000
# orjson reads JSON nested up to 1,024 levels but writes only up to 254: kwargs nested deeper
# than this could be read but not written back into a dead letter (which nests them further).
MAX_DEPTH = 200

# A trace context: W3C's two headers, each far shorter than this (tracestate: 512 bytes).
TRACE_KEYS = frozenset({"traceparent", "tracestate"})
MAX_TRACE_HEADER = 1024

# arq's short keys, with the names the reasons use.
FIELD_NAMES = {"f": "task", "a": "args", "k": "kwargs", "t": "job_try", "et": "enqueue_time_ms"}


class MalformedJobRecord(ValueError):
    """A job record that cannot run; the message says what is wrong (and starts "malformed")."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(f"malformed job record: {problem}")


class JobRecord(NamedTuple):
    """A job record whose fields have the types and ranges the worker relies on."""

    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    job_try: int | None
    enqueue_ms: int
    # The enqueue's W3C trace context, when it was traced (and well formed).
    trace: dict[str, str] | None = None


def json_type(value: Any) -> str:
    """What a decoded JSON value is, in JSON's words ("a string", "null", ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number with a fraction"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _field(data: dict[str, Any], key: str) -> Any:
    if key not in data:
        raise MalformedJobRecord(f"{FIELD_NAMES[key]} ({key}) is missing")
    return data[key]


def _wrong(key: str, value: Any, wanted: str) -> MalformedJobRecord:
    return MalformedJobRecord(f"{FIELD_NAMES[key]} ({key}) is {json_type(value)}, not {wanted}")


def _integer(data: dict[str, Any], key: str, lowest: int, highest: int) -> int:
    value = _field(data, key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong(key, value, "an integer")
    if not lowest <= value <= highest:
        raise MalformedJobRecord(
            f"{FIELD_NAMES[key]} ({key}) is {value}, not between {lowest} and {highest}"
        )
    return value


def _too_deep(value: Any, depth: int = 0) -> bool:
    if depth > MAX_DEPTH:
        return True
    if isinstance(value, dict):
        return any(_too_deep(v, depth + 1) for v in value.values())
    if isinstance(value, list):
        return any(_too_deep(v, depth + 1) for v in value)
    return False


def trace_context(found: Any) -> dict[str, str] | None:
    """A record's trace context (its `tc`), or None. A malformed one is ignored, not the job's
    end: W3C's rule for a bad `traceparent` is to start a new trace, and the job still runs."""
    if not isinstance(found, dict) or not found:
        return None
    if found.keys() - TRACE_KEYS or not all(
        isinstance(value, str) and len(value) <= MAX_TRACE_HEADER for value in found.values()
    ):
        return None
    return found


def check_job_record(data: Any, raw: bytes = b"") -> JobRecord:
    """The record `data` (decoded from `raw`) as a JobRecord, or MalformedJobRecord saying why."""
    if not isinstance(data, dict):
        raise MalformedJobRecord(f"the record is {json_type(data)}, not an object")
    task = _field(data, "f")
    if not isinstance(task, str):
        raise _wrong("f", task, "a string")
    args = _field(data, "a")
    if not isinstance(args, list):
        raise _wrong("a", args, "a list")
    if args:
        raise MalformedJobRecord(
            f"args (a) holds {len(args)} value(s): postroom tasks take keyword arguments only"
        )
    kwargs = _field(data, "k")
    if not isinstance(kwargs, dict):
        raise _wrong("k", kwargs, "an object")
    job_try = None if _field(data, "t") is None else _integer(data, "t", 0, MAX_ENQUEUE_TRY)
    enqueue_ms = _integer(data, "et", 0, MAX_ENQUEUE_MS)
    # Only a record with that many brackets can be nested that deep: the walk is rare.
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _too_deep(kwargs):
        raise MalformedJobRecord(f"kwargs (k) is nested more than {MAX_DEPTH} levels deep")
    trace = data.get("tc")
    if trace is not None:  # an enqueue with tracing on
        trace = trace_context(trace)
    return JobRecord(task, args, kwargs, job_try, enqueue_ms, trace)


def parse_job_record(raw: bytes) -> JobRecord:
    """Decode and check a job record as stored in Redis."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedJobRecord(f"not JSON ({exc})") from None
    return check_job_record(data, raw)


def malformed_payload(raw: bytes) -> dict[str, Any]:
    """What a malformed record's dead letter keeps of it: the record as JSON where it is JSON
    that can be written back, else its bytes in base64."""
    try:
        data = orjson.loads(raw)
        if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH or not _too_deep(data):
            return {"record": data}
    except orjson.JSONDecodeError:
        pass
    return {"raw_base64": base64.b64encode(raw).decode()}
