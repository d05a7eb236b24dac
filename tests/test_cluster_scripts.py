"""Every Lua script and transaction postroom sends stays within one Redis Cluster slot.

Run against a real three-primary cluster (tests/servers/cluster.py). A Cluster client refuses
a script whose declared KEYS span slots (CROSSSLOT), and since every script carries the
`#!lua` shebang (workers/store/scripts.py) the node running it refuses any key it touches outside
the slot of its KEYS, declared or built in Lua. Transactions (MULTI/EXEC, WATCH) go to the node
that owns the queue's slot, which refuses them if one command strays from it. Each queue's
life (enqueue, claim, progress, renew, finish, cancel, dead-letter retry, clean, a bulk enqueue
with its checkpoint, a reseal) runs for two queues on two different primaries.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from arq.jobs import serialize_result
from redis.asyncio import RedisCluster
from redis.crc import key_slot
from redis.exceptions import RedisClusterException, RedisError

from config.queues import QueueName
from config.rate_limits import RateLimit, parse_rate_limit
from config.settings import PostroomSettings
from tests.servers.cluster import LocalCluster
from workers.events.handled_log import RedisHandledLog
from workers.events.queued import handled_key
from workers.events.rabbitmq.claim import EventClaims
from workers.keyring.keyring import Keyring
from workers.store import key_migration
from workers.store.audit_log import AuditLog, AuditRecord
from workers.store.cancellation import cancel_job
from workers.store.dead_letter import DeadLetter, DeadLetterStore, TryError
from workers.store.enqueue import Checkpoint, NewJob, write_jobs
from workers.store.enqueue_batch import EnqueueBatcher
from workers.store.job_listing import clean_jobs
from workers.store.keys import Keys, QueueKeys
from workers.store.progress import ProgressReporter
from workers.store.rate_limit import reserve, take
from workers.store.resealing import reseal_queue
from workers.store.scripts import LuaScript
from workers.store.sealing import PayloadSealer, sealed_key_id
from workers.store.serialization import dumps, loads
from workers.store.worker_scripts import (
    CLAIM,
    CLAIMED_FIELDS,
    FINISH_FIELDS,
    PARTITIONS_USED,
    RENEW,
    finish_script,
)

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")

# The scripts the queue life below runs on the cluster, by "<module>.<name>".
RUN_ON_CLUSTER = {
    "workers.store.enqueue.ENQUEUE",
    "workers.store.worker_scripts.CLAIM",
    "workers.store.worker_scripts.RENEW",
    "workers.store.worker_scripts.PARTITIONS_USED",
    "workers.store.progress._REPORT",
    "workers.store.cancellation._CANCEL",
    "workers.store.enqueue.ENQUEUE_WITH_CHECKPOINT",
    "workers.store.dead_letter._ADD",
    "workers.store.dead_letter._RETRY",
    "workers.store.indexed_delete._DELETE_INDEXED",
    "workers.events.handled_log._MARK",
    "workers.events.rabbitmq.claim._RENEW",
    "workers.events.rabbitmq.claim._RELEASE",
    "workers.store.audit_log._APPEND",
    "workers.store.rate_limit.RATE_LIMIT",
    "workers.store.resealing.SWAP",
    "workers.store.resealing.SWAP_LIST",
}
# `postroom migrate-keys` moves jobs out of the layout before hash tags, whose keys (arq's
# global `arq:job:<id>`, `<prefix>:queue:<queue>`) carry no tag: its scripts span slots by
# nature and run on one Redis only. That layout never ran on a Cluster (its scripts would have
# been refused), so there is nothing to migrate there. The test below shows the cluster
# refusing them, so this list cannot hide a script that would need to run there.
SINGLE_NODE_ONLY = {
    "workers.store.key_migration.MOVE_JOB",
    "workers.store.key_migration.CARRY_PAUSE",
    "workers.store.key_migration.FINISH_QUEUE",
    "workers.store.key_migration.MOVE_MARKER",
}


def postroom_scripts() -> dict[str, LuaScript]:
    """Every module-level LuaScript of workers/ and tasks/ (finish_script builds one per
    queue at run time and is run below as "workers.store.worker_scripts.finish_script")."""
    found: dict[str, LuaScript] = {}
    for package in ("workers", "tasks"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if "LuaScript" not in path.read_text():
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            module = importlib.import_module(name)
            for attr, value in vars(module).items():
                if isinstance(value, LuaScript):
                    found[f"{name}.{attr}"] = value
    return found


async def accepted(name: str, call: Awaitable[T]) -> T:
    """`call`'s answer; a refusal by the cluster fails the test naming the script."""
    try:
        return await call
    except (RedisError, RedisClusterException) as exc:
        raise AssertionError(f"the cluster refused {name}: {exc}") from exc


