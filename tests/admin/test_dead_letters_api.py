"""Dead letters over HTTP: listed with every try's traceback, retried one by one or all,
removed and purged, on jobs a real worker dead-lettered."""

from __future__ import annotations

import httpx

from config.queues import QueueName
from config.settings import PostroomSettings
from tests.admin.tasks import note
from tests.conftest import eventually, running_worker
from workers.client import PostroomClient

FAILED = "/queues/message-delivery/failed"


async def _dead_letters(
    api: httpx.AsyncClient, settings: PostroomSettings, client: PostroomClient, count: int
) -> list[str]:
    """`count` jobs a real worker dead-lettered, oldest first, with ids `<prefix>-d<n>`
    (arq's job and result keys are not under the test's prefix: ids must be unique)."""
    ids = []
    for n in range(count):
        job_id = f"{settings.key_prefix}-d{n}"
        body = {"task": "admin.refuse", "payload": note(n, authToken="t0ken"), "job_id": job_id}
        ids.append((await api.post("/jobs", json=body)).json()["job_id"])
    async with running_worker(settings, queues=[QueueName.DELIVERY]):

        async def all_dead() -> bool:
            return await client.dead_letters.count(QueueName.DELIVERY) == count

        await eventually(all_dead, "the jobs are dead-lettered")
    return ids


async def test_dead_letters_are_listed_newest_first_with_tracebacks_and_masked_payloads(
    api: httpx.AsyncClient, settings: PostroomSettings, client: PostroomClient
) -> None:
    ids = await _dead_letters(api, settings, client, 3)
    d1 = ids[1]
    page = (await api.get(FAILED, params={"limit": 2})).json()
    assert page["total"] == 3 and len(page["items"]) == 2
    assert {item["job_id"] for item in page["items"]} <= set(ids)
    first = page["items"][0]
    assert first["reason"] == "permanent" and first["task"] == "admin.refuse"
    [error] = first["errors"]
    assert error["type"] == "PermanentError"
    assert "Traceback (most recent call last)" in error["traceback"]
    assert "raise PermanentError" in error["traceback"]
    assert first["payload"]["note"]["content"] == "***"
    assert first["payload"]["note"]["authToken"] == "***"
    one = (await api.get(f"{FAILED}/{d1}")).json()
    assert one["job_id"] == d1 and one["errors"][0]["message"] == "recipient u1 refused"
    rest = (await api.get(FAILED, params={"offset": 2})).json()
    assert len(rest["items"]) == 1
    # The stored payload keeps the real values: a retry runs with them.
    letter = await client.dead_letters.get(d1)
    assert letter is not None and letter.payload["note"]["content"] == "hello Bob"


async def test_a_dead_letter_is_retried_under_its_id(
    api: httpx.AsyncClient, settings: PostroomSettings, client: PostroomClient
) -> None:
    d0, d1 = await _dead_letters(api, settings, client, 2)
    retried = await api.post(f"{FAILED}/{d0}/retry")
    assert retried.status_code == 200 and retried.json() == {"retried": 1}
    job = (await api.get(f"/jobs/{d0}")).json()
    assert job["state"] == "queued" and job["tries"] == 0
    assert (await api.get(FAILED)).json()["total"] == 1
    assert (await api.post(f"{FAILED}/{d0}/retry")).status_code == 404
    other_queue = await api.post(f"/queues/message-indexing/failed/{d1}/retry")
    assert other_queue.status_code == 404
    assert "among the dead letters of message-indexing" in other_queue.json()["detail"]


async def test_every_dead_letter_of_a_queue_is_retried(
    api: httpx.AsyncClient, settings: PostroomSettings, client: PostroomClient
) -> None:
    ids = await _dead_letters(api, settings, client, 3)
    assert (await api.post(f"{FAILED}/retry")).json() == {"retried": 3}
    queued = (await api.get("/queues/message-delivery/jobs")).json()
    assert sorted(item["job_id"] for item in queued["items"]) == sorted(ids)
    assert (await api.get(FAILED)).json()["total"] == 0


async def test_dead_letters_are_removed_one_by_one_or_purged(
    api: httpx.AsyncClient, settings: PostroomSettings, client: PostroomClient
) -> None:
    d0, _, _ = await _dead_letters(api, settings, client, 3)
    assert (await api.delete(f"{FAILED}/{d0}")).json() == {"removed": 1}
    assert (await api.delete(f"{FAILED}/{d0}")).status_code == 404
    # Its failed result is kept as long as results are.
    assert (await api.get(f"/jobs/{d0}")).json()["state"] == "failed"
    assert (await api.delete(FAILED)).json() == {"removed": 2}
    assert (await api.get(FAILED)).json()["total"] == 0
