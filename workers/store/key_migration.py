"""`postroom migrate-keys`: move one prefix's jobs from the pre-hash-tag key layout to keys.py's.

Before every key moved under its queue's hash tag, a job lived in arq's global keys
(`arq:job:<id>`, `arq:result:<id>`, `arq:retry:<id>`, `arq:in-progress:<id>`) and postroom's
`<prefix>:<kind>:<queue>` / `<prefix>:<kind>:<id>` keys. Workers of the new layout never look
there, so a deployment upgraded with jobs in them would strand them.

The old `arq:*` keys carry no prefix, so only ids found in this prefix's old queue sets, result
indexes, dead indexes, active and cancel sets are moved. Each job moves in one script (copy
every key with DUMP/RESTORE and its TTL, its scores in the queue and indexes, then delete the
old keys): atomic against old and new workers alike, and a job moved is gone from the old
layout, so a second run moves nothing. A job whose old lease is live is running under an old
worker: it is left for a later run and reported. A job whose id is already taken in the new
layout is left too (reported as a conflict): nothing is overwritten, nothing dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from config.queues import QueueName
from workers.store.keys import Keys, QueueKeys
from workers.store.scripts import LuaScript, run_batch

logger = logging.getLogger(__name__)

# How many jobs' moves go in one round trip.
BATCH = 200


@dataclass(frozen=True, slots=True)
class OldKeys:
    """The key names of the layout before workers/store/keys.py's hash tags (commit 59b556a)."""

    prefix: str

    def queue(self, queue: QueueName) -> str:
        return f"{self.prefix}:queue:{queue.value}"

    def wake(self, queue: QueueName) -> str:
        return f"{self.queue(queue)}:wake"

    def active(self, queue: QueueName) -> str:
        return f"{self.prefix}:active:{queue.value}"

    def results(self, queue: QueueName) -> str:
        return f"{self.prefix}:results:{queue.value}"

    def stats(self, queue: QueueName) -> str:
        return f"{self.prefix}:stats:{queue.value}"

    def cancel_requests(self, queue: QueueName) -> str:
        return f"{self.prefix}:cancel:{queue.value}"

    def paused(self, queue: QueueName) -> str:
        return f"{self.prefix}:paused:{queue.value}"

    def dead_index(self, queue: QueueName) -> str:
        return f"{self.prefix}:dead:{queue.value}"

    def job(self, job_id: str) -> str:
        return f"arq:job:{job_id}"

    def result(self, job_id: str) -> str:
        return f"arq:result:{job_id}"

    def tries(self, job_id: str) -> str:
        return f"arq:retry:{job_id}"

    def lease(self, job_id: str) -> str:
        return f"arq:in-progress:{job_id}"

    def dead_record(self, job_id: str) -> str:
        return f"{self.prefix}:dead-letter:{job_id}"

    def try_errors(self, job_id: str) -> str:
        return f"{self.prefix}:errors:{job_id}"

    def running(self, job_id: str) -> str:
        return f"{self.prefix}:running:{job_id}"

    def recoveries(self, job_id: str) -> str:
        return f"{self.prefix}:recoveries:{job_id}"

    def progress(self, job_id: str) -> str:
        return f"{self.prefix}:progress:{job_id}"

    def cron_ticks(self) -> str:
        """SCAN pattern of the cron tick markers, `<prefix>:cron:<task>:<tick_ms>`."""
        return f"{self.prefix}:cron:*"

    def markers(self, queue: QueueName) -> list[str]:
        """The keys whose existence says the queue still has something in the old layout."""
        return [
            self.queue(queue),
            self.results(queue),
            self.dead_index(queue),
            self.stats(queue),
            self.paused(queue),
        ]


# The four sorted sets a job's id is indexed in, in both layouts, in KEYS order.
_INDEXES = ("queue", "results", "dead_index", "cancel_requests")
# The job's own keys, in both layouts, in KEYS order.
_PER_JOB = (
    "job",
    "result",
    "tries",
    "dead_record",
    "try_errors",
    "running",
    "recoveries",
    "progress",
)

# KEYS: the old lease, the old active set, then the old indexes and the new (_INDEXES each),
# then the old per-job keys and the new (_PER_JOB each). ARGV: job id, '1' for a dry run.
# Returns {what, recovered}: what is 'running' (old lease live: left), 'conflict' (the id is
# taken in the new layout: left), 'ready', 'delayed', 'completed', 'dead' or 'stale' (only an
# index entry whose key expired; dropped); recovered is 1 for a job whose old run's worker died
# (its lease lapsed): the new worker that claims it sees the running marker and recovers it.
MOVE_JOB = LuaScript.file("migrate_move_job", INDEXES=len(_INDEXES), PER_JOB=len(_PER_JOB))

# KEYS: old paused, new paused. Copies the pause flag (with its TTL) before any job moves, so
# that a paused queue stays paused in the new layout throughout.
CARRY_PAUSE = LuaScript.file("migrate_carry_pause")

