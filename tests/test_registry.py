"""`@task` rejects bad declarations by name, and types `.call()` so mypy catches bad payloads."""

from __future__ import annotations

import re
from pathlib import Path

import mypy.api
import pytest

from config.queues import QueueName
from tests.conftest import ROOT
from workers.context import JobContext
from workers.errors import TaskDefinitionError, UnknownTaskError
from workers.registry import TaskRegistry


def test_duplicate_task_name_is_rejected_naming_the_task_and_first_definition() -> None:
    tasks = TaskRegistry()

    @tasks.task(queue=QueueName.DELIVERY, name="tests.dup")
    async def first(ctx: JobContext) -> None:
        pass

    async def second(ctx: JobContext) -> None:
        pass

    with pytest.raises(TaskDefinitionError, match=re.escape("'tests.dup'")) as caught:
        tasks.task(queue=QueueName.NOTIFICATION, name="tests.dup")(second)
    assert first.function.__qualname__ in str(caught.value)
    assert tasks.get("tests.dup") is first


def test_unknown_option_is_rejected_naming_the_task_and_option() -> None:
    tasks = TaskRegistry()

    async def send(ctx: JobContext) -> None:
        pass

    with pytest.raises(TaskDefinitionError, match=re.escape("'tests.opt'")) as caught:
        tasks.task(queue=QueueName.DELIVERY, name="tests.opt", retries=3)(send)  # type: ignore[arg-type]
    assert "retries" in str(caught.value)
    assert len(tasks) == 0


def test_non_async_function_is_rejected_naming_the_task() -> None:
    tasks = TaskRegistry()

    def blocking(ctx: JobContext) -> None:
        pass

    with pytest.raises(TaskDefinitionError, match=r"'tests\.sync' must be an async def"):
        tasks.task(queue=QueueName.DELIVERY, name="tests.sync")(blocking)  # type: ignore[arg-type]
    assert len(tasks) == 0


def test_task_name_defaults_to_the_function_name() -> None:
    tasks = TaskRegistry()

    @tasks.task(queue=QueueName.CLEANUP)
    async def purge_old(ctx: JobContext, days: int) -> int:
        return days

    assert tasks.get("purge_old") is purge_old
    assert tasks.for_queue(QueueName.CLEANUP) == [purge_old]


def test_unknown_task_name_raises_unknown_task_error() -> None:
    with pytest.raises(UnknownTaskError, match=re.escape("'tests.nope'")):
        TaskRegistry().get("tests.nope")


_BAD = """\
from tests.sample_tasks import echo

echo.call(123)
"""

_GOOD = """\
from tests.sample_tasks import Greeting, echo

request = echo.call(Greeting(messageId="m1", text="hello"))
"""


def test_mypy_rejects_a_wrong_payload_type_and_accepts_a_right_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad_call.py"
    good = tmp_path / "good_call.py"
    bad.write_text(_BAD)
    good.write_text(_GOOD)
    # The project is an editable install mypy cannot follow: find it from the repo root.
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("MYPYPATH", str(ROOT))
    stdout, stderr, status = mypy.api.run(
        [
            "--strict",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(tmp_path / "mypy-cache"),
            "--no-error-summary",
            "--show-error-codes",
            str(bad),
            str(good),
        ]
    )
    errors = [line for line in stdout.splitlines() if ": error:" in line]
    assert status == 1, stdout + stderr
    assert len(errors) == 1, stdout
    assert errors[0].startswith(f"{bad}:3:"), stdout
    assert "[arg-type]" in errors[0]
    assert '"int"' in errors[0]
    assert '"Greeting"' in errors[0]
    assert str(good) not in stdout
