"""`postroom migrate-keys`: a deployment written in the layout before hash tags (commit 59b556a)
is moved to workers/store/keys.py's and then behaves: queued jobs run, dead letters retry, kept
results and counters answer, a paused queue stays paused; a second run moves nothing."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any

import orjson
import pytest
from arq.jobs import serialize_result
from redis.asyncio import Redis

from config.queues import QueueName
from config.settings import PostroomSettings
from tasks.batch_sending import checkpoint_key
from tests.conftest import ROOT, eventually, running_worker, worker_env
from tests.sample_tasks import Greeting, echo
from workers.client import PostroomClient
from workers.registry import registry
from workers.runner.supervisor import Supervisor
from workers.store.dead_letter import DeadLetter, TryError
from workers.store.enqueue import NewJob
from workers.store.key_migration import (
    OldKeys,
    QueueMigration,
    marker_rules,
    migrate_keys,
    migrate_markers,
)
from workers.store.keys import Keys
from workers.store.priority import Priority, ready_score, waiting_score
from workers.store.serialization import dumps

DELIVERY, PAUSED = QueueName.DELIVERY, list(QueueName)[-1]
HOUR_MS = 3_600_000


def _payload(client: PostroomClient, text: str) -> bytes:
    request = echo.call(Greeting(messageId=text, text=text))
    now = int(time.time() * 1000)
    job = NewJob("x", client.keys.of(DELIVERY), echo.name, request.kwargs, now, now)
    return job.payload()


def _error(attempt: int) -> TryError:
    return TryError(attempt=attempt, type="ValueError", message=f"try {attempt}",
                    traceback="Traceback ...", at=time.time())  # fmt: skip


async def _write_old_deployment(redis: Redis, client: PostroomClient) -> None:
    """What old workers and clients left: every state a job can be in, keys named as then."""
    old = OldKeys(client.keys.prefix)
    now = int(time.time() * 1000)
    q = DELIVERY
    # Queued (ready, high priority), with the error of a failed first try kept.
    await redis.set(old.job("old-ready"), _payload(client, "ready"), px=HOUR_MS)
    await redis.zadd(old.queue(q), {"old-ready": ready_score(Priority.HIGH, now - 5)})
    await redis.rpush(old.try_errors("old-ready"), dumps(_error(1)))
    await redis.expire(old.try_errors("old-ready"), 3600)
    await redis.set(old.tries("old-ready"), "1", ex=88400)
    # Delayed by an hour.
    await redis.set(old.job("old-delayed"), _payload(client, "delayed"), px=2 * HOUR_MS)
    await redis.zadd(old.queue(q), {"old-delayed": waiting_score(Priority.NORMAL, now + HOUR_MS)})
    # Running when its old worker died: the lease lapsed, the marker and active entry remain.
    await redis.set(old.job("old-lost"), _payload(client, "lost"), px=HOUR_MS)
    await redis.zadd(old.queue(q), {"old-lost": ready_score(Priority.NORMAL, now - 60_000)})
    await redis.zadd(old.active(q), {"old-lost": now - 30_000})
    await redis.set(old.tries("old-lost"), "1", ex=88400)
    await redis.set(old.running("old-lost"), "old-worker-1", px=HOUR_MS)
    # Running under a live old worker: its lease is live.
    await redis.set(old.job("old-busy"), _payload(client, "busy"), px=HOUR_MS)
    await redis.zadd(old.queue(q), {"old-busy": ready_score(Priority.NORMAL, now - 1000)})
    await redis.zadd(old.active(q), {"old-busy": now + 15_000})
    await redis.set(old.lease("old-busy"), "1", px=15_000)
    # Completed, its result kept (with its progress).
    result = serialize_result(
        echo.name, (), {}, 1, now - 9000, True, {"text": "done"}, now - 8000, now - 7000,
        "old-done:tests.echo", old.queue(q), job_id="old-done", serializer=dumps,
    )  # fmt: skip
    assert result is not None
    await redis.set(old.result("old-done"), result, px=HOUR_MS)
    await redis.zadd(old.results(q), {"old-done": now - 7000})
    await redis.set(
        old.progress("old-done"),
        dumps({"percentage": 100, "step": "all", "updated_at": now / 1000}),
        px=HOUR_MS,
    )
    # A result index entry whose result expired long ago.
    await redis.zadd(old.results(q), {"old-expired": now - 10 * HOUR_MS})
    # Dead-lettered after three tries.
    payload = echo.call(Greeting(messageId="dead", text="dead")).kwargs
    letter = DeadLetter(
        job_id="old-dead", task=echo.name, queue=q, payload=payload, reason="max-tries",
        tries=3, errors=[_error(1), _error(2), _error(3)], enqueued_at=now / 1000 - 60,
        failed_at=now / 1000 - 10,
    )  # fmt: skip
    await redis.set(old.dead_record("old-dead"), dumps(letter))
    await redis.zadd(old.dead_index(q), {"old-dead": letter.failed_at})
    await redis.hset(old.stats(q), mapping={"completed": 7, "failed": 2, "retried": 3})
    # A paused queue with a job waiting in it.
    await redis.set(old.paused(PAUSED), "1")
    await redis.set(old.job("old-paused"), _payload(client, "paused"), px=HOUR_MS)
    await redis.zadd(old.queue(PAUSED), {"old-paused": ready_score(Priority.NORMAL, now)})
    await redis.lpush(old.wake(PAUSED), "1")


async def postroom(settings: PostroomSettings, *args: str, **env: str) -> tuple[int, str, str]:
    """Run `postroom ARGS` as operators do; returns its exit code, stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers", *args,
        cwd=ROOT, env=worker_env(settings, **env),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def _by_queue(reports: list[QueueMigration]) -> dict[QueueName, QueueMigration]:
    return {r.queue: r for r in reports}


