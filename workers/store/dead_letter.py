"""The dead-letter store: every job that cannot run ends here with its reason, never dropped."""

from __future__ import annotations

import builtins
import time
from collections.abc import Sequence
from typing import Any, Literal

import orjson
from pydantic import BaseModel, Field, ValidationError

from config.queues import QueueName
from workers.error_text import message, traceback_text
from workers.store.enqueue import NewJob, enqueue_call
from workers.store.indexed_delete import delete_indexed
from workers.store.job_record import malformed_payload
from workers.store.keys import Keys, QueueKeys
from workers.store.priority import Priority
from workers.store.scripts import LuaScript, RedisClient
from workers.store.sealing import PayloadSealer
from workers.store.serialization import dumps, loads

# "malformed": its job record could not be read (not JSON, or a field of the wrong type or
# range); "undeliverable": a well-formed record naming no task of its queue; "expired": its
# record had expired (a job queued past its expiry) when a worker claimed it;
# "rate-limited": its provider kept answering "too many requests" (more than
# POSTROOM_MAX_RATE_LIMITED deferrals); "unsealable": its sealed payload did not open
# (tampered, copied from another job or queue, or sealed under a key the worker does not
# hold; see sealing.py).
Reason = Literal[
    "max-tries",
    "permanent",
    "undeliverable",
    "malformed",
    "stalled",
    "expired",
    "rate-limited",
    "unsealable",
]

# Store a letter: KEYS record, index, the job's try errors; ARGV the letter, when it died, id.
_ADD = LuaScript.file("add_dead_letter")

# Queue a dead letter's job again and drop the letter, unless a worker still holds the dying
# run (its lease is live in the active set: finishing, it would delete the new job) or the
# letter is gone (retried meanwhile). The failed result and try counter would block the id and
# spend the new budget.
# KEYS: active set, dead record, dead index, tries, recoveries, running, then ENQUEUE's job, result,
# queue, wake. ARGV: ENQUEUE's payload, TTL, score, id. Returns 1 if queued, else 0.
_RETRY = LuaScript.file("clock", "enqueue_function", "retry_dead_letter")

# A traceback longer than this is cut from the middle of the text; the ends carry the story.
TRACEBACK_LIMIT = 8_000


class TryError(BaseModel):
    """What one failed try raised."""

    attempt: int
    type: str
    message: str
    traceback: str
    at: float


class DeadLetter(BaseModel):
    """A job that will not run again unless an operator retries it."""

    job_id: str
    task: str | None
    queue: QueueName
    payload: Any
    reason: Reason
    tries: int
    errors: list[TryError]
    enqueued_at: float | None
    failed_at: float
    priority: Priority = Priority.NORMAL
    # The queue's partition that holds it (set when read; 0 for an unpartitioned queue).
    partition: int = Field(default=0, exclude=True)
    # Set when the stored letter itself cannot be read: why. The fields it would have
    # filled are then empty (reason "malformed", no task, no errors) and it cannot be retried.
    malformed: str | None = None


def problem_of(exc: Exception) -> str:
    """A one-line account of why a stored record did not decode or validate."""
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the record"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        return f"{where}: {first['msg']}{more}"
    return f"not JSON ({exc})"


def read_dead_letter(
    job_id: str, raw: bytes, queue: QueueName, failed_at: float = 0.0
) -> DeadLetter:
    """The stored letter, or, when it cannot be read, one saying so (kept as base64)."""
    try:
        return DeadLetter.model_validate(loads(raw))
    except (orjson.JSONDecodeError, ValidationError) as exc:
        return DeadLetter(
            job_id=job_id,
            task=None,
            queue=queue,
            payload=malformed_payload(raw),
            reason="malformed",
            tries=0,
            errors=[],
            enqueued_at=None,
            failed_at=failed_at,
            malformed=f"malformed dead letter record: {problem_of(exc)}",
        )


def read_try_error(raw: bytes, attempt: int) -> TryError:
    """A kept try's error, or one saying it could not be read: never the reason a dead
    letter is not written."""
    try:
        return TryError.model_validate(loads(raw))
    except (orjson.JSONDecodeError, ValidationError) as exc:
        return TryError(
            attempt=attempt,
            type="MalformedRecord",
            message=f"malformed try error record: {problem_of(exc)}",
            traceback="",
            at=time.time(),
        )


def retryable(letter: DeadLetter) -> bool:
    """Whether the letter names a task and its arguments, which a retry queues again (a
    malformed record's letter keeps what could be read of it, which no task takes)."""
    return (
        letter.reason != "malformed"
        and letter.task is not None
        and isinstance(letter.payload, dict)
    )


