"""The CLI's part of the audit trail: each changing command is recorded with the operator's
name and this host, how it ended and what it touched; `postroom audit` lists the trail.

The operator's name is what the person says it is (`--operator`, `POSTROOM_OPERATOR`, else
the OS user): whoever runs the CLI holds the Redis credentials and could write anything, so
the record is an account of who ran it, not a proof. A record that cannot be written is
logged whole at ERROR (on stderr) and the command's own answer and exit code stand
(fail open, as the admin API).
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, get_args

from redis.exceptions import RedisError

from config.settings import PostroomSettings
from workers.client import PostroomClient
from workers.errors import PostroomError
from workers.ops.cli_tables import table
from workers.store.audit_log import (
    MAX_LIMIT,
    AuditFilter,
    AuditRecord,
    Outcome,
    Via,
    audit_log,
    record_or_log,
)

# The commands that change something, and the action their records name.
AUDITED = {
    "retry": "dead-letter.retry",
    "remove": "dead-letter.remove",
    "purge": "dead-letter.purge",
    "clean": "queue.clean",
    "pause": "queue.pause",
    "resume": "queue.resume",
    "cancel": "job.cancel",
    "enqueue": "job.enqueue",
    "migrate-keys": "keys.migrate",
}


@dataclass
class CliAudit:
    """What a command touched, filled in as it runs; None for a command that changes nothing."""

    action: str | None
    operator: str
    host: str
    queue: str | None = None
    job_ids: list[str] = field(default_factory=list)
    count: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, settings: PostroomSettings, args: argparse.Namespace) -> CliAudit:
        action = AUDITED.get(args.command)
        if args.command == "retry" and getattr(args, "all", False):
            action = "dead-letter.retry-all"
        if args.command == "migrate-keys" and args.dry_run:
            action = None  # counts only
        queue = getattr(args, "queue", None)
        ids = list(getattr(args, "job_ids", None) or [])
        one = getattr(args, "job_id", None)
        detail: dict[str, Any] = {}
        if args.command == "clean":
            detail = {"state": args.state, "older_than": args.older_than}
        elif args.command == "enqueue":
            detail = {"task": args.task}
        elif args.command == "migrate-keys":
            detail = {"queues": [q.value for q in args.queues] or "all"}
        return cls(
            action=action,
            operator=getattr(args, "operator", None) or settings.operator,
            host=settings.host_name,
            queue=queue.value if queue is not None else None,
            job_ids=ids or ([one] if one else []),
            detail=detail,
        )

    def record(self, outcome: Outcome, reason: str | None) -> AuditRecord:
        return AuditRecord(
            actor=self.operator, via="cli", source=self.host, action=self.action or "?",
            queue=self.queue, job_ids=self.job_ids, count=self.count, detail=self.detail,
            outcome=outcome, reason=reason,
        )  # fmt: skip


@asynccontextmanager
async def audit_command(client: PostroomClient, audit: CliAudit) -> AsyncIterator[None]:
    """Record the command run in the block (if it changes anything), however it ends."""
    if audit.action is None:
        yield
        return
    log = audit_log(client.redis, client.settings)
    try:
        yield
    except (PostroomError, RedisError, OSError) as exc:
        await record_or_log(log, audit.record("error", f"{type(exc).__name__}: {exc}"[:500]))
        raise
    await record_or_log(log, audit.record("ok", None))


def _moment(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an ISO 8601 time (e.g. 2026-12-03T14:00:00Z)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _limit(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"must be a number from 1 to {MAX_LIMIT}")
    return int(value)


def audit_listing(parser: argparse.ArgumentParser) -> None:
    """The options of `postroom audit`."""
    parser.add_argument("--actor", help="a token's name or an operator")
    parser.add_argument("--action", help="e.g. dead-letter.purge, queue.pause, login.failed")
    parser.add_argument("--queue")
    parser.add_argument("--outcome", choices=get_args(Outcome))
    parser.add_argument("--via", choices=get_args(Via))
    parser.add_argument("--since", type=_moment, help="ISO 8601 time (UTC unless it says)")
    parser.add_argument("--until", type=_moment, help="ISO 8601 time (UTC unless it says)")
    parser.add_argument("--limit", type=_limit, default=50)
    parser.add_argument("--cursor", help="the next_cursor a previous listing printed")


async def list_audit(client: PostroomClient, args: argparse.Namespace) -> tuple[Any, str]:
    where = AuditFilter(
        actor=args.actor, action=args.action, queue=args.queue, outcome=args.outcome, via=args.via
    )
    page = await audit_log(client.redis, client.settings).query(
        where, since=args.since, until=args.until, limit=args.limit, cursor=args.cursor
    )
    rows = [
        [r.at, r.actor, r.role, r.via, r.source, r.action, r.queue, " ".join(r.job_ids) or None,
         r.count, r.outcome, r.reason]
        for r in page.items
    ]  # fmt: skip
    headers = ["at", "actor", "role", "via", "source", "action", "queue", "jobs", "count",
               "outcome", "reason"]  # fmt: skip
    more = f"; more: --cursor {page.next_cursor}" if page.next_cursor else ""
    return page, f"{table(headers, rows)}\n{len(page.items)} record(s){more}"
