"""The operator commands, run as real `postroom` processes against the suite's Redis:
JSON for scripts, tables for people, exit 2 with a message on errors."""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import httpx
import orjson

from config.queues import QueueName
from config.settings import PostroomSettings
from tests.admin.conftest import TOKEN
from tests.admin.tasks import note, unique_id
from tests.conftest import ROOT, eventually, running_worker, worker_env
from workers.client import PostroomClient


def _env(settings: PostroomSettings, **extra: str) -> dict[str, str]:
    return worker_env(settings, POSTROOM_TASK_MODULES="tests.admin.tasks", **extra)


async def postroom(settings: PostroomSettings, *args: str, **env: str) -> tuple[int, str, str]:
    """Run `postroom ARGS`; returns its exit code, stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers", *args,
        cwd=ROOT, env=_env(settings, **env),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def postroom_json(settings: PostroomSettings, *args: str) -> Any:
    code, out, err = await postroom(settings, *args, "--output", "json")
    assert code == 0, err
    return orjson.loads(out)


async def test_enqueue_stats_jobs_and_job_print_json(settings: PostroomSettings) -> None:
    job_id = unique_id("cli")
    payload = orjson.dumps(note(1, authToken="s3cr3t")).decode()
    queued = await postroom_json(
        settings, "enqueue", "admin.greet", "--json", payload, "--job-id", job_id,
        "--priority", "high",
    )  # fmt: skip
    assert queued == {
        "job_id": job_id, "task": "admin.greet", "queue": "message-delivery", "created": True
    }  # fmt: skip
    stats = await postroom_json(settings, "stats")
    assert [s["queue"] for s in stats] == [q.value for q in QueueName]
    assert stats[0]["waiting"] == 1 and stats[0]["paused"] is False
    page = await postroom_json(settings, "jobs", "message-delivery", "--state", "queued")
    assert page["total"] == 1 and page["items"][0]["job_id"] == job_id
    assert page["items"][0]["priority"] == "high"
    job = await postroom_json(settings, "job", job_id)
    assert job["state"] == "queued" and job["task"] == "admin.greet"
    assert job["payload"]["note"] == {
        "messageId": "m1", "recipientId": "u1", "content": "***", "authToken": "***"
    }  # fmt: skip


async def test_tables_are_printed_by_default(settings: PostroomSettings) -> None:
    code, out, _ = await postroom(settings, "stats", "message-delivery")
    assert code == 0
    header, rule, row = out.splitlines()
    assert header.split() == [
        "queue", "waiting", "active", "delayed", "completed", "failed", "dead", "paused"
    ]  # fmt: skip
    assert set(rule.replace(" ", "")) == {"-"}
    assert row.split() == ["message-delivery", "0", "0", "0", "0", "0", "0", "no"]


async def test_dead_letters_are_listed_retried_removed_and_purged(
    settings: PostroomSettings, client: PostroomClient
) -> None:
    ids = [unique_id("dead") for _ in range(3)]
    for n, job_id in enumerate(ids):
        await client.enqueue_payload("admin.refuse", note(n), job_id=job_id)
    async with running_worker(settings, queues=[QueueName.DELIVERY]):

        async def dead() -> bool:
            return await client.dead_letters.count(QueueName.DELIVERY) == 3

        await eventually(dead, "the jobs are dead-lettered")
    failed = await postroom_json(settings, "failed", "message-delivery")
    assert failed["total"] == 3 and {x["job_id"] for x in failed["items"]} == set(ids)
    assert failed["items"][0]["errors"][0]["type"] == "PermanentError"
    assert failed["items"][0]["payload"]["note"]["content"] == "***"
    code, out, _ = await postroom(settings, "failed", "message-delivery", "--traceback")
    assert code == 0 and "raise PermanentError" in out and "3 of 3 dead letters" in out
    assert await postroom_json(settings, "retry", "message-delivery", ids[0]) == {"retried": 1}
    assert (await client.job_info(ids[0])) is not None
    assert await postroom_json(settings, "remove", "message-delivery", ids[1]) == {"removed": 1}
    assert await postroom_json(settings, "purge", "message-delivery") == {"removed": 1}
    assert await client.dead_letters.count(QueueName.DELIVERY) == 0
    code, _, err = await postroom(settings, "remove", "message-delivery", ids[1])
    assert code == 2 and f"no dead letter '{ids[1]}' in message-delivery" in err


async def test_pause_resume_and_clean(settings: PostroomSettings, client: PostroomClient) -> None:
    paused = await postroom_json(settings, "pause", "message-indexing")
    assert paused["paused"] is True and await client.is_paused(QueueName.INDEXING)
    resumed = await postroom_json(settings, "resume", "message-indexing")
    assert resumed["paused"] is False
    cleaned = await postroom_json(settings, "clean", "message-delivery", "--state", "complete")
    assert cleaned == {"removed": 0}


async def test_errors_exit_2_with_a_message(settings: PostroomSettings) -> None:
    code, _, err = await postroom(settings, "jobs", "nope")
    assert code == 2 and "unknown queue 'nope'; known: message-delivery" in err
    code, _, err = await postroom(settings, "enqueue", "admin.greet", "--json", '{"note": {}}')
    assert code == 2 and "note.messageId: Field required" in err
    assert "note.recipientId: Field required" in err
    code, _, err = await postroom(settings, "enqueue", "admin.greet", "--json", "{oops")
    assert code == 2 and "--json: not valid JSON" in err
    code, _, err = await postroom(settings, "enqueue", "no.such.task")
    assert code == 2 and "no task named 'no.such.task'" in err
    code, _, err = await postroom(settings, "job", "nope")
    assert code == 2 and "no job 'nope'" in err


async def test_an_unreachable_redis_exits_2_at_once(
    settings: PostroomSettings, unused_tcp_port: int
) -> None:
    url = f"redis://127.0.0.1:{unused_tcp_port}"
    code, _, err = await postroom(settings, "stats", REDIS_URL=url)
    assert code == 2 and f"cannot reach Redis at {url}" in err


async def test_serve_refuses_to_start_without_a_token_unless_local_only(
    settings: PostroomSettings,
) -> None:
    code, _, err = await postroom(settings, "serve")
    assert code == 2 and "POSTROOM_ADMIN_TOKEN" in err
    code, _, err = await postroom(settings, "serve", "--local-only", "--host", "0.0.0.0")
    assert code == 2 and "loopback only" in err


async def test_serve_runs_the_admin_api_until_sigterm(
    settings: PostroomSettings, unused_tcp_port: int
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers", "serve", "--port", str(unused_tcp_port),
        cwd=ROOT, env=_env(settings, POSTROOM_ADMIN_TOKEN=TOKEN),
    )  # fmt: skip
    url = f"http://127.0.0.1:{unused_tcp_port}"
    try:
        async with httpx.AsyncClient(base_url=url) as http:

            async def up() -> bool:
                try:
                    return (await http.get("/health/live")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(up, "the server answers")
            assert (await http.get("/queues")).status_code == 401
            stats = await http.get("/queues", headers={"Authorization": f"Bearer {TOKEN}"})
            assert stats.status_code == 200 and len(stats.json()) == 6
    finally:
        process.send_signal(signal.SIGTERM)
        assert await process.wait() == 0
