"""Malformed job records, of whatever shape, written straight into Redis: each is
dead-lettered with a reason naming what is wrong, the worker process carries on, and every
reading tool (client, admin API, CLI) shows such a record instead of failing."""

from __future__ import annotations

import asyncio
import contextlib
import io
import signal
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from config.queues import QueueName
from config.settings import PostroomSettings
from tests.conftest import eventually, postroom_worker
from tests.malformed_records import ANY_RECORD, GOOD_KWARGS, NAMED_CASES, record
from tests.raw_records import write_raw_job
from tests.sample_tasks import Greeting, echo
from workers.client import PostroomClient
from workers.ops.admin import create_admin_app
from workers.ops.cli import main as postroom_cli
from workers.store.dead_letter import DeadLetter
from workers.store.job_record import MalformedJobRecord, check_job_record, parse_job_record
from workers.store.job_status import JobState
from workers.store.serialization import UNDELIVERABLE_TASK, dumps, job_decoder

QUEUE = QueueName.DELIVERY
TOKEN = "malformed-records-token-0123456789"
HOSTILE = ["tests.echo", UNDELIVERABLE_TASK]


def worker_would_run(raw: bytes) -> bool:
    """Whether a record is one the worker runs to completion (tests.echo, valid payload)."""
    try:
        parsed = parse_job_record(raw)
        if parsed.task != "tests.echo":
            return False
        echo.decode(parsed.kwargs)
    except (MalformedJobRecord, ValueError):
        return False
    return True


# -- the check itself ----------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "says"), [(r, s) for _, r, s in NAMED_CASES],
                         ids=[n for n, _, _ in NAMED_CASES])  # fmt: skip
def test_malformed_record_is_routed_to_the_dead_letters_with_the_field_named(
    raw: bytes, says: str
) -> None:
    decoded = job_decoder(HOSTILE)(raw)
    if says == "ctx":  # well-formed: the payload check refuses the key (see the worker test)
        assert decoded["f"] == "tests.echo"
        return
    assert decoded["f"] == UNDELIVERABLE_TASK
    assert says in decoded["k"]["reason"]
    assert decoded["k"]["reason"].startswith(("malformed job record: ", "no task "))
    # What the letter keeps of the record can be written back as JSON.
    assert orjson.loads(dumps(decoded["k"]["payload"])) == decoded["k"]["payload"]


def test_well_formed_record_passes_the_check_unchanged() -> None:
    data = record(t=2)
    assert check_job_record(data, orjson.dumps(data)) == (
        "tests.echo", [], GOOD_KWARGS, 2, data["et"], None
    )  # fmt: skip


@hypothesis_settings(max_examples=300, derandomize=True, deadline=None)
@given(ANY_RECORD)
def test_malformed_record_of_any_shape_decodes_to_a_runnable_job_or_a_dead_letter(
    raw: bytes,
) -> None:
    decoded = job_decoder(HOSTILE)(raw)
    assert isinstance(decoded["f"], str)
    assert decoded["a"] == []
    assert isinstance(decoded["k"], dict)
    assert decoded["t"] is None or isinstance(decoded["t"], int)
    assert isinstance(decoded["et"], int) and not isinstance(decoded["et"], bool)
    if decoded["f"] == UNDELIVERABLE_TASK:
        assert decoded["k"]["reason"]
        # The dead letter it becomes can be stored.
        assert dumps(decoded["k"])
    else:
        assert decoded["f"] == "tests.echo"
        assert parse_job_record(raw).kwargs == decoded["k"]


# -- through a real worker process ----------------------------------------------------------


@contextlib.contextmanager
def worker_process(settings: PostroomSettings) -> Iterator[Any]:
    """A `postroom worker` process on the delivery queue; stopped with SIGTERM, it must exit
    0 (a clean drain, not a crash)."""
    process = postroom_worker(settings, "--queues", QUEUE.value)
    try:
        yield process
    finally:
        alive = process.poll() is None
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
        assert alive, f"the worker died (exit {code})"
        assert code == 0


@contextlib.asynccontextmanager
async def admin_api(client: PostroomClient) -> AsyncIterator[httpx.AsyncClient]:
    app = create_admin_app(client=client, token=TOKEN)
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://a", headers=headers) as c:
        yield c


async def write_records(client: PostroomClient, raws: Sequence[bytes], tag: str) -> list[str]:
    ids = [f"{tag}-{i}-{uuid.uuid4().hex[:8]}" for i in range(len(raws))]
    for job_id, raw in zip(ids, raws, strict=True):
        await write_raw_job(client.redis, client.keys, QUEUE, job_id, raw)
    return ids