# KEYS: old stats, new stats, old paused, old queue, old wake, new wake. ARGV: '1' if ready
# jobs were moved (leave the new queue's idle workers a wake token). Adds the old counters to
# the new and deletes them; drops the old pause flag and wake list once the old queue is empty
# (while jobs are left there, old workers must stay paused). Returns the counters added.
FINISH_QUEUE = LuaScript.file("migrate_finish_queue")

# What MOVE_JOB reports, in the order the summary shows them.
MOVED = ("ready", "delayed", "completed", "dead")
LEFT = ("running", "conflict")


@dataclass
class QueueMigration:
    """What one queue's migration moved (or, in a dry run, would move) and left."""

    queue: QueueName
    ready: int = 0
    delayed: int = 0
    completed: int = 0
    dead: int = 0
    recovered: int = 0  # of ready/delayed: jobs whose old run's worker died mid-run
    stale: int = 0  # index entries whose key had expired: dropped
    running: list[str] = field(default_factory=list)  # old lease live: left for a later run
    conflict: list[str] = field(default_factory=list)  # id taken in the new layout: left
    counters: dict[str, int] = field(default_factory=dict)  # added to the new stats
    paused: bool = False  # the pause flag was carried over

    @property
    def moved(self) -> int:
        return self.ready + self.delayed + self.completed + self.dead

    @property
    def left(self) -> int:
        return len(self.running) + len(self.conflict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue.value,
            "moved": self.moved,
            "ready": self.ready,
            "delayed": self.delayed,
            "completed": self.completed,
            "dead": self.dead,
            "recovered": self.recovered,
            "stale": self.stale,
            "running": self.running,
            "conflict": self.conflict,
            "counters": self.counters,
            "paused": self.paused,
        }


def _job_call(
    old: OldKeys, new: QueueKeys, job_id: str, dry_run: bool
) -> tuple[list[str], list[str]]:
    queue = new.queue_name
    old_indexes = [getattr(old, name)(queue) for name in _INDEXES]
    new_indexes = [getattr(new, name) for name in _INDEXES]
    old_keys = [getattr(old, name)(job_id) for name in _PER_JOB]
    new_keys = [getattr(new, name)(job_id) for name in _PER_JOB]
    keys = [old.lease(job_id), old.active(queue), *old_indexes, *new_indexes, *old_keys, *new_keys]
    return keys, [job_id, "1" if dry_run else "0"]


async def _old_ids(redis: Redis, old: OldKeys, queue: QueueName) -> list[str]:
    """Every id the queue's old sets name, once each, in the order first seen."""
    ids: dict[str, None] = {}
    sets = [old.queue(queue), old.active(queue), old.results(queue), old.dead_index(queue)]
    for key in [*sets, old.cancel_requests(queue)]:
        async for member, _ in redis.zscan_iter(key, count=500):
            ids[member.decode() if isinstance(member, bytes) else member] = None
    return list(ids)


async def migrate_queue(
    redis: Redis, prefix: str, queue: QueueName, *, dry_run: bool = False
) -> QueueMigration:
    """Move one queue's jobs, counters and pause flag; see the module's docstring."""
    old, new = OldKeys(prefix), Keys(prefix).of(queue)
    report = QueueMigration(queue)
    if dry_run:
        report.paused = bool(await redis.exists(old.paused(queue)))
    else:
        report.paused = bool(await CARRY_PAUSE(redis, [old.paused(queue), new.paused], []))
    ids = await _old_ids(redis, old, queue)
    for start in range(0, len(ids), BATCH):
        chunk = ids[start : start + BATCH]
        calls = [_job_call(old, new, job_id, dry_run) for job_id in chunk]
        for job_id, (what, recovered) in zip(
            chunk, await run_batch(redis, MOVE_JOB, calls), strict=True
        ):
            kind = what.decode() if isinstance(what, bytes) else what
            if kind in LEFT:
                getattr(report, kind).append(job_id)
            else:
                setattr(report, kind, getattr(report, kind) + 1)
            report.recovered += int(recovered)
    if dry_run:
        raw = await redis.hgetall(old.stats(queue))  # type: ignore[misc]
        report.counters = {k.decode(): int(v) for k, v in raw.items()}
        return report
    keys = [
        old.stats(queue),
        new.stats,
        old.paused(queue),
        old.queue(queue),
        old.wake(queue),
        new.wake,
    ]
    counters = await FINISH_QUEUE(redis, keys, ["1" if report.ready else "0"])
    report.counters = {
        counters[i].decode(): int(counters[i + 1]) for i in range(0, len(counters), 2)
    }
    return report


async def migrate_keys(
    redis: Redis, prefix: str, queues: Iterable[QueueName] = QueueName, *, dry_run: bool = False
) -> list[QueueMigration]:
    """Move every queue's jobs of `prefix` to the new layout, queue by queue."""
    return [await migrate_queue(redis, prefix, q, dry_run=dry_run) for q in queues]