@pytest.fixture
async def cluster_client(redis_cluster: LocalCluster) -> AsyncIterator[RedisCluster]:
    host, port = redis_cluster.startup_nodes[0]
    client = RedisCluster(host=host, port=port)
    await client.initialize()
    try:
        yield client
    finally:
        await client.aclose()


def prefix_over_two_primaries(cluster: LocalCluster, queues: tuple[QueueName, QueueName]) -> str:
    """A fresh key prefix whose two `queues` live on different primaries."""
    while True:
        prefix = f"test-{uuid.uuid4().hex[:10]}"
        nodes = {
            cluster.node_of_slot(key_slot(Keys(prefix).of(q).queue.encode())).port for q in queues
        }
        if len(nodes) == 2:
            return prefix


def new_job(keys: QueueKeys, job_id: str, *, delay_ms: int = 0, **extra: Any) -> NewJob:
    now = int(time.time() * 1000)
    return NewJob(job_id, keys, "send-message", {"n": job_id}, now + delay_ms, now, **extra)


async def claim(redis: RedisCluster, keys: QueueKeys, want: int) -> list[tuple[str, str]]:
    """CLAIM with the arguments a QueueWorker sends; (job id, lease token) per claimed job."""
    now = int(time.time() * 1000)
    args: list[str | int] = [
        now,
        want,
        1000,
        30_000,
        keys.job(""),
        keys.tries(""),
        keys.running(""),
        keys.recoveries(""),
        "worker-1",
        0,
        60_000,
        88_400,
        now - 3_600_000,
        1,
    ]
    claimed = await accepted("CLAIM", CLAIM(redis, [keys.queue, keys.active, keys.results], args))
    rows = [claimed[i : i + CLAIMED_FIELDS] for i in range(0, len(claimed), CLAIMED_FIELDS)]
    return [(row[0].decode(), row[5].decode()) for row in rows]


def letter_head(keys: QueueKeys, job_id: str) -> bytes:
    """A dead letter's JSON up to its error list, as the worker sends it to FINISH."""
    letter = DeadLetter(
        job_id=job_id,
        task="send-message",
        queue=keys.queue_name,
        payload={"n": job_id},
        reason="max-tries",
        tries=1,
        errors=[],
        enqueued_at=time.time(),
        failed_at=time.time(),
    )
    return letter.model_dump_json(exclude={"errors"}).encode()[:-1] + b',"errors":['


def result_data(keys: QueueKeys, job_id: str, now_ms: int) -> bytes:
    """A successful run's result, in arq's encoding, as the worker sends it to FINISH."""
    data = serialize_result(
        "send-message", (), {"n": job_id}, 1, now_ms, True, {"ok": True}, now_ms, now_ms,
        f"{job_id}:send-message", keys.queue_name.value, job_id, serializer=dumps,
    )  # fmt: skip
    assert data is not None
    return data


def try_error() -> bytes:
    return dumps(TryError(attempt=1, type="ValueError", message="boom", traceback="", at=0.0))


