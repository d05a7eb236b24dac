"""The audit trail: who did what to the queues, when, from where, and how it ended.

Kept in Redis, in one append-only stream (`<prefix>:audit`, keys.py), not in the message
store: the admin API, the dashboard and the CLI live in workers/, which may not import the
tasks' store (tasks/), and every process already shares this Redis (its AUTH, TLS, Sentinel or
Cluster: one key is one slot). Each write trims the stream in the same script, to the newest
`POSTROOM_AUDIT_MAX_RECORDS` and to `POSTROOM_AUDIT_RETENTION`, so a flood of refused logins
cannot grow it without bound. An entry's stream id is Redis's clock, so records of every
process are in one order and `since`/`until` are ranges of ids.

Nothing here rewrites or deletes a record: the only removal is the trim.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, Field, ValidationError
from redis.exceptions import RedisError

from config.settings import PostroomSettings
from workers.store.keys import Keys
from workers.store.scripts import LuaScript, RedisClient

logger = logging.getLogger(__name__)

_APPEND = LuaScript.file("audit_append")

Outcome = Literal["ok", "error", "denied"]
Via = Literal["api", "dashboard", "cli", "event"]
# Entries read per XREVRANGE, and at most this many per query: a filter that matches little
# answers a short page with a cursor rather than reading the whole stream in one request.
CHUNK = 200
SCAN_BUDGET = 5_000
MAX_LIMIT = 500


class AuditRecord(BaseModel):
    """One admin action (or domain event) and its outcome."""

    id: str = Field(default="", description="its stream id (empty until written)")
    at: datetime | None = Field(default=None, description="when it was written (Redis's clock)")
    actor: str = Field(description="the token's name, the CLI's operator, or the event's actor")
    role: str | None = Field(default=None, description="the token's role (API and dashboard)")
    via: Via
    source: str | None = Field(
        default=None, description="the client's address (API) or host name (CLI)"
    )
    action: str = Field(description="e.g. dead-letter.retry, queue.pause, login.failed")
    queue: str | None = None
    job_ids: list[str] = []
    count: int | None = Field(default=None, description="how many jobs it touched")
    detail: dict[str, Any] = Field(default_factory=dict)
    outcome: Outcome
    reason: str | None = Field(default=None, description="why it failed or was refused")
    status: int | None = Field(default=None, description="the HTTP status (API and dashboard)")

    def stored(self) -> bytes:
        """What the stream keeps (id and time are the entry's own)."""
        return orjson.dumps(self.model_dump(mode="json", exclude={"id", "at"}))


class AuditPage(BaseModel):
    """Records newest first; `next_cursor` continues after the last one read (None: no
    older record is left). A page can hold fewer than `limit` records and still have a
    cursor, when a filter matched few of the records read."""

    items: list[AuditRecord]
    next_cursor: str | None


@dataclass(frozen=True)
class AuditFilter:
    """What a query keeps; every field set must match."""

    actor: str | None = None
    action: str | None = None
    queue: str | None = None
    outcome: str | None = None
    via: str | None = None

    def matches(self, record: AuditRecord) -> bool:
        wanted = {
            "actor": self.actor,
            "action": self.action,
            "queue": self.queue,
            "outcome": self.outcome,
            "via": self.via,
        }
        return all(v is None or getattr(record, k) == v for k, v in wanted.items())


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _at(entry_id: str) -> datetime:
    return datetime.fromtimestamp(int(entry_id.split("-", 1)[0]) / 1000, UTC)


def decode(entry_id: bytes | str, fields: Mapping[Any, Any]) -> AuditRecord:
    """A stream entry as a record; one another writer left unreadable is shown as such."""
    entry_id = _text(entry_id)
    raw = {_text(k): v for k, v in fields.items()}.get("record")
    try:
        data = orjson.loads(raw) if raw is not None else None
        if not isinstance(data, dict):
            raise ValueError("no JSON object in its 'record' field")
        return AuditRecord.model_validate({**data, "id": entry_id, "at": _at(entry_id)})
    except (ValueError, ValidationError) as exc:
        reason = f"unreadable audit record: {type(exc).__name__}: {str(exc)[:200]}"
        return AuditRecord(
            id=entry_id, at=_at(entry_id), actor="?", via="api", action="malformed",
            outcome="error", reason=reason,
        )  # fmt: skip


MAX_SEQ = 2**64 - 1


def _before(entry_id: str) -> str | None:
    """The greatest stream id below `entry_id` (None below 0-0): an exclusive bound that
    XREVRANGE takes on every Redis, 0-0 included."""
    ms_text, _, seq_text = entry_id.partition("-")
    ms, seq = int(ms_text), int(seq_text or 0)
    if seq > 0:
        return f"{ms}-{min(seq - 1, MAX_SEQ)}"
    return f"{ms - 1}-{MAX_SEQ}" if ms > 0 else None


def _ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(int(moment.timestamp() * 1000), 0)


class AuditLog:
    """Appends to and reads the audit stream of one deployment."""

    def __init__(
        self, redis: RedisClient, keys: Keys, *, retention: float, max_records: int
    ) -> None:
        self.redis = redis
        self.key = keys.audit_log()
        self.retention_ms = max(int(retention * 1000), 1)
        self.max_records = max_records

    async def append(self, record: AuditRecord) -> str:
        """Write `record`; returns its id. Raises what Redis raises (the caller decides)."""
        entry_id = await _APPEND(
            self.redis, [self.key], [self.max_records, self.retention_ms, record.stored()]
        )
        return _text(entry_id)

    async def query(
        self,
        where: AuditFilter = AuditFilter(),  # frozen: never mutated
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> AuditPage:
        """Records newest first, from `cursor` (exclusive) or `until` back to `since`."""
        limit = min(max(limit, 1), MAX_LIMIT)
        end: str | None = _before(cursor) if cursor else (str(_ms(until)) if until else "+")
        start = str(_ms(since)) if since else "-"
        items: list[AuditRecord] = []
        scanned = 0
        last = cursor
        while end is not None and scanned < SCAN_BUDGET:
            batch = await self.redis.xrevrange(self.key, max=end, min=start, count=CHUNK)
            for entry_id, fields in batch:
                scanned += 1
                record = decode(entry_id, fields)
                last, end = record.id, _before(record.id)
                if where.matches(record):
                    items.append(record)
                    if len(items) == limit:
                        return AuditPage(items=items, next_cursor=record.id)
            if len(batch) < CHUNK:
                break
        else:
            if end is not None:
                return AuditPage(items=items, next_cursor=last)
        return AuditPage(items=items, next_cursor=None)

    async def count(self) -> int:
        length: int = await self.redis.xlen(self.key)
        return length


def audit_log(redis: RedisClient, settings: PostroomSettings) -> AuditLog:
    """The audit log of `settings`' deployment."""
    return AuditLog(
        redis,
        Keys.of_settings(settings),
        retention=settings.audit_retention,
        max_records=settings.audit_max_records,
    )


async def record_or_log(log: AuditLog, record: AuditRecord) -> bool:
    """Write `record`; if Redis refuses, log it whole at ERROR and answer False.

    Fails open: the action it records has already happened (or failed) and its own answer
    must still reach the operator; the log line keeps the record for a log shipper.
    """
    try:
        await log.append(record)
    except (RedisError, OSError) as exc:
        log_unwritten(record, exc)
        return False
    return True


def log_unwritten(record: AuditRecord, exc: BaseException) -> None:
    """The record that could not be written, whole, at ERROR."""
    logger.error(
        "audit record not written (%s: %s): %s", type(exc).__name__, exc, record.stored().decode()
    )
