"""Payload encryption at rest: what Redis (and its AOF) keeps of a job is sealed, a sealed
payload tampered with or moved to another job is dead-lettered as unsealable, rotation keeps
old jobs running, `postroom reseal` moves them to the active key, and a malformed key stops
the process at start naming the variable."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from config.queues import QueueName
from config.settings import PostroomSettings
from tests.conftest import ROOT, eventually, running_worker, worker_env
from tests.sealed_tasks import Note, carry, fail, reject
from workers.client import PostroomClient
from workers.connection.redis_server import EmbeddedRedis
from workers.observe.masking import MASK, masked_letter
from workers.ops.admin import create_admin_app
from workers.store.dead_letter import DeadLetterStore
from workers.store.job_status import JobState
from workers.store.keys import Keys
from workers.store.resealing import reseal_queue
from workers.store.sealing import SEALED, TEXT_MARK, sealed_key_id

DELIVERY = QueueName.DELIVERY


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def with_keys(
    settings: PostroomSettings, keys: dict[str, str], active: str, **more: Any
) -> PostroomSettings:
    encryption = {"keys": keys, "active_key_id": active}
    return settings.model_copy(
        update={"encryption": settings.encryption.model_validate(encryption), **more}
    )


def note(settings: PostroomSettings, marker: str) -> Note:
    return Note(
        key=f"{settings.key_prefix}:tries:{uuid.uuid4().hex}",
        text=marker,
        email=f"{marker}@example.com",
    )


async def raw_redis(client: PostroomClient, prefix: str) -> bytes:
    """Every value of every key of the deployment, as Redis holds it."""
    found: list[bytes] = []
    async for key in client.redis.scan_iter(match=f"*{prefix}*", count=1000):
        kind = (await client.redis.type(key)).decode()
        found.append(key)
        if kind == "string":
            found.append(await client.redis.get(key) or b"")
        elif kind == "list":
            found += await client.redis.lrange(key, 0, -1)
        elif kind == "hash":
            for field, value in (await client.redis.hgetall(key)).items():
                found += [field, value]
        elif kind == "zset":
            found += await client.redis.zrange(key, 0, -1)
        elif kind == "set":
            found += list(await client.redis.smembers(key))
    return b"\n".join(found)


def aof_bytes(server: EmbeddedRedis) -> bytes:
    """What the server's append-only files hold (what a copy of its disk would give away)."""
    return b"".join(p.read_bytes() for p in Path(server.data_dir).rglob("*") if p.is_file())


async def test_payload_encryption_leaves_no_plaintext_of_a_payload_in_redis(
    settings: PostroomSettings, redis_server: EmbeddedRedis
) -> None:
    sealed = with_keys(settings, {"k1": new_key()}, "k1")
    marker = f"marker-{uuid.uuid4().hex}"
    async with await PostroomClient.connect(sealed) as client:
        carried = await client.enqueue(carry.call(note(sealed, marker)))
        failed = await client.enqueue(fail.call(note(sealed, marker)))
        queued = await raw_redis(client, sealed.key_prefix)
        assert b"tests.sealed.carry" in queued  # the task name routes the job: plaintext
        assert marker.encode() not in queued
        async with running_worker(sealed):
            assert await carried.result(timeout=60) == {
                "echo": marker,
                "to": f"{marker}@example.com",
            }

            async def dead() -> bool:
                return await stored(client).get(failed.job_id) is not None

            await eventually(dead, "the failing job is dead-lettered")
        ended = await raw_redis(client, sealed.key_prefix)
        assert marker.encode() not in ended
        assert marker.encode() not in aof_bytes(redis_server)

        # Opened where they may be shown: the client, and masked in the admin views.
        info = await client.job_info(carried.job_id)
        assert info is not None and info.state == JobState.COMPLETE
        assert info.result == {"echo": marker, "to": f"{marker}@example.com"}
        assert info.progress is not None and info.progress.data == {"quote": marker}
        letter = await stored(client).get(failed.job_id)
        assert letter is not None and letter.reason == "max-tries"
        assert letter.payload.keys() == {SEALED}
        assert [e.message[: len(TEXT_MARK)] for e in letter.errors] == [TEXT_MARK, TEXT_MARK]
        opened = await client.dead_letters.get(failed.job_id)  # the client holds the keys
        assert opened is not None and opened.payload["note"]["text"] == marker
        assert [e.message for e in opened.errors] == [
            f"try {n} failed for {marker}@example.com: {marker}" for n in (1, 2)
        ]
        shown = masked_letter(letter, client.sealer)
        assert shown.payload["note"]["text"] == MASK
        assert shown.payload["note"]["email"] == f"{marker}@example.com"
        assert [e.message for e in shown.errors] == [  # the body masked in them too
            f"try {n} failed for {MASK}@example.com: {MASK}" for n in (1, 2)
        ]
        assert (await client.job_payload(failed.job_id) or {})["note"]["text"] == marker