async def queue_life(redis: RedisCluster, prefix: str, queue: QueueName) -> None:
    """One queue's scripts and transactions, in the order a job's life sends them."""
    keys = Keys(prefix).of(queue)
    # ENQUEUE: one job alone, three in one pipeline, a cron tick's job with its "once" marker.
    assert await accepted("ENQUEUE", write_jobs(redis, [new_job(keys, "a")])) == [True]
    batch = [new_job(keys, i) for i in ("b", "c")] + [new_job(keys, "later", delay_ms=3_600_000)]
    assert await accepted("ENQUEUE", write_jobs(redis, batch)) == [True, True, True]
    tick = new_job(keys, "tick", once_key=keys.cron_tick("tick", 60_000), once_ttl_ms=60_000)
    assert await accepted("ENQUEUE", write_jobs(redis, [tick])) == [True]
    assert await accepted("ENQUEUE", write_jobs(redis, [new_job(keys, "a")])) == [False]

    tokens = dict(await claim(redis, keys, 3))
    assert sorted(tokens) == ["a", "b", "c"]

    report = ProgressReporter(redis, keys.progress("a"), 60, fence=(keys.running("a"), tokens["a"]))
    await accepted("_REPORT", report(percentage=50, step="half"))
    assert await redis.exists(keys.progress("a"))

    renew_args: list[Any] = [30_000, keys.running(""), keys.recoveries("")]
    for job_id, token in tokens.items():
        renew_args += [token, job_id]
    assert await accepted("RENEW", RENEW(redis, [keys.active], renew_args)) == []
    used = PARTITIONS_USED(redis, [keys.partitions_used], [4])
    assert await accepted("PARTITIONS_USED", used) == 4

    finish = finish_script(keys, results_kept=100, errors_kept_s=60)
    now = int(time.time() * 1000)
    ends: list[Any] = []
    counters = {"finish": "completed", "retry": "retried failed", "dead": "dead_lettered failed"}
    for job_id, what, error, head in (
        ("a", "finish", b"", b""),
        ("b", "retry", try_error(), b""),
        ("c", "dead", try_error(), letter_head(keys, "c")),
    ):
        counters = {
            "finish": "completed",
            "retry": "retried failed",
            "dead": "dead_lettered failed",
        }
        row = [job_id, tokens[job_id], what, result_data(keys, job_id, now), 60_000, 1_000, now]
        ends += [*row, counters[what], error, head]
    assert len(ends) == 3 * FINISH_FIELDS
    refused = await accepted("finish_script", finish(redis, [keys.queue], ends))
    assert refused == []
    assert await redis.exists(keys.result("a"), keys.dead_record("c")) == 2

    assert await accepted("_CANCEL", cancel_job(redis, Keys(prefix), "later", 60)) == "cancelled"

    letters = DeadLetterStore(redis, Keys(prefix), 3600)
    # Refused while a worker still holds the dying run; the letter stays.
    await redis.zadd(keys.active, {"c": time.time() * 1000 + 60_000})  # a live lease
    assert not await accepted("DeadLetterStore.retry", letters.retry("c", queue))
    assert await redis.exists(keys.dead_record("c"))
    await redis.zrem(keys.active, "c")
    assert await accepted("DeadLetterStore.retry", letters.retry("c", queue))
    assert await redis.zscore(keys.queue, "c") is not None
    assert not await redis.exists(keys.dead_record("c"), keys.result("c"), keys.tries("c"))
    assert await letters.count(queue) == 0
    for job_id in ("d", "e", "f"):
        await redis.rpush(keys.try_errors(job_id), try_error())
        await accepted(
            "DeadLetterStore.add",
            letters.add(
                job_id=job_id, task="send-message", queue=queue, payload={}, reason="permanent",
                tries=2, last_error=TryError.model_validate_json(try_error()), enqueued_at=None,
            ),
        )  # fmt: skip
    stored = await letters.get("d", queue)
    assert stored is not None and len(stored.errors) == 2
    assert not await redis.exists(keys.try_errors("d"))
    assert await accepted("DeadLetterStore.remove", letters.remove("d", queue))
    assert await accepted("DeadLetterStore.purge", letters.purge(queue)) == 2
    assert await letters.count(queue) == 0
    assert not await redis.exists(*(keys.dead_record(i) for i in "def"))

    cleaned = clean_jobs(redis, Keys(prefix), letters, queue, "complete", 0)
    assert await accepted("clean_jobs", cleaned) == 1
    assert not await redis.exists(keys.result("a"), keys.progress("a"))
    assert await redis.zscore(keys.results, "a") is None

    chunk = [new_job(keys, "chunk-1"), new_job(keys, "chunk-2")]
    chunk.append(new_job(keys, "chunk-tick", once_key=keys.cron_tick("x", 1), once_ttl_ms=60_000))
    chunk.append(new_job(keys, "c"))  # queued again by its retry: its id is taken
    mark = Checkpoint(keys.checkpoint("batch:x"), "2", 60_000)
    written = await accepted("write_jobs+checkpoint", write_jobs(redis, chunk, checkpoint=mark))
    assert written == [True, True, True, False]
    assert await redis.get(mark.key) == b"2"
    assert await redis.exists(keys.cron_tick("x", 1))

    # `postroom reseal`: the plain jobs and try errors sealed in place, a key per call.
    await redis.rpush(keys.try_errors("chunk-1"), try_error())
    sealer = PayloadSealer(Keyring({"k": bytes(32)}, "k"), seals=True)
    resealed = await accepted("reseal_queue", reseal_queue(redis, Keys(prefix), queue, sealer))
    assert resealed.resealed >= 4 and resealed.changed == 0 and resealed.unopenable == []
    assert sealed_key_id(loads(await redis.get(keys.job("chunk-1")))["k"]) == "k"
    [error] = await redis.lrange(keys.try_errors("chunk-1"), 0, -1)
    assert sealed_key_id(loads(error)["message"]) == "k"