async def settled(client: PostroomClient, job_ids: Sequence[str]) -> dict[str, DeadLetter | None]:
    """Wait until every job has a dead letter or a result; their letters (None: completed)."""

    async def all_ended() -> bool:
        infos = [await client.job_info(i) for i in job_ids]
        return all(
            info is not None and info.state in (JobState.DEAD_LETTERED, JobState.COMPLETE)
            for info in infos
        )

    await eventually(all_ended, "every record is dead-lettered or completed", within=60)
    return {i: await client.dead_letters.get(i) for i in job_ids}


async def check_reading_tools(
    client: PostroomClient, api: httpx.AsyncClient, job_ids: Sequence[str]
) -> None:
    """Every reading tool answers for every one of these jobs."""
    listed = {letter.job_id for letter in await client.dead_letters.list(QUEUE, limit=500)}
    page = await api.get(f"/queues/{QUEUE.value}/failed", params={"limit": 500})
    assert page.status_code == 200, page.text
    for job_id in job_ids:
        info = await client.job_info(job_id)
        assert info is not None
        assert isinstance(await client.job_payload(job_id), dict)
        detail = await api.get(f"/jobs/{job_id}")
        assert detail.status_code == 200, detail.text
        if info.state is JobState.DEAD_LETTERED:
            assert job_id in listed
            one = await api.get(f"/queues/{QUEUE.value}/failed/{job_id}")
            assert one.status_code == 200, one.text


async def ends_of(
    settings: PostroomSettings, raws: Sequence[bytes], tag: str
) -> list[DeadLetter | None]:
    """Write `raws` and a good job; each record must end completed (only when it is a valid
    job) or dead-lettered with its reason, the good job complete, every reading tool answer.
    Returns each record's dead letter (None: it completed)."""
    async with await PostroomClient.connect(settings) as client, admin_api(client) as api:
        ids = await write_records(client, raws, tag)
        canary = await client.enqueue(echo.call(Greeting(messageId="canary", text="alive")))
        letters = await settled(client, ids)
        for job_id, raw in zip(ids, raws, strict=True):
            letter = letters[job_id]
            if worker_would_run(raw):
                assert letter is None, (raw, letter)
                continue
            assert letter is not None, raw
            assert letter.reason in ("malformed", "undeliverable", "permanent"), letter
            assert letter.errors and letter.errors[-1].message, letter
        assert (await canary.result(timeout=30))["text"] == "alive"
        await check_reading_tools(client, api, ids)
    return [letters[i] for i in ids]


def test_malformed_record_of_each_kind_is_dead_lettered_and_the_worker_carries_on(
    settings: PostroomSettings,
) -> None:
    with worker_process(settings):
        letters = asyncio.run(ends_of(settings, [raw for _, raw, _ in NAMED_CASES], "named"))
    for (name, _, says), letter in zip(NAMED_CASES, letters, strict=True):
        assert letter is not None, name
        assert says in letter.errors[-1].message, (name, letter.errors[-1].message)
        if letter.reason == "malformed":
            assert letter.task is None
            assert letter.errors[-1].message.startswith("malformed job record: ")


def test_malformed_records_of_any_shape_never_stop_the_worker(
    settings: PostroomSettings,
) -> None:
    with worker_process(settings) as process:

        @hypothesis_settings(
            max_examples=6,
            derandomize=True,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(st.lists(ANY_RECORD, min_size=4, max_size=10))
        def check(raws: list[bytes]) -> None:
            asyncio.run(ends_of(settings, raws, "any"))
            assert process.poll() is None, "the worker died"

        check()


def test_reading_tools_of_the_cli_answer_for_malformed_records(
    settings: PostroomSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", str(settings.redis_url))
    monkeypatch.setenv("POSTROOM_KEY_PREFIX", settings.key_prefix)
    raws = [orjson.dumps(record(et="soon")), b"\x80\x04 a pickle, say"]

    async def write() -> list[str]:
        async with await PostroomClient.connect(settings) as client:
            return await write_records(client, raws, "cli")

    ids = asyncio.run(write())

    def cli(*args: str) -> Any:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert postroom_cli([*args, "--output", "json"]) == 0
        return orjson.loads(out.getvalue())

    queued = cli("job", ids[0])
    assert queued["state"] == "queued"
    assert "enqueue_time_ms (et) is a string" in queued["malformed"]
    with worker_process(settings):

        async def dead() -> dict[str, DeadLetter | None]:
            async with await PostroomClient.connect(settings) as client:
                return await settled(client, ids)

        asyncio.run(dead())
    for job_id in ids:
        shown = cli("job", job_id)
        assert shown["state"] == "dead-lettered"
        assert shown["error"].startswith("PermanentError: malformed job record")
    failed = cli("failed", QUEUE.value)
    assert {item["job_id"] for item in failed["items"]} == set(ids)
    assert {item["reason"] for item in failed["items"]} == {"malformed"}
