"""Reading tools over malformed records at rest (no worker): a job record, a result, a dead
letter, a progress record or a try error that cannot be read is shown as malformed, with the
reason, by the client and the admin API, and never makes them raise."""

from __future__ import annotations

import pickle
import uuid

import orjson
import pytest

from config.queues import QueueName
from tests.malformed_records import record
from tests.raw_records import (
    write_raw_dead_letter,
    write_raw_job,
    write_raw_progress,
    write_raw_result,
)
from tests.sample_tasks import echo
from tests.test_malformed_records import admin_api
from workers.client import JobFailedError, PostroomClient
from workers.store.dead_letter import try_error
from workers.store.job_status import JobState

QUEUE = QueueName.DELIVERY
PICKLE = pickle.dumps({"job_id": "x", "reason": "permanent"})


def new_id(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex}"


async def test_malformed_record_waiting_in_its_queue_is_shown_as_malformed(
    client: PostroomClient,
) -> None:
    job_id = new_id("queued")
    data = record(t="1")
    await write_raw_job(client.redis, client.keys, QUEUE, job_id, orjson.dumps(data))
    info = await client.job_info(job_id)
    assert info is not None
    assert info.state is JobState.QUEUED
    assert info.queue is QUEUE
    assert info.malformed == "malformed job record: job_try (t) is a string, not an integer"
    assert await client.job_payload(job_id) == {"record": data}  # what its dead letter keeps
    page = await client.list_jobs(QUEUE, JobState.QUEUED)
    assert [i.malformed for i in page.items if i.job_id == job_id] == [info.malformed]
    async with admin_api(client) as api:
        detail = await api.get(f"/jobs/{job_id}")
    assert detail.status_code == 200
    assert detail.json()["malformed"] == info.malformed


async def test_malformed_record_that_is_not_json_is_cancelled_like_any_other(
    client: PostroomClient,
) -> None:
    job_id = new_id("cancel")
    await write_raw_job(client.redis, client.keys, QUEUE, job_id, PICKLE, delay_s=600)
    info = await client.job_info(job_id)
    assert info is not None and info.state is JobState.DEFERRED
    assert info.malformed is not None and info.malformed.startswith("malformed job record: not")
    payload = await client.job_payload(job_id)
    assert payload is not None and "raw_base64" in payload
    assert await client.cancel(job_id) == "cancelled"
    cancelled = await client.job_info(job_id)
    assert cancelled is not None and cancelled.state is JobState.CANCELLED


@pytest.mark.parametrize(
    "raw",
    [PICKLE, b"{}", orjson.dumps({"job_id": 5, "queue": "nowhere"}), b"[]"],
    ids=["pickle", "empty object", "wrong fields", "a list"],
)
async def test_malformed_dead_letter_record_is_listed_as_malformed(
    client: PostroomClient, raw: bytes
) -> None:
    job_id = new_id("dead")
    await write_raw_dead_letter(client.redis, client.keys, QUEUE, job_id, raw)
    letter = await client.dead_letters.get(job_id)
    assert letter is not None
    assert letter.queue is QUEUE
    assert letter.reason == "malformed"
    assert letter.malformed is not None
    assert letter.malformed.startswith("malformed dead letter record: ")
    assert [x.job_id for x in await client.dead_letters.list(QUEUE)] == [job_id]
    info = await client.job_info(job_id)
    assert info is not None and info.state is JobState.DEAD_LETTERED
    assert info.malformed == letter.malformed
    assert await client.job_payload(job_id) is not None
    assert not await client.dead_letters.retry(job_id)
    async with admin_api(client) as api:
        listed = await api.get(f"/queues/{QUEUE.value}/failed")
        one = await api.get(f"/queues/{QUEUE.value}/failed/{job_id}")
        retried = await api.post(f"/queues/{QUEUE.value}/failed/{job_id}/retry")
        detail = await api.get(f"/jobs/{job_id}")
        removed = await api.delete(f"/queues/{QUEUE.value}/failed/{job_id}")
    assert listed.status_code == 200 and listed.json()["items"][0]["malformed"]
    assert one.status_code == 200 and one.json()["reason"] == "malformed"
    assert retried.status_code == 409 and "cannot be retried" in retried.json()["detail"]
    assert detail.status_code == 200 and detail.json()["state"] == "dead-lettered"
    assert removed.status_code == 200 and removed.json() == {"removed": 1}
    assert await client.dead_letters.get(job_id) is None


async def test_malformed_dead_letter_record_in_no_queue_is_no_dead_letter(
    client: PostroomClient,
) -> None:
    job_id = new_id("orphan")
    await client.redis.set(client.keys.of(QUEUE).dead_record(job_id), PICKLE)
    assert await client.dead_letters.get(job_id) is None
    info = await client.job_info(job_id)
    assert info is not None and info.malformed is not None  # the record is there, and says so


BAD_START = orjson.dumps({**record(), "s": True, "r": 1, "st": "x", "ft": 1})


@pytest.mark.parametrize(
    "raw",
    [PICKLE, orjson.dumps({"t": 1, "f": "tests.echo"}), BAD_START],
    ids=["pickle", "fields missing", "start time a string"],
)
async def test_malformed_result_record_is_shown_as_malformed(
    client: PostroomClient, raw: bytes
) -> None:
    job_id = new_id("result")
    await write_raw_result(client.redis, client.keys, QUEUE, job_id, raw)
    info = await client.job_info(job_id)
    assert info is not None
    assert info.state is JobState.MALFORMED
    assert info.malformed is not None and info.malformed.startswith("malformed result record")
    assert await client.job_payload(job_id) is not None
    page = await client.list_jobs(QUEUE, JobState.MALFORMED)
    assert [i.job_id for i in page.items] == [job_id]
    assert (await client.list_jobs(QUEUE, JobState.COMPLETE)).items == []
    with pytest.raises(JobFailedError, match="malformed result record"):
        await client.job(job_id, echo).result(timeout=1)


async def test_malformed_progress_record_leaves_the_rest_of_the_job_readable(
    client: PostroomClient,
) -> None:
    job_id = new_id("progress")
    await write_raw_job(client.redis, client.keys, QUEUE, job_id, orjson.dumps(record()))
    await write_raw_progress(client.redis, client.keys, QUEUE, job_id, b"\x80 not json")
    info = await client.job_info(job_id)
    assert info is not None
    assert info.state is JobState.QUEUED and info.task == "tests.echo"
    assert info.progress is None
    assert info.malformed is not None and info.malformed.startswith("malformed progress record")


async def test_malformed_try_error_record_does_not_stop_the_dead_letter(
    client: PostroomClient,
) -> None:
    job_id = new_id("errors")
    await client.redis.rpush(client.keys.of(QUEUE).try_errors(job_id), b"\x80 not json")
    letter = await client.dead_letters.add(
        job_id=job_id,
        task="tests.echo",
        queue=QUEUE,
        payload={},
        reason="max-tries",
        tries=2,
        last_error=try_error(2, RuntimeError("second try")),
        enqueued_at=None,
    )
    assert [e.type for e in letter.errors] == ["MalformedRecord", "RuntimeError"]
    assert letter.errors[0].message.startswith("malformed try error record")
    assert await client.dead_letters.get(job_id) == letter