async def old_layout_queues(
    redis: Redis, prefix: str, queues: Sequence[QueueName]
) -> list[QueueName]:
    """The served queues that still have keys in the old layout: one EXISTS per queue, in one
    round trip (a worker start-up check, so no SCAN)."""
    old = OldKeys(prefix)
    async with redis.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.exists(*old.markers(queue))
        counts = await pipe.execute()
    return [queue for queue, count in zip(queues, counts, strict=True) if count]


async def check_old_layout(redis: Redis, prefix: str, queues: Iterable[QueueName]) -> bool:
    """A worker's start-up check: warn, naming the command, if its queues have old-layout
    keys. False when Redis could not be asked (an outage: ask again later)."""
    try:
        stranded = await old_layout_queues(redis, prefix, list(queues))
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        logger.debug("old key layout not checked yet: %s", exc)
        return False
    except RedisError as exc:  # an answer, not an outage: asking again would not help
        logger.warning("old key layout not checked: %s", exc)
        return True
    if stranded:
        logger.warning(old_layout_warning(prefix, stranded))
    return True


def old_layout_warning(prefix: str, queues: Sequence[QueueName]) -> str:
    names = ", ".join(q.value for q in queues)
    return (
        f"queues {names} still have jobs, results, dead letters or counters in the key layout "
        f"before hash tags (e.g. {OldKeys(prefix).queue(queues[0])}), which this worker never "
        "reads: run `postroom migrate-keys` to move them"
    )


@dataclass(frozen=True, slots=True)
class MarkerRule:
    """Old keys outside any queue's sets (cron ticks, checkpoints), found by a SCAN (the
    operator command's, never a worker's), and each one's new name (None: not known)."""

    kind: str
    pattern: str
    rename: Callable[[str], str | None]


# Rules of the modules that own such keys (tasks/batch_sending.py): prefix -> rule.
MARKER_RULES: list[Callable[[str], MarkerRule]] = []


def marker_rule(factory: Callable[[str], MarkerRule]) -> Callable[[str], MarkerRule]:
    """Register a module's rule for its old-layout markers, at import."""
    MARKER_RULES.append(factory)
    return factory


def cron_rule(prefix: str, queue_of: Mapping[str, QueueName]) -> MarkerRule:
    """`<prefix>:cron:<task>:<tick_ms>` moves into its task's queue (a tick's "once" marker:
    without it a tick that already ran could run again after the upgrade); `queue_of` is
    each registered task's queue, by name."""
    start = f"{prefix}:cron:"

    def rename(old: str) -> str | None:
        name, _, tick = old.removeprefix(start).rpartition(":")
        queue = queue_of.get(name)
        if queue is None or not tick.isdigit():
            return None
        return Keys(prefix).of(queue).cron_tick(name, int(tick))

    return MarkerRule("cron tick", f"{start}*", rename)


# KEYS: old marker, new (strings). ARGV: '1' for a dry run. Returns 'moved' (when the new key
# holds the same value already, the old one is just dropped), 'conflict' (another value: both
# are left) or 'gone' (expired meanwhile).
MOVE_MARKER = LuaScript.file("migrate_move_marker")


@dataclass
class MarkerMigration:
    """What one kind of marker's migration moved and left."""

    kind: str
    moved: int = 0
    unknown: list[str] = field(default_factory=list)  # no new name (e.g. its task is gone)
    conflict: list[str] = field(default_factory=list)  # the new key holds another value

    @property
    def left(self) -> int:
        return len(self.unknown) + len(self.conflict)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "moved": self.moved, "unknown": self.unknown,
                "conflict": self.conflict}  # fmt: skip


async def migrate_markers(
    redis: Redis, rules: Iterable[MarkerRule], *, dry_run: bool = False
) -> list[MarkerMigration]:
    """Move each rule's old keys to their new names, one script call per key."""
    reports = []
    for rule in rules:
        report = MarkerMigration(rule.kind)
        async for raw in redis.scan_iter(match=rule.pattern, count=1000):
            old = raw.decode() if isinstance(raw, bytes) else raw
            new = rule.rename(old)
            if new is None:
                report.unknown.append(old)
                continue
            answer = await MOVE_MARKER(redis, [old, new], ["1" if dry_run else "0"])
            what = answer.decode() if isinstance(answer, bytes) else answer
            if what == "moved":
                report.moved += 1
            elif what == "conflict":
                report.conflict.append(old)
        reports.append(report)
    return reports


def marker_rules(prefix: str, queue_of: Mapping[str, QueueName]) -> list[MarkerRule]:
    """The cron rule and every registered module's rule, for `prefix`."""
    return [cron_rule(prefix, queue_of), *(factory(prefix) for factory in MARKER_RULES)]