async def test_payload_encryption_off_by_override_stores_plaintext(
    settings: PostroomSettings, redis_server: EmbeddedRedis
) -> None:
    """The control: with `POSTROOM_PAYLOAD_ENCRYPTION=false` the same search finds the marker."""
    plain = with_keys(settings, {"k1": new_key()}, "k1", payload_encryption=False)
    marker = f"marker-{uuid.uuid4().hex}"
    async with await PostroomClient.connect(plain) as client:
        await client.enqueue(carry.call(note(plain, marker)))
        assert marker.encode() in await raw_redis(client, plain.key_prefix)
    assert marker.encode() in aof_bytes(redis_server)


def stored(client: PostroomClient) -> DeadLetterStore:
    """The client's dead letters as Redis keeps them: sealed, not opened."""
    return DeadLetterStore(client.redis, client.keys, client.settings.dead_letter_retention)


async def _dead_letter(client: PostroomClient, job_id: str) -> Any:
    """The job's dead letter once it is written, as stored (sealed)."""

    async def dead() -> bool:
        return await stored(client).get(job_id) is not None

    await eventually(dead, f"job {job_id} is dead-lettered")
    return await stored(client).get(job_id)


def last_error(client: PostroomClient, letter: Any) -> str:
    """The letter's last error as the admin views show it (opened)."""
    message: str = masked_letter(letter, client.sealer).errors[-1].message
    return message


async def test_payload_encryption_tampered_payload_is_dead_lettered_naming_the_reason(
    settings: PostroomSettings,
) -> None:
    sealed = with_keys(settings, {"k1": new_key()}, "k1")
    keys = Keys.of_settings(sealed).of(DELIVERY)
    async with await PostroomClient.connect(sealed) as client:
        job = await client.enqueue(carry.call(note(sealed, "tampered")))
        record = orjson.loads(await client.redis.get(keys.job(job.job_id)))
        version, key_id, nonce, ciphertext = record["k"][SEALED].split(":")
        flipped = ("A" if ciphertext[5] != "A" else "B").join((ciphertext[:5], ciphertext[6:]))
        record["k"][SEALED] = ":".join((version, key_id, nonce, flipped))
        await client.redis.set(keys.job(job.job_id), orjson.dumps(record), keepttl=True)
        garbled = await client.enqueue(carry.call(note(sealed, "garbled")))
        record = orjson.loads(await client.redis.get(keys.job(garbled.job_id)))
        record["k"][SEALED] = "v1:k1:not-an-envelope"
        await client.redis.set(keys.job(garbled.job_id), orjson.dumps(record), keepttl=True)
        async with running_worker(sealed):
            letter = await _dead_letter(client, job.job_id)
            unreadable = await _dead_letter(client, garbled.job_id)
        assert letter.reason == "unsealable"
        assert letter.task == "tests.sealed.carry"  # plaintext: what routes the job
        message = last_error(client, letter)
        assert f"job {job.job_id!r}" in message and "authentication failed" in message
        assert unreadable.reason == "unsealable"
        assert "envelope text has 3 ':'-separated parts" in last_error(client, unreadable)


async def test_payload_encryption_payload_moved_to_another_job_is_dead_lettered(
    settings: PostroomSettings,
) -> None:
    """A's sealed record copied over B's: B is dead-lettered as unsealable, A still runs."""
    sealed = with_keys(settings, {"k1": new_key()}, "k1")
    keys = Keys.of_settings(sealed).of(DELIVERY)
    async with await PostroomClient.connect(sealed) as client:
        first = await client.enqueue(carry.call(note(sealed, "first")))
        second = await client.enqueue(reject.call(note(sealed, "second")))
        copied = await client.redis.get(keys.job(first.job_id))
        await client.redis.set(keys.job(second.job_id), copied, keepttl=True)
        async with running_worker(sealed):
            assert (await first.result(timeout=60))["echo"] == "first"
            letter = await _dead_letter(client, second.job_id)
    assert letter.reason == "unsealable"
    assert "authentication failed" in last_error(client, letter)
    assert "another job, queue or field" in last_error(client, letter)


