"""`postroom reseal`: what Redis keeps sealed again under the active key, after a rotation.

Per partition of a queue (every partition it ever had, keys.QueueKeys.partitions_used), the
queued jobs' records, try errors and progress, the kept results and the dead letters are
read, opened and sealed under the active key (plain ones too, when sealing is on), and each
is written back by a one-key compare-and-set script (lua/swap_value.lua, swap_list.lua): a
record a running worker changed meanwhile (finished, retried) is left, since what the worker
wrote is sealed under the active key already. One key per call, so it runs on a Cluster.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from config.queues import QueueName
from workers.store.keys import Keys, QueueKeys
from workers.store.scripts import LuaScript, RedisClient, run_batch
from workers.store.sealing import PayloadSealer, SealError, is_sealed
from workers.store.serialization import dumps, loads

# KEYS: a string key. ARGV: the value read, its replacement. Returns 1 if replaced.
SWAP = LuaScript.file("swap_value")
# KEYS: a list key. ARGV: n, the n items read, their n replacements. Returns 1 if replaced.
SWAP_LIST = LuaScript.file("swap_list")

CHUNK = 200  # jobs read per round trip


@dataclass
class QueueReseal:
    """What a run over one queue did (or, dry, would do)."""

    queue: QueueName
    resealed: int = 0  # records written under the active key
    current: int = 0  # jobs whose record is already under it (or plain, with sealing off)
    changed: int = 0  # records a worker changed meanwhile: left as the worker wrote them
    unopenable: list[str] = field(default_factory=list)  # ids whose seal did not open

    def as_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue.value,
            "resealed": self.resealed,
            "current": self.current,
            "changed": self.changed,
            "unopenable": self.unopenable,
        }


Change = Callable[[Any], Any]


class _Resealer:
    def __init__(self, sealer: PayloadSealer, qk: QueueKeys) -> None:
        self.sealer = sealer
        self.queue = qk.queue_name

    def kwargs_of(self, job_id: str) -> Change:
        def change(record: Any) -> Any:
            if isinstance(record, dict) and "k" in record:
                record["k"] = self.sealer.reseal(record["k"], job_id, self.queue, "kwargs")
            return record

        return change

    def result_of(self, job_id: str) -> Change:
        def change(record: Any) -> Any:
            if isinstance(record, dict):
                self.kwargs_of(job_id)(record)
                if is_sealed(record.get("r")):  # a plain result (a cancel's) stays plain
                    record["r"] = self.sealer.reseal(record["r"], job_id, self.queue, "result")
            return record

        return change

    def error_of(self, job_id: str) -> Change:
        def change(error: Any) -> Any:
            if isinstance(error, dict):
                for name in ("message", "traceback"):
                    if isinstance(error.get(name), str):
                        error[name] = self.sealer.reseal(
                            error[name], job_id, self.queue, "error", text=True
                        )
            return error

        return change

    def letter_of(self, job_id: str) -> Change:
        def change(letter: Any) -> Any:
            if isinstance(letter, dict):
                letter["payload"] = self.sealer.reseal(
                    letter.get("payload"), job_id, self.queue, "kwargs"
                )
                errors = letter.get("errors")
                if isinstance(errors, list):
                    letter["errors"] = [self.error_of(job_id)(e) for e in errors]
            return letter

        return change

    def progress_of(self, job_id: str) -> Change:
        return lambda record: self.sealer.reseal(record, job_id, self.queue, "progress")


Call = tuple[list[str], list[Any]]


def _swap(key: str, raw: bytes | None, change: Change) -> Call | None:
    """SWAP's call re-sealing `key`, None when there is nothing to change."""
    if raw is None:
        return None
    new = _rewritten(raw, change)
    return None if new is None else ([key], [raw, new])


def _list_swap(key: str, items: list[bytes], change: Change) -> Call | None:
    """SWAP_LIST's call re-sealing the list `key` (try errors), None for nothing to do."""
    new_items = [_rewritten(item, change) for item in items]
    if all(item is None for item in new_items):
        return None
    after = [old if new is None else new for old, new in zip(items, new_items, strict=True)]
    return [key], [len(items), *items, *after]


def _rewritten(raw: bytes, change: Change) -> bytes | None:
    """The record re-sealed, None when nothing changes (or it is not JSON: left as it is)."""
    try:
        before = loads(raw)
    except orjson.JSONDecodeError:
        return None
    after = dumps(change(before))
    return None if after == dumps(loads(raw)) else after


async def reseal_queue(
    redis: RedisClient,
    keys: Keys,
    queue: QueueName,
    sealer: PayloadSealer,
    *,
    dry_run: bool = False,
) -> QueueReseal:
    """Re-seal `queue`'s queued jobs, results and dead letters under the active key."""
    report = QueueReseal(queue)
    used = await redis.get(keys.of(queue).partitions_used)
    for qk in keys.partitions_of(queue, int(used or 0)):
        resealer = _Resealer(sealer, qk)
        for index, what in ((qk.queue, "job"), (qk.results, "result"), (qk.dead_index, "dead")):
            ids = [i.decode() for i in await redis.zrange(index, 0, -1)]
            for start in range(0, len(ids), CHUNK):
                chunk = ids[start : start + CHUNK]
                await _reseal_chunk(redis, qk, resealer, what, chunk, report, dry_run)
    return report


async def _reseal_chunk(
    redis: RedisClient,
    qk: QueueKeys,
    resealer: _Resealer,
    what: str,
    ids: Sequence[str],
    report: QueueReseal,
    dry_run: bool,
) -> None:
    record_key = {"job": qk.job, "result": qk.result, "dead": qk.dead_record}[what]
    async with redis.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.get(record_key(job_id))
            pipe.get(qk.progress(job_id))
            pipe.lrange(qk.try_errors(job_id), 0, -1)
        replies = await pipe.execute()
    swaps: list[Call] = []
    lists: list[Call] = []
    changes = {"job": resealer.kwargs_of, "result": resealer.result_of, "dead": resealer.letter_of}
    for n, job_id in enumerate(ids):
        record, progress, errors = replies[3 * n : 3 * n + 3]
        try:
            planned = [
                _swap(record_key(job_id), record, changes[what](job_id)),
                _swap(qk.progress(job_id), progress, resealer.progress_of(job_id)),
            ]
            items = _list_swap(qk.try_errors(job_id), errors, resealer.error_of(job_id))
        except SealError:
            report.unopenable.append(job_id)
            continue
        for call in planned:
            if call is not None:
                swaps.append(call)
        if items is not None:
            lists.append(items)
        if record is not None and planned[0] is None:
            report.current += 1
    if dry_run:
        report.resealed += len(swaps) + len(lists)
        return
    for script, calls in ((SWAP, swaps), (SWAP_LIST, lists)):
        if calls:
            for answer in await run_batch(redis, script, calls):
                if int(answer):
                    report.resealed += 1
                else:
                    report.changed += 1
