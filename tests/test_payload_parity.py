"""The client refuses exactly the payloads the worker would refuse, always with
PayloadValidationError naming the field: checked over generated payloads."""

from __future__ import annotations

import math
import time
from typing import Any

from arq.jobs import SerializationError
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings

from tests.payload_strategies import task_calls
from workers.enqueue import NewJob
from workers.errors import PayloadValidationError
from workers.job_record import parse_job_record
from workers.keys import Keys
from workers.registry import Task
from workers.serialization import UNDELIVERABLE_TASK, dumps, job_decoder


def worker_runs(task: Task[Any, Any], stored: bytes) -> bool:
    """What the worker decides for a stored job record: run the task, or refuse it."""
    decoded = job_decoder([task.name])(stored)
    if decoded["f"] == UNDELIVERABLE_TASK:
        return False
    try:
        task.decode(decoded["k"])
    except PayloadValidationError:
        return False
    return True


def json_native(value: Any) -> bool:
    """Whether `value` is made of what JSON holds as it is (no datetime, NaN or infinity)."""
    if isinstance(value, dict):
        return all(json_native(v) for v in value.values())
    if isinstance(value, list):
        return all(json_native(v) for v in value)
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, bool | int | str)


def stored_record(task: Task[Any, Any], kwargs: Any) -> bytes | None:
    """The record a job of these kwargs is stored as; None when JSON cannot hold them."""
    now = int(time.time() * 1000)
    try:
        return NewJob(
            "parity", Keys("parity").of(task.queue), task.name, kwargs, due_ms=now, enqueue_ms=now
        ).payload()
    except SerializationError:  # arq's, around orjson's JSONEncodeError
        return None


@hypothesis_settings(
    max_examples=400,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(task_calls())
def test_client_accepts_a_payload_exactly_when_the_worker_would_run_it(
    call: tuple[Task[Any, Any], Any],
) -> None:
    task, payload = call
    try:
        request = task.request(payload)
    except PayloadValidationError as exc:
        assert exc.fields, "the refusal names a field"
        assert all(field for field in exc.fields)
        # Written as JSON by another writer, the worker refuses it too. (A Python value such
        # as a datetime reaches the worker as another value, a string, which may be valid.)
        if json_native(payload):
            stored = stored_record(task, payload if isinstance(payload, dict) else {"_": payload})
            assert stored is None or not worker_runs(task, stored), payload
    else:
        stored = stored_record(task, request.kwargs)
        assert stored is not None, "what the client accepted can be stored"
        assert worker_runs(task, stored), payload
        # What is stored is what the client checked.
        assert parse_job_record(stored).kwargs == request.kwargs


def test_payload_that_json_cannot_hold_is_refused_naming_the_field() -> None:
    from tasks.message_delivery import send_message

    message = {"messageId": "m", "senderId": "s", "recipientId": "r", "conversationId": "c"}
    try:
        send_message.request({"message": {**message, "content": "\ud800"}})
    except PayloadValidationError as exc:
        assert exc.fields == ["message.content"]
        assert "cannot be stored" in str(exc)
    else:
        raise AssertionError("a lone surrogate was accepted")
    assert dumps(send_message.request({"message": {**message, "content": "ok"}}).kwargs)


def test_payload_whose_value_json_turns_into_null_is_refused_as_the_worker_would() -> None:
    from tasks.message_notification import send_notification

    notification = {"recipientId": "u", "type": "in_app", "title": "t", "message": "m"}
    for value in (float("nan"), float("inf")):
        try:
            send_notification.request({"notification": {**notification, "variables": {"n": value}}})
        except PayloadValidationError as exc:
            assert all(f.startswith("notification.variables.n") for f in exc.fields), exc
        else:
            raise AssertionError(f"{value} was accepted, and the worker would read null")
