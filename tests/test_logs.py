"""Log lines: one per job end carrying queue, task, job id and try; JSON on request; no payloads."""

from __future__ import annotations

import contextlib
import logging
import random
import signal
import socket
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

import tests.observed_tasks as observed
from config.queues import QueueName
from config.settings import PostroomSettings
from tests.conftest import eventually, running_worker
from tests.test_processes import children, exit_code, logged_worker, terminate
from workers.client import JobFailedError, JobHandle, PostroomClient
from workers.observe.logs import JsonFormatter, PlainFormatter

TASKS = "tests.sample_tasks,tests.observed_tasks"
OK, FLAKY, DOOMED = (
    "tests.observed.succeeds",
    "tests.observed.fails_once",
    "tests.observed.rejected",
)


class Secrets:
    """Secret-looking strings that go into payloads and must never come out in a log."""

    def __init__(self) -> None:
        # Short, so that nothing quoting it would truncate it (pydantic cuts long values).
        self.content = f"code-{uuid.uuid4().hex[:12]}"
        self.api_key = f"sk_live_{uuid.uuid4().hex}"

    def payload(self, key: str | None = None) -> observed.Secret:
        return observed.Secret(
            key=key or uuid.uuid4().hex, content=self.content, api_key=self.api_key
        )

    def absent_from(self, text: str) -> bool:
        return self.content not in text and self.api_key not in text


async def run_three_jobs(
    client: PostroomClient, secrets: Secrets, flaky_key: str
) -> dict[str, JobHandle[Any]]:
    """One job completes, one fails once then completes, one is dead-lettered."""
    jobs: dict[str, JobHandle[Any]] = {
        OK: await client.enqueue(observed.succeeds.call(secrets.payload())),
        FLAKY: await client.enqueue(observed.fails_once.call(secrets.payload(flaky_key))),
        DOOMED: await client.enqueue(observed.rejected.call(secrets.payload())),
    }
    await jobs[OK].result(timeout=30)
    await jobs[FLAKY].result(timeout=30)
    with pytest.raises(JobFailedError):
        await jobs[DOOMED].result(timeout=30)
    return jobs