async def _old_keys_left(redis: Redis, prefix: str) -> list[str]:
    """Every key of the old layout still there: the prefix's, and arq's of the test's ids."""
    keys = [k.decode() async for k in redis.scan_iter(f"{prefix}:*")]
    keys += [k.decode() async for k in redis.scan_iter("arq:*:old-*")]
    hosts = Keys(prefix).worker_hosts()  # the new layout's, outside any queue
    return sorted(k for k in keys if not k.startswith("{") and k != hosts)


async def test_migration_moves_every_state_and_the_jobs_then_behave(
    settings: PostroomSettings, client: PostroomClient
) -> None:
    redis = client.redis
    prefix = client.keys.prefix
    await _write_old_deployment(redis, client)

    dry = _by_queue(await migrate_keys(redis, prefix, dry_run=True))
    assert (dry[DELIVERY].ready, dry[DELIVERY].delayed, dry[DELIVERY].completed) == (2, 1, 1)
    assert dry[DELIVERY].dead == 1 and dry[PAUSED].ready == 1
    assert await redis.exists(OldKeys(prefix).job("old-ready"))  # a dry run moves nothing
    assert not await redis.exists(client.keys.of(DELIVERY).queue)

    moved = _by_queue(await migrate_keys(redis, prefix))
    d = moved[DELIVERY]
    assert (d.ready, d.delayed, d.completed, d.dead, d.recovered) == (2, 1, 1, 1, 1)
    assert d.stale == 1  # the expired result's index entry, dropped
    assert d.running == ["old-busy"] and d.conflict == []
    assert d.counters == {"completed": 7, "failed": 2, "retried": 3}
    assert moved[PAUSED].paused and moved[PAUSED].ready == 1
    # Only the job an old worker still runs is left, with its old lease and active entry.
    old = OldKeys(prefix)
    assert await _old_keys_left(redis, prefix) == sorted(
        [old.active(DELIVERY), old.queue(DELIVERY), old.job("old-busy"), old.lease("old-busy")]
    )
    new = client.keys.of(DELIVERY)
    errors_ttl = await redis.ttl(new.try_errors("old-ready"))
    assert 0 < errors_ttl <= 3600  # carried with its TTL
    assert await redis.get(new.tries("old-lost")) == b"1"

    # Every job answers job_info from the new layout.
    ids = ("old-ready", "old-delayed", "old-lost", "old-done", "old-dead", "old-paused")
    states = {i: (await client.job_info(i)) for i in ids}
    assert {i: s.state.value for i, s in states.items() if s} == {
        "old-ready": "queued", "old-delayed": "deferred", "old-lost": "queued",
        "old-done": "complete", "old-dead": "dead-lettered", "old-paused": "queued",
    }  # fmt: skip
    assert states["old-done"] is not None and states["old-done"].result == {"text": "done"}
    assert states["old-ready"] is not None and states["old-ready"].priority == "high"

    async with running_worker(settings, queues=[DELIVERY, PAUSED]):

        async def completed(job_id: str) -> bool:
            info = await client.job_info(job_id)
            return info is not None and info.state == "complete"

        for job_id in ("old-ready", "old-lost"):
            await eventually(lambda j=job_id: completed(j), f"{job_id} completed")
        assert await client.dead_letters.retry("old-dead")
        await eventually(lambda: completed("old-dead"), "the retried dead letter completed")
        info = await client.job_info("old-dead")
        assert info is not None and info.result == {"text": "dead", "queue": DELIVERY.value,
                                                    "task": echo.name}  # fmt: skip
        stats = await client.queue_stats(DELIVERY)
        assert stats.completed == 7 + 3 and stats.failed == 2
        assert (await client.queue_stats(PAUSED)).paused
        paused = await client.job_info("old-paused")
        assert paused is not None and paused.state == "queued"  # paused: not run
        delayed = await client.job_info("old-delayed")
        assert delayed is not None and delayed.state == "deferred"
    recovered = await redis.get(new.recoveries("old-lost"))
    assert recovered == b"1"  # the new worker saw the old run's marker

    # The old worker finishes its job; the next run moves the result, then nothing is left.
    await redis.delete(old.lease("old-busy"))
    await redis.zrem(old.active(DELIVERY), "old-busy")
    again = _by_queue(await migrate_keys(redis, prefix))
    assert again[DELIVERY].ready == 1 and again[DELIVERY].running == []
    last = await migrate_keys(redis, prefix)
    assert all(r.moved == 0 and r.left == 0 and not r.counters and not r.paused for r in last)
    assert await _old_keys_left(redis, prefix) == []


