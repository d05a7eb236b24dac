"""POST /jobs validates and enqueues by task name; GET /jobs/{id} follows a real job through a
real worker, its payload masked."""

from __future__ import annotations

import httpx

from config.queues import QueueName
from config.settings import PostroomSettings
from tests.admin.tasks import note, unique_id
from tests.conftest import eventually, running_worker
from workers.client import PostroomClient


async def test_an_enqueued_job_runs_and_its_detail_masks_bodies_and_secrets(
    api: httpx.AsyncClient, settings: PostroomSettings
) -> None:
    payload = note(1, authToken="s3cr3t-t0ken")
    job_id = unique_id("greet")
    created = await api.post(
        "/jobs", json={"task": "admin.greet", "payload": payload, "job_id": job_id}
    )
    assert created.status_code == 201, created.text
    assert created.json() == {
        "job_id": job_id,
        "task": "admin.greet",
        "queue": "message-delivery",
        "created": True,
    }
    queued = (await api.get(f"/jobs/{job_id}")).json()
    assert queued["state"] == "queued" and queued["priority"] == "normal"
    assert queued["payload"] == {
        "note": {"messageId": "m1", "recipientId": "u1", "content": "***", "authToken": "***"}
    }
    async with running_worker(settings, queues=[QueueName.DELIVERY]):

        async def complete() -> bool:
            return bool((await api.get(f"/jobs/{job_id}")).json()["state"] == "complete")

        await eventually(complete, "the job completes")
    done = (await api.get(f"/jobs/{job_id}")).json()
    assert done["tries"] == 1 and done["task"] == "admin.greet" and done["error"] is None
    assert done["result"] == {"messageId": "m1", "content": "***"}
    assert done["payload"]["note"]["content"] == "***"
    assert done["payload"]["note"]["messageId"] == "m1"


async def test_a_taken_job_id_answers_200_with_the_existing_job(api: httpx.AsyncClient) -> None:
    body = {"task": "admin.greet", "payload": note(2), "job_id": unique_id("greet")}
    assert (await api.post("/jobs", json=body)).status_code == 201
    again = await api.post("/jobs", json=body)
    assert again.status_code == 200 and again.json()["created"] is False


async def test_priority_and_delay_are_applied(api: httpx.AsyncClient) -> None:
    body = {"task": "admin.greet", "payload": note(3), "priority": "urgent", "delay": 3600}
    job_id = (await api.post("/jobs", json=body)).json()["job_id"]
    info = (await api.get(f"/jobs/{job_id}")).json()
    assert (info["state"], info["priority"]) == ("deferred", "urgent")


async def test_an_invalid_payload_is_a_422_naming_the_field(
    api: httpx.AsyncClient, client: PostroomClient
) -> None:
    bad = {"note": {"messageId": "m1", "content": "hi"}}
    answer = await api.post("/jobs", json={"task": "admin.greet", "payload": bad})
    assert answer.status_code == 422
    [error] = answer.json()["detail"]
    assert error["loc"] == ["body", "payload", "note", "recipientId"]
    assert "payload.note.recipientId: Field required" in error["msg"]
    stats = await client.queue_stats(QueueName.DELIVERY)
    assert stats.waiting == 0  # nothing reached Redis


async def test_an_unknown_task_is_a_422_listing_the_known_ones(api: httpx.AsyncClient) -> None:
    answer = await api.post("/jobs", json={"task": "no.such.task", "payload": {}})
    assert answer.status_code == 422
    [error] = answer.json()["detail"]
    assert error["loc"] == ["body", "task"]
    assert "no task named 'no.such.task'" in error["msg"] and "admin.greet" in error["msg"]


async def test_a_bad_option_is_a_422_naming_it(api: httpx.AsyncClient) -> None:
    answer = await api.post("/jobs", json={"task": "admin.greet", "priority": "soon"})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "priority"]


async def test_an_unknown_job_is_a_404_naming_it(api: httpx.AsyncClient) -> None:
    answer = await api.get("/jobs/nope")
    assert answer.status_code == 404 and answer.json() == {"detail": "no job 'nope'"}
    cancel = await api.post("/jobs/nope/cancel")
    assert cancel.status_code == 404


async def test_a_waiting_job_is_cancelled(api: httpx.AsyncClient) -> None:
    job_id = unique_id("greet")
    body = {"task": "admin.greet", "payload": note(4), "job_id": job_id, "delay": 3600}
    await api.post("/jobs", json=body)
    answer = await api.post(f"/jobs/{job_id}/cancel")
    assert answer.json() == {"job_id": job_id, "outcome": "cancelled"}
    assert (await api.get(f"/jobs/{job_id}")).json()["state"] == "cancelled"