async def test_each_job_end_is_one_line_with_its_fields_and_never_its_payload(
    settings: PostroomSettings, client: PostroomClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = Secrets()
    async with running_worker(settings, queues=[QueueName.DELIVERY]):
        jobs = await run_three_jobs(client, secrets, f"{settings.key_prefix}:flaky")
    job_lines = [vars(r) for r in caplog.records if r.name == "workers.runner.observation"]
    ends = [
        (r["task"], r["job_try"], r["outcome"], r["levelname"], r.get("error_type"))
        for r in job_lines
        if "outcome" in r
    ]
    assert sorted(ends) == sorted(
        [
            (OK, 1, "completed", "INFO", None),
            (FLAKY, 1, "retried", "WARNING", "RuntimeError"),
            (FLAKY, 2, "completed", "INFO", None),
            (DOOMED, 1, "dead_lettered", "ERROR", "PermanentError"),
        ]
    )
    starts = [(r["task"], r["job_try"]) for r in job_lines if r["levelname"] == "DEBUG"]
    assert sorted(starts) == sorted([(OK, 1), (FLAKY, 1), (FLAKY, 2), (DOOMED, 1)])
    for line in job_lines:
        assert line["queue"] == "message-delivery"
        assert line["job_id"] == jobs[line["task"]].job_id
    retried = next(r for r in job_lines if r.get("outcome") == "retried")
    assert "the first try fails" in retried["message"]
    assert "try 1/3" in retried["message"]
    for record in caplog.records:  # arq's lines too, in both formats
        assert secrets.absent_from(PlainFormatter().format(record))
        assert secrets.absent_from(JsonFormatter().format(record))
    assert not [r for r in caplog.records if r.name == "arq.worker" and "→" in r.getMessage()]


async def test_a_validation_error_raised_by_a_task_is_logged_without_the_values_it_quotes(
    settings: PostroomSettings, client: PostroomClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    secrets = Secrets()
    async with running_worker(settings, queues=[QueueName.DELIVERY]):
        job = await client.enqueue(observed.validates.call(secrets.payload()))
        with pytest.raises(JobFailedError):
            await job.result(timeout=30)
    [line] = [r for r in caplog.records if vars(r).get("outcome") == "dead_lettered"]
    assert "ValidationError" in line.getMessage()
    assert "Input should be a valid integer" in line.getMessage()
    for record in caplog.records:
        assert secrets.absent_from(PlainFormatter().format(record))
        assert secrets.absent_from(JsonFormatter().format(record))


def free_ports(count: int) -> int:
    """The first of `count` consecutive ports free on 127.0.0.1 (just now).

    Below Linux's ephemeral range (32768-60999), which outgoing connections and servers on
    port 0 draw from: a port found free there may be taken a moment later.
    """
    for _ in range(100):
        first = random.randrange(20_000, 32_000)
        with contextlib.ExitStack() as stack:
            try:
                for port in range(first, first + count):
                    sock = stack.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return first
    raise AssertionError(f"found no {count} consecutive free ports")


async def answers_metrics(port: int) -> bool:
    try:
        async with httpx.AsyncClient() as http:
            response = await http.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    except httpx.TransportError:
        return False
    return response.status_code == 200 and "postroom_jobs_in_flight" in response.text


async def test_json_log_lines_of_a_worker_process_parse_and_carry_the_job_fields(
    settings: PostroomSettings, client: PostroomClient, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    port = free_ports(1)
    secrets = Secrets()
    args = ["--queues", "message-delivery", "--log-format", "json", "--metrics-port", str(port)]
    worker = logged_worker(settings, log, *args, POSTROOM_TASK_MODULES=TASKS)
    try:
        jobs = await run_three_jobs(client, secrets, f"{settings.key_prefix}:flaky")
        await eventually(lambda: answers_metrics(port), f"the worker answers on port {port}")
        worker.send_signal(signal.SIGTERM)
        assert await exit_code(worker) == 0
    finally:
        terminate(worker)
    text = log.read_text()
    lines = [orjson.loads(line) for line in text.splitlines()]  # every line is JSON
    ends = {
        (line["task"], line["job_try"], line["outcome"])
        for line in lines
        if "outcome" in line and line["queue"] == "message-delivery"
    }
    assert ends == {
        (OK, 1, "completed"),
        (FLAKY, 1, "retried"),
        (FLAKY, 2, "completed"),
        (DOOMED, 1, "dead_lettered"),
    }
    ids = {line["job_id"] for line in lines if "outcome" in line}
    assert ids == {job.job_id for job in jobs.values()}
    assert any(f"127.0.0.1:{port}/metrics" in line["message"] for line in lines)
    assert secrets.absent_from(text)


async def test_each_worker_process_of_a_pool_serves_metrics_on_its_own_port(
    settings: PostroomSettings, client: PostroomClient, tmp_path: Path
) -> None:
    log = tmp_path / "pool.log"
    port = free_ports(2)
    secrets = Secrets()
    args = ["--processes", "2", "--queues", "message-delivery", "--metrics-port", str(port)]
    pool = logged_worker(settings, log, *args, POSTROOM_TASK_MODULES=TASKS)
    seen: set[int] = set()
    try:
        for each in (port, port + 1):
            await eventually(lambda p=each: answers_metrics(p), f"a worker answers on port {each}")
        seen.update(children(pool.pid))
        job = await client.enqueue(observed.succeeds.call(secrets.payload()))
        await job.result(timeout=30)
        pool.send_signal(signal.SIGTERM)
        assert await exit_code(pool) == 0
    finally:
        terminate(pool, leftovers=seen)
    text = log.read_text()
    assert f"metrics on port {port}" in text
    assert f"metrics on port {port + 1}" in text
    done = [line for line in text.splitlines() if "job completed" in line]
    assert len(done) == 1
    assert f"queue=message-delivery task={OK} job_id={job.job_id} job_try=1" in done[0]
    assert secrets.absent_from(text)