async def test_cluster_runs_every_script_of_two_queues(
    cluster_client: RedisCluster, redis_cluster: LocalCluster
) -> None:
    queues = (QueueName.DELIVERY, QueueName.NOTIFICATION)
    prefix = prefix_over_two_primaries(redis_cluster, queues)
    for queue in queues:
        await queue_life(cluster_client, prefix, queue)


async def test_cluster_marks_handled_events_on_two_primaries(
    cluster_client: RedisCluster, redis_cluster: LocalCluster
) -> None:
    """The events handled log's keys are outside any queue: two land on different primaries."""
    prefix = f"test-{uuid.uuid4().hex[:10]}"
    ports: dict[int, str] = {}
    while len(ports) < 2:
        event_id = uuid.uuid4().hex
        key = handled_key(prefix, event_id)
        ports.setdefault(redis_cluster.node_of_slot(key_slot(key.encode())).port, event_id)
    log = RedisHandledLog(cluster_client, Keys(prefix).event_handled, 60)
    for event_id in ports.values():
        await accepted("_MARK", log.mark(event_id, "first"))
        await accepted("_MARK", log.mark(event_id, "second"))
        assert await log.handled(event_id) == {"first", "second"}
        assert 0 < await cluster_client.ttl(handled_key(prefix, event_id)) <= 60


