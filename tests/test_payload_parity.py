"""The client refuses exactly the payloads the worker would refuse, always with
PayloadValidationError naming the field: checked over generated payloads."""

from __future__ import annotations

import asyncio
import inspect
import math
import time
import uuid
from typing import Any

from arq.jobs import SerializationError
from hypothesis import HealthCheck, Phase, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from config.settings import PostroomSettings
from tests.conftest import eventually, running_worker
from tests.payload_strategies import seed_tasks, task_calls
from workers.client import PostroomClient
from workers.context import JobContext
from workers.errors import PayloadValidationError
from workers.registry import Task, TaskRegistry
from workers.store.enqueue import NewJob, write_jobs
from workers.store.job_record import parse_job_record
from workers.store.job_status import JobState
from workers.store.keys import Keys
from workers.store.serialization import UNDELIVERABLE_TASK, dumps, job_decoder


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
    """Whether `value` is made of what JSON holds as it is (no datetime, NaN or infinity, lone
    surrogate or 65-bit integer)."""
    if isinstance(value, dict):
        return all(json_native(k) and json_native(v) for k, v in value.items())
    if isinstance(value, list):
        return all(json_native(v) for v in value)
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return value.encode(errors="ignore").decode() == value  # no lone surrogate
    if isinstance(value, int) and not isinstance(value, bool):
        return -(2**63) <= value < 2**64
    return value is None or isinstance(value, bool)


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


def mirror_registry() -> TaskRegistry:
    """The seed tasks' names, queues and arguments, each doing nothing but answer "ran": a
    real worker's verdict on a payload without the services the real tasks use."""
    mirror = TaskRegistry()
    for real in seed_tasks():

        async def ran(ctx: JobContext, /, **arguments: Any) -> str:
            return "ran"

        parameters = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        for name, info in real.arguments.model_fields.items():
            default = inspect.Parameter.empty if info.is_required() else info.default
            parameters.append(
                inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
            )
            ran.__annotations__[name] = info.annotation
        ran.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        mirror.task(queue=real.queue, name=real.name)(ran)
    return mirror


async def verdicts(
    settings: PostroomSettings, mirror: TaskRegistry, calls: list[tuple[Task[Any, Any], Any]]
) -> tuple[int, int]:
    """Enqueue what the client accepts, write the rest (as JSON can hold it) past the client;
    a real worker must run exactly the first and refuse the rest naming a field."""
    async with await PostroomClient.connect(settings, tasks=mirror) as client:
        accepted, refused = [], []
        for task, payload in calls:
            job_id = f"parity-{uuid.uuid4().hex}"
            try:
                request = mirror.get(task.name).request(payload)
            except PayloadValidationError:
                kwargs = payload if isinstance(payload, dict) else {"_": payload}
                if json_native(kwargs):
                    now = int(time.time() * 1000)
                    job = NewJob(job_id, client.keys.of(task.queue), task.name, kwargs,
                                 due_ms=now, enqueue_ms=now)  # fmt: skip
                    assert await write_jobs(client.redis, [job]) == [True]
                    refused.append(job_id)
                continue
            await client.enqueue(request, job_id=job_id)
            accepted.append(job_id)

        async def ended() -> bool:
            infos = [await client.job_info(i) for i in accepted + refused]
            return all(i is not None and i.state in ENDED for i in infos)

        async with running_worker(settings, tasks=mirror):
            await eventually(ended, "every job ran or was dead-lettered", within=20)
        for job_id in accepted:
            info = await client.job_info(job_id)
            assert info is not None and info.state is JobState.COMPLETE, info
            assert info.result == "ran"
        for job_id in refused:
            letter = await client.dead_letters.get(job_id)
            assert letter is not None and letter.reason == "permanent", letter
            assert letter.errors[-1].type == "PayloadValidationError"
    return len(accepted), len(refused)


ENDED = (JobState.COMPLETE, JobState.DEAD_LETTERED)


def known_mismatches() -> list[tuple[Task[Any, Any], Any]]:
    """Payloads the client once accepted and the worker refused, or could not store."""
    by_name = {t.name: t for t in seed_tasks()}
    notification = {"recipientId": "u", "type": "in_app", "title": "t", "message": "m"}
    message = {"messageId": "m", "senderId": "s", "recipientId": "r", "conversationId": "c"}
    return [
        (by_name["send-notification"], {"notification": {**notification, "variables": {"n": v}}})
        for v in (float("nan"), float("inf"), 2**70)
    ] + [
        (by_name["send-message"], {"message": {**message, "content": "\ud800"}}),
        (by_name["send-message"], {"message": {**message, "content": "ok"}}),
        (by_name["index-message"], None),
        (by_name["send-message"],
         {"message": {**message, "content": "x", "createdAt": "9999-12-31T23:00:00-05:00"}}),
    ]  # fmt: skip


def test_real_worker_runs_exactly_the_payloads_the_client_accepts(
    settings: PostroomSettings,
) -> None:
    mirror = mirror_registry()

    @hypothesis_settings(
        max_examples=8,
        derandomize=True,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        phases=[Phase.explicit, Phase.generate],  # no shrinking: each try runs a worker
    )
    @given(st.lists(task_calls(), min_size=15, max_size=30))
    @example(known_mismatches())
    def check(calls: list[tuple[Task[Any, Any], Any]]) -> None:
        accepted, refused = asyncio.run(verdicts(settings, mirror, calls))
        seen["accepted"] += accepted
        seen["refused"] += refused

    seen = {"accepted": 0, "refused": 0}
    check()
    assert seen["accepted"] >= 5 and seen["refused"] >= 5, seen  # both sides were tried