def why(letter: DeadLetter) -> str:
    """What is wrong with a letter that cannot be retried (see `retryable`)."""
    if letter.malformed:
        return letter.malformed
    if letter.reason == "malformed":
        last = letter.errors[-1].message if letter.errors else "its job record is malformed"
        return f"{last}; there is no task and payload to queue again"
    return "it names no task and payload to queue again"


def try_error(attempt: int, exc: BaseException) -> TryError:
    text = traceback_text(exc)
    if len(text) > TRACEBACK_LIMIT:
        half = TRACEBACK_LIMIT // 2
        text = f"{text[:half]}\n... cut ...\n{text[-half:]}"
    return TryError(
        attempt=attempt,
        type=type(exc).__name__,
        message=message(exc),
        traceback=text,
        at=time.time(),
    )


def sealed_error(sealer: PayloadSealer, error: TryError, job_id: str, queue: QueueName) -> TryError:
    """A try's error with its message and traceback (which quote payloads) sealed."""
    if not sealer.seals:
        return error
    return error.model_copy(
        update={
            "message": sealer.seal_text(error.message, job_id, queue, "error"),
            "traceback": sealer.seal_text(error.traceback, job_id, queue, "error"),
        }
    )


def opened_error(sealer: PayloadSealer, error: TryError, job_id: str, queue: QueueName) -> TryError:
    """A kept try's error as the reading tools show it: opened, or noted as sealed."""
    return error.model_copy(
        update={
            "message": sealer.shown(error.message, job_id, queue, "error"),
            "traceback": sealer.shown(error.traceback, job_id, queue, "error"),
        }
    )


def opened_letter(sealer: PayloadSealer, letter: DeadLetter) -> DeadLetter:
    """A dead letter as the reading tools show it (the store keeps it sealed: a retry
    queues the sealed payload again, bound to the same job and queue)."""
    job_id, queue = letter.job_id, letter.queue
    opened = letter.model_copy(
        update={
            "payload": sealer.shown(letter.payload, job_id, queue, "kwargs"),
            "errors": [opened_error(sealer, e, job_id, queue) for e in letter.errors],
        }
    )
    opened.partition = letter.partition
    return opened