async def test_cluster_runs_a_rabbitmq_groups_claims_and_handled_log_on_two_primaries(
    cluster_client: RedisCluster, redis_cluster: LocalCluster
) -> None:
    """A RabbitMQ consumer group's per-event keys (its claim while handlers run, its handled
    log) sit outside any queue: events whose keys land on two primaries are claimed,
    renewed, released and marked there."""
    keys = Keys(f"test-{uuid.uuid4().hex[:10]}")
    ports: dict[int, str] = {}
    while len(ports) < 2:
        event_id = uuid.uuid4().hex
        key = keys.event_group_claim("billing", event_id)
        ports.setdefault(redis_cluster.node_of_slot(key_slot(key.encode())).port, event_id)
    claims = EventClaims(cluster_client, keys, "billing", lease_seconds=0.3)
    log = RedisHandledLog(
        cluster_client, functools.partial(keys.event_group_handled, "billing"), ttl_seconds=60
    )
    for event_id in ports.values():
        claim_key = keys.event_group_claim("billing", event_id)
        async with claims.claim(event_id) as held:
            assert held
            async with claims.claim(event_id) as again:
                assert not again  # one run of an event at a time
            token = await cluster_client.get(claim_key)
            await accepted("_RENEW", claims._renew_once(claim_key, token.decode()))
            assert await cluster_client.pttl(claim_key) > 0
            await accepted("_MARK", log.mark(event_id, "first"))
        assert await cluster_client.exists(claim_key) == 0  # _RELEASE ran on its node
        assert await log.handled(event_id) == {"first"}


async def test_cluster_keeps_the_audit_trail_of_deployments_on_two_primaries(
    cluster_client: RedisCluster, redis_cluster: LocalCluster
) -> None:
    """The audit stream is one key outside any queue: appended, trimmed and read on its node."""
    ports: dict[int, str] = {}
    while len(ports) < 2:
        prefix = f"test-{uuid.uuid4().hex[:10]}"
        key = Keys(prefix).audit_log()
        ports.setdefault(redis_cluster.node_of_slot(key_slot(key.encode())).port, prefix)
    for prefix in ports.values():
        log = AuditLog(cluster_client, Keys(prefix), retention=3600, max_records=2)
        for n in range(3):
            record = AuditRecord(actor="alice", via="api", action="queue.pause", outcome="ok",
                                 count=n)  # fmt: skip
            await accepted("_APPEND", log.append(record))
        assert [r.count for r in (await log.query()).items] == [2, 1]


async def test_cluster_runs_the_rate_limit_script_on_queue_and_named_buckets(
    cluster_client: RedisCluster,
) -> None:
    """A queue's bucket (its first partition's tag) and a named limit's (a tag of its own,
    bucket and held slots together) each run in one slot."""
    keys = Keys(f"rate-{uuid.uuid4().hex[:8]}", {QueueName.DELIVERY: 4})
    ten = RateLimit.model_validate(parse_rate_limit("10/s burst=2"))
    grant = await accepted(
        "RATE_LIMIT", take(cluster_client, keys.of(QueueName.DELIVERY).rate_bucket, ten, 5)
    )
    assert grant.granted == 2
    named = keys.rate_limit("sms")
    delays = await accepted(
        "RATE_LIMIT", reserve(cluster_client, named.bucket, named.held, ten, ["a", "b", "c"], 0.05)
    )
    assert delays[:2] == [0, 0] and delays[2] < 0
    assert await cluster_client.zcard(named.held) == 1


def test_cluster_test_covers_every_script() -> None:
    """A new script must join the queue life above (or, with a reason, SINGLE_NODE_ONLY)."""
    assert set(postroom_scripts()) == RUN_ON_CLUSTER | SINGLE_NODE_ONLY