def _reseal(settings: PostroomSettings, *args: str) -> dict[str, Any]:
    env = worker_env(settings)
    done = subprocess.run(
        [sys.executable, "-m", "workers", "reseal", "--json", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = orjson.loads(done.stdout)
    return result


async def test_payload_encryption_rotation_keeps_old_jobs_running_and_reseal_moves_them(
    settings: PostroomSettings,
) -> None:
    old, new = new_key(), new_key()
    before = with_keys(settings, {"old": old}, "old")
    rotated = with_keys(settings, {"old": old, "new": new}, "new")
    after = with_keys(settings, {"new": new}, "new")
    keys = Keys.of_settings(settings).of(DELIVERY)
    async with await PostroomClient.connect(before) as client:
        kept = await client.enqueue(carry.call(note(before, "sealed under old")))
        dead = await client.enqueue(reject.call(note(before, "a dead letter under old")))
    # Rotated: both keys, the new one active. Jobs sealed under the old key still run.
    async with await PostroomClient.connect(rotated) as client:
        fresh = await client.enqueue(carry.call(note(rotated, "sealed under new")))
        record = orjson.loads(await client.redis.get(keys.job(fresh.job_id)))
        assert sealed_key_id(record["k"]) == "new"
        async with running_worker(rotated):
            kept = client.job(kept.job_id, carry)  # its result is sealed under the new key
            assert (await kept.result(timeout=60))["echo"] == "sealed under old"
            assert (await fresh.result(timeout=60))["echo"] == "sealed under new"
            letter = await _dead_letter(client, dead.job_id)
        assert letter.reason == "permanent" and sealed_key_id(letter.payload) == "old"

    # A job still queued under the old key, then `postroom reseal` under the rotated keys.
    async with await PostroomClient.connect(before) as client:
        waiting = await client.enqueue(carry.call(note(before, "waits for the reseal")))
        record = orjson.loads(await client.redis.get(keys.job(waiting.job_id)))
        assert sealed_key_id(record["k"]) == "old"
        dry = _reseal(rotated, "--dry-run", DELIVERY.value)["queues"][0]
        assert dry["resealed"] >= 3 and dry["unopenable"] == []  # the job, letter, a result
        record = orjson.loads(await client.redis.get(keys.job(waiting.job_id)))
        assert sealed_key_id(record["k"]) == "old"  # a dry run changes nothing
        done = _reseal(rotated, DELIVERY.value)
        assert done["active_key_id"] == "new"
        assert done["queues"][0]["resealed"] == dry["resealed"]
        assert _reseal(rotated, DELIVERY.value)["queues"][0]["resealed"] == 0  # nothing left
        record = orjson.loads(await client.redis.get(keys.job(waiting.job_id)))
        assert sealed_key_id(record["k"]) == "new"
        letter = await stored(client).get(dead.job_id)
        assert letter is not None and sealed_key_id(letter.payload) == "new"
        assert {sealed_key_id(e.message) for e in letter.errors} == {"new"}
        orphan = await client.enqueue(carry.call(note(before, "enqueued after the reseal")))

    # The old key dropped: what was resealed opens and runs; what was not is unsealable.
    async with await PostroomClient.connect(after) as client:
        info = await client.job_info(kept.job_id)
        assert info is not None and info.result == {
            "echo": "sealed under old",
            "to": "sealed under old@example.com",
        }
        assert await client.dead_letters.retry(dead.job_id)
        async with running_worker(after):
            waiting = client.job(waiting.job_id, carry)
            assert (await waiting.result(timeout=60))["echo"] == "waits for the reseal"
            retried = await _dead_letter(client, dead.job_id)
            lost = await _dead_letter(client, orphan.job_id)
        assert retried.reason == "permanent"  # it opened and ran: the provider refused it
        shown = masked_letter(retried, client.sealer)
        assert shown.payload["note"]["email"] == "a dead letter under old@example.com"
        assert lost.reason == "unsealable"
        assert "key id 'old' is not in the keyring" in last_error(client, lost)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"POSTROOM_ENCRYPTION__KEYS": '{"k1": "not base64!"}'}, "POSTROOM_ENCRYPTION__KEYS"),
        ({"POSTROOM_ENCRYPTION__KEYS": '{"k1": "c2hvcnQ="}'}, "POSTROOM_ENCRYPTION__KEYS"),
        ({"POSTROOM_PAYLOAD_ENCRYPTION": "true"}, "POSTROOM_PAYLOAD_ENCRYPTION"),
        ({"POSTROOM_PAYLOAD_ENCRYPTION": "maybe"}, "POSTROOM_PAYLOAD_ENCRYPTION"),
    ],
)
def test_payload_encryption_malformed_key_stops_the_process_at_start_naming_the_variable(
    settings: PostroomSettings, env: dict[str, str], named: str
) -> None:
    for command in (["worker", "--burst"], ["stats"]):
        done = subprocess.run(
            [sys.executable, "-m", "workers", *command],
            cwd=ROOT, env=worker_env(settings, **env), capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        assert named in done.stderr, done.stderr
        assert "not base64!" not in done.stderr


def test_payload_encryption_reseal_without_keys_says_so(settings: PostroomSettings) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "workers", "reseal", "--dry-run"],
        cwd=ROOT, env=worker_env(settings), capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "POSTROOM_ENCRYPTION__KEYS" in done.stderr