class DeadLetterStore:
    """Dead letters per queue: a sorted index (newest last) and one JSON record per job."""

    def __init__(
        self,
        redis: RedisClient,
        keys: Keys,
        retention: float,
        sealer: PayloadSealer | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.retention = retention
        # Opens what `get` and `list` hand out; the records stay sealed in Redis.
        self.sealer = sealer

    def _shown(self, letter: DeadLetter) -> DeadLetter:
        return letter if self.sealer is None else opened_letter(self.sealer, letter)

    async def add(
        self,
        *,
        job_id: str,
        task: str | None,
        queue: QueueName,
        payload: Any,
        reason: Reason,
        tries: int,
        last_error: TryError,
        enqueued_at: float | None,
        priority: Priority = Priority.NORMAL,
    ) -> DeadLetter:
        """Store a dead letter with every try's error kept so far, in one script call. (A
        worker writes its runs' letters with their ends, in worker_scripts.FINISH.)"""
        keys = self.keys.route(queue, job_id)
        earlier = await self.redis.lrange(keys.try_errors(job_id), 0, -1)  # type: ignore[misc]
        errors = [read_try_error(raw, i + 1) for i, raw in enumerate(earlier)] + [last_error]
        letter = DeadLetter(
            job_id=job_id,
            task=task,
            queue=queue,
            payload=payload,
            reason=reason,
            tries=tries,
            errors=errors,
            enqueued_at=enqueued_at,
            failed_at=time.time(),
            priority=priority,
        )
        await _ADD(
            self.redis,
            [keys.dead_record(job_id), keys.dead_index, keys.try_errors(job_id)],
            [dumps(letter), repr(letter.failed_at), job_id],
        )
        return letter

    async def count(self, queue: QueueName) -> int:
        async with self.redis.pipeline(transaction=False) as pipe:
            for keys in self.keys.partitions_of(queue):
                pipe.zcard(keys.dead_index)
            return sum(await pipe.execute())

    async def list(
        self, queue: QueueName, *, offset: int = 0, limit: int = 50
    ) -> builtins.list[DeadLetter]:
        """A page of a queue's dead letters, newest first (a malformed one says so); a
        partitioned queue's merged from the same page of each partition."""
        parts = self.keys.partitions_of(queue)
        async with self.redis.pipeline(transaction=False) as pipe:
            for keys in parts:
                pipe.zrevrange(keys.dead_index, 0, offset + limit - 1, withscores=True)
            pages = await pipe.execute()
        entries = sorted(
            ((at, i.decode(), part) for part, page in enumerate(pages) for i, at in page),
            reverse=True,
        )[offset : offset + limit]
        if not entries:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for _, job_id, part in entries:
                pipe.get(parts[part].dead_record(job_id))
            raws = await pipe.execute()
        letters = []
        for (at, job_id, part), raw in zip(entries, raws, strict=True):
            if raw is not None:
                letter = read_dead_letter(job_id, raw, queue, at)
                letter.partition = part
                letters.append(self._shown(letter))
        return letters

    async def get(self, job_id: str, queue: QueueName | None = None) -> DeadLetter | None:
        """The job's dead letter in `queue`, or in whichever queue holds one (job ids are
        unique per queue: the first queue in `QueueName` order wins); a malformed one says so."""
        letter = await self._stored(job_id, queue)
        return None if letter is None else self._shown(letter)

    async def _stored(self, job_id: str, queue: QueueName | None) -> DeadLetter | None:
        """The letter as stored: a retry queues its payload again still sealed."""
        parts = self.keys.every_partition(QueueName if queue is None else [queue])
        async with self.redis.pipeline(transaction=False) as pipe:
            for keys in parts:
                pipe.get(keys.dead_record(job_id))
                pipe.zscore(keys.dead_index, job_id)
            replies = await pipe.execute()
        for at, keys in enumerate(parts):
            raw, failed_at = replies[2 * at : 2 * at + 2]
            if raw is None:
                continue
            letter = read_dead_letter(job_id, raw, keys.queue_name, failed_at or 0.0)
            letter.partition = keys.partition
            if letter.malformed is None or failed_at is not None:
                return letter  # a malformed record no index lists is no queue's letter
        return None

    async def remove(self, job_id: str, queue: QueueName | None = None) -> bool:
        letter = await self._stored(job_id, queue)
        if letter is None:
            return False
        keys = self.keys.of(letter.queue, letter.partition)
        await delete_indexed(self.redis, keys.dead_index, [job_id], [keys.dead_record(job_id)])
        return True

    async def purge(self, queue: QueueName) -> int:
        """Delete all of a queue's dead letters; returns how many there were."""
        deleted = 0
        for keys in self.keys.partitions_of(queue):
            ids = await self.redis.zrange(keys.dead_index, 0, -1)
            deleted += await self._delete(keys, [i.decode() for i in ids])
        return deleted

    async def trim(
        self, queue: QueueName, *, older_than: float | None = None, dry_run: bool = False
    ) -> int:
        """Delete (or with `dry_run`, count) dead letters older than the retention (or
        `older_than` seconds)."""
        cutoff = time.time() - (self.retention if older_than is None else older_than)
        found = 0
        for keys in self.keys.partitions_of(queue):
            if dry_run:
                found += int(await self.redis.zcount(keys.dead_index, "-inf", cutoff))
                continue
            ids = await self.redis.zrangebyscore(keys.dead_index, "-inf", cutoff)
            found += await self._delete(keys, [i.decode() for i in ids])
        return found

    async def retry_all(self, queue: QueueName) -> int:
        """Retry every dead letter of `queue`; returns how many were queued again."""
        retried = 0
        for keys in self.keys.partitions_of(queue):
            for i in await self.redis.zrange(keys.dead_index, 0, -1):
                retried += await self.retry(i.decode(), queue)
        return retried

    async def retry(self, job_id: str, queue: QueueName | None = None) -> bool:
        """Queue the job again under the same id with a fresh try budget; drop the letter.

        False when there is no such letter, or while the dying run is still being finished
        (its worker would delete the new job): try again a moment later.
        """
        letter = await self._stored(job_id, queue)
        if letter is None or letter.task is None or not retryable(letter):
            return False
        keys = self.keys.of(letter.queue, letter.partition)
        now = int(time.time() * 1000)
        job = NewJob(
            job_id,
            keys,
            letter.task,
            letter.payload,
            due_ms=now,
            enqueue_ms=now,
            priority=letter.priority,
        )
        job_keys, job_args = enqueue_call(job)
        lease_keys = [keys.active, keys.dead_record(job_id), keys.dead_index]
        run_keys = [keys.tries(job_id), keys.recoveries(job_id), keys.running(job_id)]
        return bool(await _RETRY(self.redis, lease_keys + run_keys + job_keys, job_args))

    async def _delete(self, keys: QueueKeys, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        await delete_indexed(self.redis, keys.dead_index, ids, [keys.dead_record(i) for i in ids])
        return len(ids)
