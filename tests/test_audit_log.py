"""The audit trail's stream on the suite's real Redis: records read back newest first,
filtered and paged; trimmed to the newest POSTROOM_AUDIT_MAX_RECORDS and to
POSTROOM_AUDIT_RETENTION at each write; an entry another writer left unreadable is shown as
malformed, not a failure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from redis.asyncio import Redis

from config.settings import PostroomSettings, load_settings
from workers.client import PostroomClient
from workers.store.audit_log import AuditFilter, AuditLog, AuditRecord, audit_log
from workers.store.keys import Keys


def _record(n: int, **fields: object) -> AuditRecord:
    values: dict[str, object] = {
        "actor": "alice", "via": "api", "action": "queue.pause", "queue": "message-delivery",
        "outcome": "ok", "count": n,
    }  # fmt: skip
    values.update(fields)
    return AuditRecord.model_validate(values)


def _log(redis: Redis, settings: PostroomSettings, **limits: object) -> AuditLog:
    return audit_log(redis, load_settings(**{**settings.model_dump(), **limits}))


async def test_audit_records_read_back_newest_first_with_their_id_and_time(
    settings: PostroomSettings, client: PostroomClient
) -> None:
    redis = client.redis
    log = _log(redis, settings)
    before = datetime.now(UTC) - timedelta(seconds=1)
    ids = [await log.append(_record(n)) for n in range(3)]
    page = await log.query()
    assert [r.id for r in page.items] == ids[::-1]
    assert [r.count for r in page.items] == [2, 1, 0]
    assert page.next_cursor is None
    first = page.items[-1]
    assert first.model_dump(exclude={"id", "at"}) == _record(0).model_dump(exclude={"id", "at"})
    assert first.at is not None and before <= first.at <= datetime.now(UTC) + timedelta(seconds=1)


async def test_audit_query_filters_and_pages_with_a_cursor(
    settings: PostroomSettings, client: PostroomClient
) -> None:
    redis = client.redis
    log = _log(redis, settings)
    for n in range(7):
        await log.append(_record(n, actor="alice" if n % 2 else "bob"))
    await log.append(_record(7, action="dead-letter.purge", outcome="error", reason="boom"))
    first = await log.query(AuditFilter(actor="bob"), limit=2)
    assert [r.count for r in first.items] == [6, 4] and first.next_cursor == first.items[-1].id
    second = await log.query(AuditFilter(actor="bob"), limit=2, cursor=first.next_cursor)
    assert [r.count for r in second.items] == [2, 0]
    third = await log.query(AuditFilter(actor="bob"), limit=2, cursor=second.next_cursor)
    assert third.items == [] and third.next_cursor is None
    errors = await log.query(AuditFilter(outcome="error"))
    assert [(r.action, r.reason) for r in errors.items] == [("dead-letter.purge", "boom")]
    assert (await log.query(AuditFilter(action="queue.pause", actor="alice"))).items[0].count == 5
    assert (await log.query(AuditFilter(queue="message-cleanup"))).items == []


async def test_audit_query_since_and_until_are_ranges_of_time(
    settings: PostroomSettings, client: PostroomClient
) -> None:
    redis = client.redis
    log = _log(redis, settings)
    key = Keys(settings.key_prefix).audit_log()
    # Entries at known times, as the append script would write them.
    for ms, n in ((1_700_000_000_000, 0), (1_700_000_060_000, 1), (1_700_000_120_000, 2)):
        await redis.xadd(key, {"record": _record(n).stored()}, id=f"{ms}-0")
    at = datetime.fromtimestamp(1_700_000_060, UTC)
    assert [r.count for r in (await log.query(since=at)).items] == [2, 1]
    assert [r.count for r in (await log.query(until=at)).items] == [1, 0]
    assert [r.count for r in (await log.query(since=at, until=at)).items] == [1]
    assert (await log.query(since=at + timedelta(days=1))).items == []


async def test_audit_trail_keeps_only_the_newest_max_records(
    settings: PostroomSettings, client: PostroomClient
) -> None:
    redis = client.redis
    log = _log(redis, settings, audit_max_records=3)
    for n in range(5):
        await log.append(_record(n))
    assert await log.count() == 3
    assert [r.count for r in (await log.query()).items] == [4, 3, 2]


async def test_audit_records_older_than_the_retention_are_trimmed_at_the_next_write(
    settings: PostroomSettings, client: PostroomClient
) -> None:
    redis = client.redis
    log = _log(redis, settings, audit_retention=3600)
    key = Keys(settings.key_prefix).audit_log()
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    await redis.xadd(key, {"record": _record(0).stored()}, id=f"{now_ms - 7_200_000}-0")
    await redis.xadd(key, {"record": _record(1).stored()}, id=f"{now_ms - 60_000}-0")
    await log.append(_record(2))
    assert [r.count for r in (await log.query()).items] == [2, 1]


async def test_an_unreadable_audit_entry_is_shown_as_malformed(
    settings: PostroomSettings, client: PostroomClient
) -> None:
    redis = client.redis
    log = _log(redis, settings)
    key = Keys(settings.key_prefix).audit_log()
    await redis.xadd(key, {"record": b"{not json"})
    await redis.xadd(key, {"other": b"1"})
    await log.append(_record(1))
    items = (await log.query()).items
    assert [r.action for r in items] == ["queue.pause", "malformed", "malformed"]
    assert all(r.outcome == "error" and "unreadable audit record" in (r.reason or "")
               for r in items[1:])  # fmt: skip