async def test_payload_encryption_reseal_covers_every_partition(settings: PostroomSettings) -> None:
    old, new = new_key(), new_key()
    partitioned = {"message_delivery": {"partitions": 4}}
    before = with_keys(
        settings, {"old": old}, "old", queues=settings.queues.model_validate(partitioned)
    )
    rotated = before.model_copy(
        update={"encryption": with_keys(settings, {"old": old, "new": new}, "new").encryption}
    )
    async with await PostroomClient.connect(before) as client:
        handles = await client.enqueue_many(
            [carry.call(note(before, f"partitioned {n}")) for n in range(12)]
        )
    keys = Keys.of_settings(before)
    used = {h.keys.partition for h in handles if h.keys is not None}
    assert len(used) > 1  # the jobs are spread over the partitions
    async with await PostroomClient.connect(rotated) as client:
        report = await reseal_queue(client.redis, client.keys, DELIVERY, client.sealer)
        assert (report.resealed, report.unopenable) == (12, [])
        for handle in handles:
            assert handle.keys is not None
            record = orjson.loads(await client.redis.get(handle.keys.job(handle.job_id)))
            assert sealed_key_id(record["k"]) == "new"
            opened = client.sealer.open(record["k"], handle.job_id, DELIVERY, "kwargs")
            assert opened["note"]["text"].startswith("partitioned")
    assert keys.count(DELIVERY) == 4


async def test_payload_encryption_admin_api_shows_the_payload_opened_and_masked(
    settings: PostroomSettings,
) -> None:
    sealed = with_keys(settings, {"k1": new_key()}, "k1")
    token = "admin-token-of-the-sealing-tests-0123"
    app = create_admin_app(settings=sealed, token=token)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://admin",
            headers={"Authorization": f"Bearer {token}"},
        ) as api,
        await PostroomClient.connect(sealed) as client,
    ):
        job = await client.enqueue(reject.call(note(sealed, "shown to the admin")))
        queued = (await api.get(f"/jobs/{job.job_id}")).json()
        assert queued["payload"]["note"] == {
            "key": queued["payload"]["note"]["key"],
            "text": MASK,
            "email": "shown to the admin@example.com",
        }
        async with running_worker(sealed):
            await _dead_letter(client, job.job_id)
        letter = (await api.get(f"/queues/{DELIVERY.value}/failed/{job.job_id}")).json()
        assert letter["reason"] == "permanent"
        assert letter["payload"]["note"]["email"] == "shown to the admin@example.com"
        assert letter["errors"][-1]["message"] == "rejected by the provider"

    # Without the key the payload stays sealed, and says so.
    async with await PostroomClient.connect(settings) as keyless:
        payload = await keyless.job_payload(job.job_id)
        assert payload is not None and "no key is configured" in payload["sealed"]