async def test_a_job_whose_id_is_taken_in_the_new_layout_is_left_and_reported(
    client: PostroomClient,
) -> None:
    redis, prefix = client.redis, client.keys.prefix
    old = OldKeys(prefix)
    await client.enqueue(echo.call(Greeting(messageId="n", text="new")), job_id="twice")
    await redis.set(old.job("twice"), _payload(client, "old"), px=HOUR_MS)
    await redis.zadd(old.queue(DELIVERY), {"twice": ready_score(Priority.NORMAL, 1)})
    [report] = await migrate_keys(redis, prefix, [DELIVERY])
    assert report.conflict == ["twice"] and report.moved == 0
    assert await redis.exists(old.job("twice"))  # nothing dropped
    payload: dict[str, Any] | None = await client.job_payload("twice")
    assert payload is not None and payload["greeting"]["text"] == "new"  # nothing overwritten
    # arq's old `arq:job:<id>` has no prefix: left on the shared server it would be found by
    # test_key_layout's check that no job leaves an `arq:*` key.
    await redis.delete(old.job("twice"))


async def _checked(supervisor: Supervisor) -> bool:
    return supervisor._old_layout_checked


async def test_worker_warns_at_start_when_its_queues_have_old_layout_keys(
    settings: PostroomSettings, client: PostroomClient, caplog: pytest.LogCaptureFixture
) -> None:
    old = OldKeys(settings.key_prefix)
    await client.redis.zadd(old.dead_index(PAUSED), {"old": 1.0})
    caplog.set_level(logging.WARNING, logger="workers.store.key_migration")

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if "migrate-keys" in r.getMessage()]

    async with running_worker(settings, queues=[DELIVERY, PAUSED]) as supervisor:
        await eventually(lambda: _checked(supervisor), "the worker checked for the old layout")
    [warning] = warnings()
    assert PAUSED.value in warning and DELIVERY.value not in warning
    assert "postroom migrate-keys" in warning

    caplog.clear()
    async with running_worker(settings, queues=[DELIVERY]) as supervisor:
        await eventually(lambda: _checked(supervisor), "the worker checked for the old layout")
    assert warnings() == []