async def test_cluster_refuses_the_migration_scripts(cluster_client: RedisCluster) -> None:
    """The single-node scripts really do span slots: the exemption above hides nothing."""
    queue = QueueName.DELIVERY
    old, new = key_migration.OldKeys("postroom"), Keys("postroom").of(queue)
    calls: dict[str, tuple[LuaScript, list[str], list[str]]] = {
        "MOVE_JOB": (key_migration.MOVE_JOB, *key_migration._job_call(old, new, "j", True)),
        "CARRY_PAUSE": (key_migration.CARRY_PAUSE, [old.paused(queue), new.paused], []),
        "FINISH_QUEUE": (
            key_migration.FINISH_QUEUE,
            [
                old.stats(queue),
                new.stats,
                old.paused(queue),
                old.queue(queue),
                old.wake(queue),
                new.wake,
            ],
            ["0"],
        ),
        "MOVE_MARKER": (
            key_migration.MOVE_MARKER,
            ["postroom:cron:tick:60000", new.cron_tick("tick", 60_000)],
            ["1"],
        ),
    }
    assert {f"workers.store.key_migration.{name}" for name in calls} == SINGLE_NODE_ONLY
    for script, keys, args in calls.values():
        with pytest.raises(RedisClusterException, match="same key slot"):
            await script(cluster_client, keys, args)


async def test_coalesced_enqueues_of_two_queues_on_two_primaries_run_on_the_cluster(
    cluster_client: RedisCluster, redis_cluster: LocalCluster
) -> None:
    """ENQUEUE_BATCH (enqueue_batch_script, one per queue, built at run time): one coalesced
    write of callers on queues that live on different primaries, a duplicate id among them."""
    queues = (QueueName.DELIVERY, QueueName.NOTIFICATION)
    keys = Keys(prefix_over_two_primaries(redis_cluster, queues))
    writer = EnqueueBatcher(cluster_client)
    delivery, notification = keys.of(queues[0]), keys.of(queues[1])
    first = writer.write([new_job(delivery, "x")])  # on the wire alone
    rest = [
        writer.write([new_job(delivery, "y"), new_job(notification, "x")]),
        writer.write([new_job(delivery, "x"), new_job(notification, "later", delay_ms=60_000)]),
    ]
    answers = await accepted("ENQUEUE_BATCH", asyncio.gather(first, *rest))
    assert answers == [[True], [True, True], [False, True]]
    assert await cluster_client.zcard(delivery.queue) == 2
    assert await cluster_client.zcard(notification.queue) == 2
    assert await cluster_client.llen(notification.wake) == 1


async def test_cluster_refuses_a_checkpoint_of_another_queue(cluster_client: RedisCluster) -> None:
    keys = Keys(f"test-{uuid.uuid4().hex[:10]}")
    jobs = [new_job(keys.of(QueueName.DELIVERY), "x")]
    mark = Checkpoint(keys.of(QueueName.BATCH).checkpoint("batch:x"), "1", 60_000)
    with pytest.raises(ValueError, match="not under the hash tag of queue message-delivery"):
        await write_jobs(cluster_client, jobs, checkpoint=mark)
    assert not await cluster_client.exists(keys.of(QueueName.DELIVERY).job("x"))


async def test_cluster_spreads_the_six_queues_over_the_primaries(
    cluster_client: RedisCluster, redis_cluster: LocalCluster
) -> None:
    """With the default prefix, one job in each queue: its job keys counted on every primary
    (SCAN on each node) land on all three."""
    prefix = PostroomSettings.model_fields["key_prefix"].default
    job_id = uuid.uuid4().hex
    jobs = [new_job(Keys(prefix).of(queue), job_id) for queue in QueueName]
    assert await write_jobs(cluster_client, jobs) == [True] * len(jobs)
    per_node: dict[int, int] = {}
    try:
        for node in redis_cluster.nodes:
            with node.client() as redis:
                per_node[node.port] = sum(
                    1 for key in redis.scan_iter(match=f"*:job:{job_id}", count=1000)
                )
    finally:
        for job in jobs:
            await cluster_client.delete(job.keys.job(job_id), job.keys.wake)
            await cluster_client.zrem(job.keys.queue, job_id)
    assert sum(per_node.values()) == len(QueueName)
    # Deterministic for the default prefix and the fixture's even split: 3, 1 and 2 queues.
    assert len([n for n in per_node.values() if n]) == len(redis_cluster.nodes), per_node
