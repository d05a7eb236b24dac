"""What `scripts/bench-audit` measures (see its header): the audit trail's stream on a fresh
embedded Redis, written one record at a time as the admin API writes it."""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from config.settings import load_settings
from workers.client import PostroomClient
from workers.connection.redis_server import EmbeddedRedis
from workers.store.audit_log import AuditFilter, AuditRecord, audit_log

ACTION = AuditRecord(
    actor="alice", role="operator", via="api", source="10.1.2.3", action="dead-letter.retry",
    queue="message-delivery", job_ids=["send:8f3a9c2e-1b4d-4e6f-9a7b-2c5d8e1f0a3b"], count=1,
    outcome="ok", status=200,
)  # fmt: skip
REFUSED = AuditRecord(
    actor="anonymous", via="api", source="203.0.113.9", action="login.failed",
    detail={"method": "GET", "path": "/queues"}, outcome="denied",
    reason="invalid bearer token", status=401,
)  # fmt: skip


async def _script_usec(client: PostroomClient) -> tuple[int, int]:
    stats = (await client.redis.info("commandstats")).get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0)), int(stats.get("usec", 0))


async def measure(url: str, records: int, cap: int) -> None:
    settings = load_settings(redis_url=url, key_prefix="bench-audit", audit_max_records=cap)
    async with await PostroomClient.connect(settings) as client:
        log = audit_log(client.redis, settings)
        await log.append(ACTION)  # loads the script
        calls, usec = await _script_usec(client)
        start = time.perf_counter()
        for _ in range(records):
            await log.append(ACTION)
        wall = time.perf_counter() - start
        calls2, usec2 = await _script_usec(client)
        held = await log.count()
        size = await client.redis.memory_usage(log.key, samples=0) or 0
        cpu = (usec2 - usec) / (calls2 - calls)
        print(f"append: {cpu:.1f} us Redis CPU, {wall / records * 1e6:.0f} us with its round "
              f"trip; {size / held:.0f} bytes/record")  # fmt: skip
        start = time.perf_counter()
        flood = cap + cap // 10
        for _ in range(flood):
            await log.append(REFUSED)
        wall = time.perf_counter() - start
        size = await client.redis.memory_usage(log.key, samples=0) or 0
        print(f"after {flood:,} refused logins: {await log.count():,} records held (cap {cap:,}), "
              f"{size / 2**20:.1f} MiB; {flood / wall:,.0f} appends/s at the cap")  # fmt: skip
        start = time.perf_counter()
        await log.query(limit=50)
        newest = time.perf_counter() - start
        start = time.perf_counter()
        page = await log.query(AuditFilter(actor="alice"), limit=50)
        empty = time.perf_counter() - start
        print(f"query: newest 50 in {newest * 1000:.1f} ms; a filter matching none of them: "
              f"{len(page.items)} found, read 5,000 in {empty * 1000:.0f} ms")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--cap", type=int, default=100_000)
    args = parser.parse_args()
    with EmbeddedRedis(Path(tempfile.mkdtemp(prefix="bench-audit-"))) as server:
        asyncio.run(measure(server.url, args.records, args.cap))


if __name__ == "__main__":
    main()
