"""Queue numbers, jobs listed by state (paged, with a total), pause/resume and clean, on
real jobs run by a real worker."""

from __future__ import annotations

from typing import Any

import httpx

from config.queues import QueueName
from config.settings import PostroomSettings
from tests.admin.tasks import note
from tests.conftest import eventually, running_worker
from workers.client import PostroomClient

DELIVERY = "/queues/message-delivery"


async def _enqueue(api: httpx.AsyncClient, task: str, payload: dict[str, Any], **options: Any
                   ) -> str:  # fmt: skip
    answer = await api.post("/jobs", json={"task": task, "payload": payload, **options})
    assert answer.status_code == 201, answer.text
    job_id: str = answer.json()["job_id"]
    return job_id


async def _ids(api: httpx.AsyncClient, state: str, **params: Any) -> tuple[list[str], int]:
    answer = await api.get(f"{DELIVERY}/jobs", params={"state": state, **params})
    assert answer.status_code == 200, answer.text
    page = answer.json()
    assert all(item["state"] == state for item in page["items"])
    return [item["job_id"] for item in page["items"]], page["total"]


async def test_every_queue_s_numbers_are_listed(api: httpx.AsyncClient) -> None:
    await _enqueue(api, "admin.greet", note(1))
    stats = (await api.get("/queues")).json()
    assert [s["queue"] for s in stats] == [q.value for q in QueueName]
    delivery = (await api.get(DELIVERY)).json()
    assert delivery["waiting"] == 1 and delivery["paused"] is False
    fields = {"waiting", "active", "delayed", "completed", "failed", "dead_lettered_now", "paused"}
    assert fields <= delivery.keys()


async def test_an_unknown_queue_is_a_404_listing_the_known_ones(api: httpx.AsyncClient) -> None:
    for path in ("/queues/nope", "/queues/nope/jobs", "/queues/nope/failed"):
        answer = await api.get(path)
        assert answer.status_code == 404
        assert answer.json()["detail"].startswith("unknown queue 'nope'; known: message-delivery")


async def test_queued_jobs_are_listed_in_start_order_and_paged(api: httpx.AsyncClient) -> None:
    low = await _enqueue(api, "admin.greet", note(1), priority="low")
    normal = [await _enqueue(api, "admin.greet", note(n)) for n in range(2, 5)]
    urgent = await _enqueue(api, "admin.greet", note(5), priority="urgent")
    ids, total = await _ids(api, "queued")
    assert ids == [urgent, *normal, low] and total == 5
    page, total = await _ids(api, "queued", offset=1, limit=2)
    assert page == normal[:2] and total == 5
    assert (await api.get(f"{DELIVERY}/jobs", params={"limit": 0})).status_code == 422


async def test_jobs_of_each_state_are_listed(
    api: httpx.AsyncClient, settings: PostroomSettings, client: PostroomClient
) -> None:
    key = f"{settings.key_prefix}:hold"
    deferred = await _enqueue(api, "admin.greet", note(1), delay=3600)
    held = await _enqueue(api, "admin.hold", {"key": key})
    retrying = await _enqueue(api, "admin.flaky", {})
    dead = await _enqueue(api, "admin.refuse", note(2))
    done = await _enqueue(api, "admin.greet", note(3))
    cancelled = await _enqueue(api, "admin.greet", note(4), delay=3600)
    await api.post(f"/jobs/{cancelled}/cancel")
    async with running_worker(settings, queues=[QueueName.DELIVERY]):

        async def settled() -> bool:
            running = await _ids(api, "running")
            return running == ([held], 1) and (await _ids(api, "retrying"))[1] == 1

        await eventually(settled, "the held job runs and the flaky one waits to retry")
        await eventually(lambda: _has(api, "complete", done), "the greeting completes")
        await eventually(lambda: _has(api, "dead-lettered", dead), "the refused one dies")
        running = (await api.get(f"{DELIVERY}/jobs", params={"state": "running"})).json()
        assert running["items"][0]["progress"]["step"] == "holding"
        assert await _ids(api, "queued") == ([], 0)
        assert await _ids(api, "retrying") == ([retrying], 1)
        assert await _ids(api, "deferred") == ([deferred], 1)
        assert await _ids(api, "cancelled") == ([cancelled], 1)
        # A dead-lettered job's failed result is listed with the dead letters only.
        assert await _ids(api, "failed") == ([], 0)
        await client.redis.set(f"{key}:release", 1)
        await eventually(lambda: _has(api, "complete", held), "the held job completes")
    assert (await _ids(api, "complete"))[0] == [held, done]  # newest first
    failed = (await api.get(f"{DELIVERY}/jobs", params={"state": "dead-lettered"})).json()
    assert failed["items"][0]["error"] == "PermanentError: recipient u2 refused"


async def _has(api: httpx.AsyncClient, state: str, job_id: str) -> bool:
    return job_id in (await _ids(api, state))[0]


async def test_pause_and_resume_a_queue(api: httpx.AsyncClient, settings: PostroomSettings) -> None:
    paused = await api.post(f"{DELIVERY}/pause")
    assert paused.status_code == 200 and paused.json()["paused"] is True
    job = await _enqueue(api, "admin.greet", note(1))
    async with running_worker(settings, queues=[QueueName.DELIVERY]) as worker:
        await eventually(
            lambda: _true(worker.paused.get(QueueName.DELIVERY)), "the worker sees the pause"
        )
        assert (await api.get(f"/jobs/{job}")).json()["state"] == "queued"
        resumed = await api.post(f"{DELIVERY}/resume")
        assert resumed.json()["paused"] is False
        await eventually(lambda: _has(api, "complete", job), "the job runs after resume")


async def _true(value: bool | None) -> bool:
    return bool(value)


async def test_clean_removes_finished_jobs_of_a_state_older_than_asked(
    api: httpx.AsyncClient, settings: PostroomSettings
) -> None:
    done = [await _enqueue(api, "admin.greet", note(n)) for n in range(3)]
    dead = await _enqueue(api, "admin.refuse", note(9))
    async with running_worker(settings, queues=[QueueName.DELIVERY]):
        await eventually(lambda: _count(api, "complete", 3), "the jobs complete")
        await eventually(lambda: _has(api, "dead-lettered", dead), "the refused one dies")
    young = await api.post(f"{DELIVERY}/clean", json={"state": "complete", "older_than": 3600})
    assert young.json() == {"removed": 0}
    cleaned = await api.post(f"{DELIVERY}/clean", json={"state": "complete"})
    assert cleaned.json() == {"removed": 3}
    assert await _ids(api, "complete") == ([], 0)
    assert (await api.get(f"/jobs/{done[0]}")).status_code == 404
    assert await _ids(api, "dead-lettered") == ([dead], 1)  # another state: kept
    letters = await api.post(f"{DELIVERY}/clean", json={"state": "dead-lettered"})
    assert letters.json() == {"removed": 1}
    bad = await api.post(f"{DELIVERY}/clean", json={"state": "running"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "state"]


async def _count(api: httpx.AsyncClient, state: str, count: int) -> bool:
    return (await _ids(api, state))[1] == count