async def test_migrate_keys_command_moves_jobs_and_cron_ticks_and_says_what_it_left(
    settings: PostroomSettings, client: PostroomClient
) -> None:
    redis, prefix = client.redis, client.keys.prefix
    old = OldKeys(prefix)
    await redis.set(old.job("cli-job"), _payload(client, "cli"), px=HOUR_MS)
    await redis.zadd(old.queue(DELIVERY), {"cli-job": ready_score(Priority.NORMAL, 1)})
    tick = f"{prefix}:cron:tests.every_second:1764000000000"
    await redis.set(tick, "1", px=HOUR_MS)
    await redis.set(f"{prefix}:cron:gone.task:1764000000000", "1", px=HOUR_MS)
    modules = {"POSTROOM_TASK_MODULES": "tests.sample_tasks,tests.cron_tasks"}

    code, out, err = await postroom(settings, "migrate-keys", "--dry-run", "--json", **modules)
    assert code == 0, err
    dry = orjson.loads(out)
    assert dry["dry_run"] and dry["queues"][0]["queue"] == DELIVERY.value
    assert dry["queues"][0]["ready"] == 1
    assert dry["markers"][0]["kind"] == "cron tick" and dry["markers"][0]["moved"] == 1
    assert await redis.exists(tick, old.job("cli-job")) == 2  # nothing moved

    code, out, err = await postroom(settings, "migrate-keys", **modules)
    assert code == 0, err
    assert "moved 1 job(s) and 1 marker(s) from the old key layout" in out
    assert f"left 1 cron tick(s) of no known task or queue ({prefix}:cron:gone.task:" in out
    assert out.splitlines()[2].split()[:2] == [DELIVERY.value, "1"]  # the table's first row
    new_tick = client.keys.of(QueueName.CLEANUP).cron_tick("tests.every_second", 1764000000000)
    assert await redis.get(new_tick) == b"1" and not await redis.exists(tick)
    info = await client.job_info("cli-job")
    assert info is not None and info.state == "queued"


async def test_batch_checkpoints_move_into_their_queue_with_their_ttl_once(
    client: PostroomClient,
) -> None:
    redis, prefix = client.redis, client.keys.prefix
    await redis.set(f"{prefix}:batch:b1:done", "50", px=HOUR_MS)
    await redis.set(f"{prefix}:batch:b2:done", "10", px=HOUR_MS)
    await redis.set(
        checkpoint_key(Keys(prefix), "b2", "any"), "20"
    )  # a new worker got further already
    rules = marker_rules(prefix, {t.name: t.queue for t in registry})
    [_, batches] = await migrate_markers(redis, rules)
    assert batches.kind == "batch checkpoint" and batches.moved == 1
    assert batches.conflict == [f"{prefix}:batch:b2:done"]  # both kept: nothing overwritten
    assert await redis.get(checkpoint_key(Keys(prefix), "b1", "any")) == b"50"
    assert 0 < await redis.pttl(checkpoint_key(Keys(prefix), "b1", "any")) <= HOUR_MS
    assert await redis.get(checkpoint_key(Keys(prefix), "b2", "any")) == b"20"
    [_, again] = await migrate_markers(redis, rules)
    assert again.moved == 0 and again.conflict == batches.conflict
