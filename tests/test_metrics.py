"""Prometheus metrics: a worker's own /metrics after real jobs, and the cluster-wide numbers."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
import uuid
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest

import tests.observed_tasks as observed
from config.errors import ConfigError
from config.queues import QueueName
from config.settings import PostroomSettings, load_settings
from tests.conftest import ROOT, eventually, running_worker, worker_env
from tests.metrics_text import Samples, parse, value
from tests.sample_tasks import Greeting, echo, sleep_until_released
from workers.client import JobFailedError, PostroomClient
from workers.observe.metrics import EnqueueMetrics, WorkerMetrics
from workers.ops.cluster_metrics import render_cluster_metrics
from workers.runner.supervisor import Supervisor


async def scrape(url: str) -> Samples:
    async with httpx.AsyncClient() as http:
        response = await http.get(url, timeout=10)
    response.raise_for_status()
    return parse(response.text)


async def metrics_url(supervisor: Supervisor) -> str:
    async def serving() -> bool:
        return supervisor.metrics_server is not None

    await eventually(serving, "the worker serves /metrics")
    assert supervisor.metrics_server is not None
    return supervisor.metrics_server.url


def secret(**fields: str) -> observed.Secret:
    return observed.Secret(
        key=fields.get("key", uuid.uuid4().hex), content="hello", api_key="not-logged"
    )


@pytest.fixture
def metered(settings: PostroomSettings) -> PostroomSettings:
    """Settings whose worker serves /metrics on a free port."""
    return settings.model_copy(update={"metrics_port": 0})


async def test_worker_metrics_count_completed_retried_and_dead_lettered_jobs(
    metered: PostroomSettings, client: PostroomClient
) -> None:
    started = time.time()
    key = f"{metered.key_prefix}:flaky"
    async with running_worker(metered, queues=[QueueName.DELIVERY]) as supervisor:
        url = await metrics_url(supervisor)
        before = await scrape(url)
        ok = await client.enqueue(observed.succeeds.call(secret()))
        flaky = await client.enqueue(observed.fails_once.call(secret(key=key)))
        doomed = await client.enqueue(observed.rejected.call(secret()))
        assert await ok.result(timeout=30) == len("hello")
        assert await flaky.result(timeout=30) == 2
        with pytest.raises(JobFailedError):
            await doomed.result(timeout=30)
        after = await scrape(url)

    def moved(name: str, task: str) -> float:
        labels = {"queue": "message-delivery", "task": task}
        return value(after, name, **labels) - value(before, name, **labels)

    ok_task, flaky_task, doomed_task = (
        "tests.observed.succeeds",
        "tests.observed.fails_once",
        "tests.observed.rejected",
    )
    expected = {
        # (metric, task): how much it moved
        ("postroom_jobs_started_total", ok_task): 1,
        ("postroom_jobs_completed_total", ok_task): 1,
        ("postroom_jobs_failed_total", ok_task): 0,
        ("postroom_jobs_started_total", flaky_task): 2,
        ("postroom_jobs_completed_total", flaky_task): 1,
        ("postroom_jobs_retried_total", flaky_task): 1,
        ("postroom_jobs_failed_total", flaky_task): 1,
        ("postroom_jobs_dead_lettered_total", flaky_task): 0,
        ("postroom_jobs_started_total", doomed_task): 1,
        ("postroom_jobs_completed_total", doomed_task): 0,
        ("postroom_jobs_retried_total", doomed_task): 0,
        ("postroom_jobs_failed_total", doomed_task): 1,
        ("postroom_jobs_dead_lettered_total", doomed_task): 1,
        ("postroom_job_duration_seconds_count", ok_task): 1,
        ("postroom_job_duration_seconds_count", flaky_task): 2,
        ("postroom_job_duration_seconds_count", doomed_task): 1,
        ("postroom_job_start_latency_seconds_count", ok_task): 1,
        ("postroom_job_start_latency_seconds_count", flaky_task): 2,
        ("postroom_job_start_latency_seconds_count", doomed_task): 1,
    }
    assert {metric: moved(*metric) for metric in expected} == expected
    assert value(after, "postroom_jobs_in_flight", queue="message-delivery") == 0
    # The slowest bucket holds every run: the histogram's buckets add up.
    inf = {"queue": "message-delivery", "task": flaky_task, "le": "+Inf"}
    assert value(after, "postroom_job_duration_seconds_bucket", **inf) == 2
    heartbeat = value(
        after, "postroom_worker_heartbeat_timestamp_seconds", queue="message-delivery"
    )
    assert heartbeat >= started


async def test_start_latency_of_a_delayed_job_counts_from_its_due_time(
    metered: PostroomSettings, client: PostroomClient
) -> None:
    async with running_worker(metered, queues=[QueueName.DELIVERY]) as supervisor:
        url = await metrics_url(supervisor)
        # Waits 2 s for its time; measured from enqueue, its latency would be at least that.
        job = await client.enqueue(observed.succeeds.call(secret()), delay=2)
        await job.result(timeout=30)
        after = await scrape(url)
    labels = {"queue": "message-delivery", "task": "tests.observed.succeeds"}
    assert value(after, "postroom_job_start_latency_seconds_count", **labels) == 1
    # Due at the latest 2 s after enqueue and started after that: well under 2 s past due.
    assert value(after, "postroom_job_start_latency_seconds_sum", **labels) < 2


async def test_queue_depth_gauge_shows_jobs_waiting_in_a_paused_queue(
    metered: PostroomSettings, client: PostroomClient
) -> None:
    await client.pause(QueueName.DELIVERY)
    async with running_worker(metered, queues=[QueueName.DELIVERY]) as supervisor:
        url = await metrics_url(supervisor)
        for n in range(3):
            await client.enqueue(echo.call(Greeting(messageId=f"m{n}", text="wait")))

        async def three_waiting() -> bool:
            return value(await scrape(url), "postroom_queue_depth", queue="message-delivery") == 3

        await eventually(three_waiting, "the depth gauge shows the three waiting jobs")


async def test_metrics_server_stops_with_the_worker(
    metered: PostroomSettings, client: PostroomClient
) -> None:
    async with running_worker(metered, queues=[QueueName.DELIVERY]) as supervisor:
        url = await metrics_url(supervisor)
        await scrape(url)
    with pytest.raises(httpx.ConnectError):
        await scrape(url)


async def test_client_counts_the_jobs_it_enqueued_but_not_a_taken_id(
    settings: PostroomSettings,
) -> None:
    registry = CollectorRegistry()
    async with await PostroomClient.connect(settings, metrics=EnqueueMetrics(registry)) as client:
        request = echo.call(Greeting(messageId="m", text="once"))
        await client.enqueue(request, job_id="same")
        await client.enqueue(request, job_id="same")  # taken: not enqueued again
        await client.enqueue_many([request, request])
    samples = parse(generate_latest(registry).decode())
    labels = {"queue": "message-delivery", "task": "tests.echo"}
    assert value(samples, "postroom_jobs_enqueued_total", **labels) == 3


async def test_cluster_metrics_show_every_queues_stats_and_live_workers(
    settings: PostroomSettings, client: PostroomClient
) -> None:
    key = f"{settings.key_prefix}:flaky"
    async with running_worker(settings, queues=[QueueName.DELIVERY]):
        await (await client.enqueue(observed.fails_once.call(secret(key=key)))).result(timeout=30)
        doomed = await client.enqueue(observed.rejected.call(secret()))
        with pytest.raises(JobFailedError):
            await doomed.result(timeout=30)

        async def health_key_written() -> bool:
            text = (await render_cluster_metrics(client)).decode()
            return value(parse(text), "postroom_queue_workers", queue="message-delivery") == 1

        await eventually(health_key_written, "the worker's health key is counted")
    # No worker runs now: these stay as they are.
    await client.pause(QueueName.DELIVERY)
    await client.enqueue(echo.call(Greeting(messageId="w", text="waits")))
    await client.enqueue(echo.call(Greeting(messageId="d", text="later")), delay=600)
    samples = parse((await render_cluster_metrics(client)).decode())
    stats = await client.queue_stats(QueueName.DELIVERY)
    delivery: dict[str, Any] = {"queue": "message-delivery"}
    expected = {
        "postroom_queue_completed_total": 1,
        "postroom_queue_retried_total": 1,
        "postroom_queue_failed_total": 2,
        "postroom_queue_dead_lettered_total": 1,
        "postroom_queue_cancelled_total": 0,
        "postroom_queue_waiting": 1,
        "postroom_queue_delayed": 1,
        "postroom_queue_active": 0,
        "postroom_queue_paused": 1,
        "postroom_queue_dead_letters": 1,
    }
    assert {name: value(samples, name, **delivery) for name in expected} == expected
    assert (stats.completed, stats.failed, stats.waiting) == (1, 2, 1)
    # Every queue is listed, the ones nobody serves at zero.
    cleanup = {"queue": "message-cleanup"}
    assert ("postroom_queue_workers", frozenset(cleanup.items())) in samples
    assert value(samples, "postroom_queue_workers", **cleanup) == 0
    assert value(samples, "postroom_queue_workers", **delivery) == 0  # its health key went


def test_a_bad_metrics_port_is_rejected_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POSTROOM_METRICS_PORT", "70000")
    with pytest.raises(ConfigError, match="POSTROOM_METRICS_PORT"):
        load_settings()


def test_worker_exits_2_naming_the_flag_when_its_metrics_port_is_taken(
    settings: PostroomSettings,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        worker = subprocess.run(
            [sys.executable, "-m", "workers", "worker", "--metrics-port", str(port)],
            cwd=ROOT,
            env=worker_env(settings),
            capture_output=True,
            timeout=60,
            check=False,
        )
    assert worker.returncode == 2
    assert f"--metrics-port: cannot serve metrics on 127.0.0.1:{port}" in worker.stderr.decode()


async def test_job_put_back_by_a_shutdown_counts_no_outcome_and_leaves_nothing_in_flight(
    settings: PostroomSettings, client: PostroomClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="workers.runner.observation")
    quick = settings.model_copy(update={"shutdown_grace": 0})
    key = f"{settings.key_prefix}:held"
    async with running_worker(quick, queues=[QueueName.DELIVERY]) as supervisor:
        job = await client.enqueue(sleep_until_released.call(key))

        async def started() -> bool:
            return bool(await client.redis.llen(f"{key}:started"))

        await eventually(started, "the job started")
    samples = parse(supervisor.runtime.metrics.render().decode())
    labels = {"queue": "message-delivery", "task": "tests.sleep_until_released"}
    assert value(samples, "postroom_jobs_started_total", **labels) == 1
    for name in ("completed", "failed", "retried", "dead_lettered", "cancelled"):
        assert value(samples, f"postroom_jobs_{name}_total", **labels) == 0
    assert value(samples, "postroom_job_duration_seconds_count", **labels) == 0
    assert value(samples, "postroom_jobs_in_flight", queue="message-delivery") == 0
    [line] = [vars(r) for r in caplog.records if "outcome" in vars(r)]
    assert (line["outcome"], line["job_id"]) == ("put_back", job.job_id)


def test_histogram_buckets_hold_values_up_to_their_bound_cumulatively() -> None:
    metrics = WorkerMetrics()
    counts = metrics.task(QueueName.DELIVERY, "t")
    for seconds in (0.001, 0.005, 0.0051, 700.0):
        counts.duration.observe(seconds)
    samples = parse(metrics.render().decode())
    labels = {"queue": "message-delivery", "task": "t"}
    bucket = "postroom_job_duration_seconds_bucket"
    assert value(samples, bucket, le="0.005", **labels) == 2  # a bound is in its own bucket
    assert value(samples, bucket, le="0.01", **labels) == 3
    assert value(samples, bucket, le="600.0", **labels) == 3
    assert value(samples, bucket, le="+Inf", **labels) == 4
    assert value(samples, "postroom_job_duration_seconds_count", **labels) == 4
    assert value(samples, "postroom_job_duration_seconds_sum", **labels) == pytest.approx(700.0111)
