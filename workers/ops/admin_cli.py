"""The operator commands of `postroom` (stats, jobs, job, failed, retry, remove, purge,
clean, pause, resume, cancel, enqueue, audit, migrate-keys, reseal, acl-rule, serve): tables by
default, `--json` for scripts.

They talk to Redis directly through the same client calls as the admin API; errors (an
unknown queue, an unreachable Redis, an invalid payload) exit 2 with a message. Each change
(retry, remove, purge, clean, pause, resume, cancel, enqueue, migrate-keys) is recorded in
the audit trail (cli_audit.py) with the operator's name (`--operator`, else
`POSTROOM_OPERATOR`, else the OS user) and this host, whether it succeeded or not.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from pydantic import BaseModel
from redis.exceptions import RedisError

from config.errors import ConfigError
from config.queues import QueueName
from config.settings import PostroomSettings, load_settings
from workers.client import PostroomClient, redis_url
from workers.connection.acl_rule import CLUSTER_COMMANDS, acl_rule
from workers.errors import PayloadValidationError, PostroomError, UnknownTaskError
from workers.observe.logs import configure_logging
from workers.observe.masking import mask, masked_job, masked_letter
from workers.ops.cli_audit import AUDITED, CliAudit, audit_command, audit_listing, list_audit
from workers.ops.cli_tables import table
from workers.ops.rate_limits import read_rate_limits
from workers.runner.serve import load_task_modules
from workers.store.dead_letter import retryable, why
from workers.store.job_listing import CLEAN_STATES, CleanState
from workers.store.job_status import JobState
from workers.store.key_migration import (
    MarkerMigration,
    QueueMigration,
    marker_rules,
    migrate_keys,
    migrate_markers,
)
from workers.store.priority import Priority
from workers.store.resealing import reseal_queue

COMMANDS = (
    "stats", "jobs", "job", "failed", "retry", "remove", "purge", "clean", "pause", "resume",
    "cancel", "enqueue", "audit", "migrate-keys", "reseal", "acl-rule", "serve",
)  # fmt: skip
KNOWN = ", ".join(q.value for q in QueueName)


class CommandError(PostroomError):
    """Raised when an operator command cannot do what it was asked; the message says why."""


def queue_arg(value: str) -> QueueName:
    if value not in QueueName._value2member_map_:
        raise argparse.ArgumentTypeError(f"unknown queue {value!r}; known: {KNOWN}")
    return QueueName(value)


def _output(parser: argparse.ArgumentParser, *, json_flag: bool = True) -> None:
    if json_flag:
        parser.add_argument(
            "--json", dest="output", action="store_const", const="json", help="print JSON"
        )
    parser.add_argument("--output", choices=["table", "json"], default="table")


def _paging(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--limit", type=int, default=20)


def _operator(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--operator", help="who the audit record names (POSTROOM_OPERATOR, else the OS user)"
    )


def add_commands(commands: Any) -> None:
    """Add the operator commands to `postroom`'s subcommands."""
    stats = commands.add_parser("stats", help="numbers of every queue (or the ones named)")
    stats.add_argument("queues", nargs="*", type=queue_arg, metavar="QUEUE")
    _output(stats)
    limits = commands.add_parser(
        "rate-limits", help="every rate limit: its limit, current rate, throttled jobs"
    )
    _output(limits)
    jobs = commands.add_parser("jobs", help="a queue's jobs in one state")
    jobs.add_argument("queue", type=queue_arg)
    jobs.add_argument("--state", type=JobState, choices=list(JobState), default=JobState.QUEUED)
    _paging(jobs)
    _output(jobs)
    job = commands.add_parser("job", help="one job's state, progress, tries, result or error")
    job.add_argument("job_id", metavar="ID")
    _output(job)
    failed = commands.add_parser("failed", help="a queue's dead letters, newest first")
    failed.add_argument("queue", type=queue_arg)
    failed.add_argument("--traceback", action="store_true", help="print each try's traceback")
    _paging(failed)
    _output(failed)
    retry = commands.add_parser("retry", help="queue dead letters again (fresh try budget)")
    retry.add_argument("queue", type=queue_arg)
    retry.add_argument("job_ids", nargs="*", metavar="ID")
    retry.add_argument("--all", action="store_true", help="every dead letter of the queue")
    _output(retry)
    remove = commands.add_parser("remove", help="delete dead letters")
    remove.add_argument("queue", type=queue_arg)
    remove.add_argument("job_ids", nargs="+", metavar="ID")
    _output(remove)
    purge = commands.add_parser("purge", help="delete every dead letter of a queue")
    purge.add_argument("queue", type=queue_arg)
    _output(purge)
    clean = commands.add_parser("clean", help="delete a queue's old finished jobs of a state")
    clean.add_argument("queue", type=queue_arg)
    clean.add_argument("--state", required=True, choices=CLEAN_STATES)
    clean.add_argument("--older-than", type=float, default=0, help="seconds since they ended")
    _output(clean)
    for name, what in (("pause", "stop starting a queue's jobs"), ("resume", "undo pause")):
        command = commands.add_parser(name, help=what)
        command.add_argument("queue", type=queue_arg)
        _output(command)
    enqueue = commands.add_parser("enqueue", help="queue a task by name with a JSON payload")
    enqueue.add_argument("task")
    enqueue.add_argument("--json", dest="payload", default="{}", help="the payload, a JSON object")
    enqueue.add_argument("--job-id")
    enqueue.add_argument("--priority", type=Priority, choices=list(Priority))
    enqueue.add_argument("--delay", type=float, help="seconds before it may start")
    _output(enqueue, json_flag=False)
    cancel = commands.add_parser("cancel", help="cancel a waiting or running job")
    cancel.add_argument("job_id", metavar="ID")
    _output(cancel)
    audit_listing(commands.add_parser("audit", help="the audit trail, newest first"))
    _output(commands.choices["audit"])
    migrate = commands.add_parser(
        "migrate-keys", help="move jobs left in the key layout before hash tags to the new one"
    )
    migrate.add_argument("queues", nargs="*", type=queue_arg, metavar="QUEUE",
                         help="only these queues' jobs (cron ticks and batch checkpoints "
                              "move with a run over every queue)")  # fmt: skip
    migrate.add_argument("--dry-run", action="store_true", help="count what would move")
    _output(migrate)
    reseal = commands.add_parser(
        "reseal", help="seal queued jobs, results and dead letters again under the active key"
    )
    reseal.add_argument("queues", nargs="*", type=queue_arg, metavar="QUEUE",
                        help="only these queues (default every queue)")  # fmt: skip
    reseal.add_argument("--dry-run", action="store_true", help="count what would be sealed")
    _output(reseal)
    acl = commands.add_parser(
        "acl-rule", help="print the ACL SETUSER line of a Redis user with only what postroom needs"
    )
    acl.add_argument("--user", default="postroom", help="the user's name (default postroom)")
    serve = commands.add_parser("serve", help="run the admin HTTP API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8700)
    serve.add_argument("--local-only", action="store_true",
                       help="serve without POSTROOM_ADMIN_TOKEN; binds loopback only")  # fmt: skip
    for name in AUDITED:
        _operator(commands.choices[name])


def run(args: argparse.Namespace) -> int:
    """Run one operator command; exit code 2 with a message on stderr when it fails."""
    settings = load_settings()
    if args.command == "serve":
        return serve(settings, args.host, args.port, local_only=args.local_only)
    if args.command == "acl-rule":
        print(acl_setuser(settings, args.user))
        return 0
    try:
        asyncio.run(_run(settings, args))
    except (CommandError, PayloadValidationError, UnknownTaskError) as exc:
        print(f"postroom {args.command}: {exc}", file=sys.stderr)
        return 2
    return 0


def acl_setuser(settings: PostroomSettings, user: str) -> str:
    """The ACL SETUSER command for this deployment's prefix (and a Cluster's slot map), with
    a placeholder where the password goes: it is never printed."""
    rule = acl_rule(settings.key_prefix)
    if settings.redis_cluster:
        rule = " ".join([rule, *CLUSTER_COMMANDS])
    return f"ACL SETUSER {user} on >CHANGE-ME-LONG-RANDOM-PASSWORD {rule}"


async def _run(settings: PostroomSettings, args: argparse.Namespace) -> None:
    if args.command in ("enqueue", "migrate-keys", "rate-limits"):  # tasks' own limits
        load_task_modules(settings.task_modules)
    try:
        client = await PostroomClient.connect(settings, retries=0)
    except (RedisError, OSError) as exc:
        raise CommandError(f"cannot reach Redis at {redis_url(settings)}: {exc}") from None
    async with client:
        audit = CliAudit.of(settings, args)
        args.audit = audit
        try:
            async with audit_command(client, audit):
                result = await HANDLERS[args.command](client, args)
        except (RedisError, OSError) as exc:
            raise CommandError(f"Redis at {redis_url(settings)} failed: {exc}") from None
    data, text = result
    if args.output == "json":
        print(orjson.dumps(_jsonable(data), option=orjson.OPT_INDENT_2).decode())
    else:
        print(text)


def _jsonable(data: Any) -> Any:
    if isinstance(data, BaseModel):
        return data.model_dump(mode="json")
    if isinstance(data, list):
        return [_jsonable(item) for item in data]
    if isinstance(data, dict):
        return {key: _jsonable(value) for key, value in data.items()}
    return data


Result = tuple[Any, str]
Handler = Callable[[PostroomClient, argparse.Namespace], Awaitable[Result]]


async def _stats(client: PostroomClient, args: argparse.Namespace) -> Result:
    stats = await client.queues_stats(args.queues or QueueName)
    rows = [
        [s.queue.value, s.waiting, s.active, s.delayed, s.completed, s.failed,
         s.dead_lettered_now, s.paused]
        for s in stats
    ]  # fmt: skip
    headers = ["queue", "waiting", "active", "delayed", "completed", "failed", "dead", "paused"]
    return stats, table(headers, rows)


async def _rate_limits(client: PostroomClient, args: argparse.Namespace) -> Result:
    limits = await read_rate_limits(client)
    rows = [
        [i.name, i.limit, f"{i.rate:.2f}", i.at_limit, i.throttled, i.waiting, i.held]
        for i in limits
    ]
    headers = ["limit", "allowed", "rate/s", "at limit", "throttled", "waiting", "held"]
    return limits, table(headers, rows) if rows else "no rate limits configured"


async def _jobs(client: PostroomClient, args: argparse.Namespace) -> Result:
    page = await client.list_jobs(args.queue, args.state, offset=args.offset, limit=args.limit)
    page = page.model_copy(update={"items": [masked_job(item) for item in page.items]})
    rows = [
        [j.job_id, j.state.value, j.task, j.priority, j.tries, j.enqueued_at, j.finished_at,
         j.error]
        for j in page.items
    ]  # fmt: skip
    headers = ["id", "state", "task", "priority", "tries", "enqueued", "finished", "error"]
    shown = f"{page.offset + 1}-{page.offset + len(page.items)}" if page.items else "none"
    footer = f"{args.queue.value} {args.state.value}: {shown} of {page.total}"
    return page, f"{table(headers, rows)}\n{footer}"


async def _job(client: PostroomClient, args: argparse.Namespace) -> Result:
    info = await client.job_info(args.job_id)
    if info is None:
        raise CommandError(f"no job {args.job_id!r}")
    data = masked_job(info).model_dump(mode="json")
    data["payload"] = mask(await client.job_payload(args.job_id))
    width = max(len(key) for key in data)
    lines = [
        f"{key.ljust(width)}  {_text(value)}" for key, value in data.items() if value is not None
    ]
    return data, "\n".join(lines)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


async def _failed(client: PostroomClient, args: argparse.Namespace) -> Result:
    letters = await client.dead_letters.list(args.queue, offset=args.offset, limit=args.limit)
    total = await client.dead_letters.count(args.queue)
    letters = [masked_letter(x, client.sealer) for x in letters]
    rows = [
        [x.job_id, x.task, x.reason, x.tries, x.failed_at,
         x.malformed or (f"{x.errors[-1].type}: {x.errors[-1].message}" if x.errors else None)]
        for x in letters
    ]  # fmt: skip
    text = table(["id", "task", "reason", "tries", "failed", "last error"], rows)
    if args.traceback:
        for letter in letters:
            for error in letter.errors:
                text += f"\n\n{letter.job_id} try {error.attempt}:\n{error.traceback.rstrip()}"
    data = {"queue": args.queue.value, "total": total, "offset": args.offset, "items": letters}
    return data, f"{text}\n{args.queue.value}: {len(letters)} of {total} dead letters"


async def _letters(client: PostroomClient, queue: QueueName, job_ids: list[str]) -> list[str]:
    """Fails naming the ids that are not dead letters of `queue`."""
    missing = []
    for job_id in job_ids:
        letter = await client.dead_letters.get(job_id)
        if letter is None or letter.queue != queue:
            missing.append(job_id)
    if missing:
        raise CommandError(f"no dead letter {', '.join(map(repr, missing))} in {queue.value}")
    return job_ids


async def _retry(client: PostroomClient, args: argparse.Namespace) -> Result:
    if args.all == bool(args.job_ids):
        raise CommandError("name the dead letters to retry, or --all (not both)")
    audit: CliAudit = args.audit
    if args.all:
        audit.count = count = await client.dead_letters.retry_all(args.queue)
    else:
        audit.count = count = 0
        for job_id in await _letters(client, args.queue, args.job_ids):
            letter = await client.dead_letters.get(job_id)
            if letter is not None and not retryable(letter):
                raise CommandError(f"job {job_id!r} cannot be retried: {why(letter)}")
            if not await client.dead_letters.retry(job_id):
                raise CommandError(f"job {job_id!r} is still being finished; retry in a moment")
            audit.count = count = count + 1
    return {"retried": count}, f"retried {count} job(s) of {args.queue.value}"


async def _remove(client: PostroomClient, args: argparse.Namespace) -> Result:
    audit: CliAudit = args.audit
    audit.count = count = 0
    for job_id in await _letters(client, args.queue, args.job_ids):
        count += await client.dead_letters.remove(job_id)
        audit.count = count
    return {"removed": count}, f"removed {count} dead letter(s) of {args.queue.value}"


async def _purge(client: PostroomClient, args: argparse.Namespace) -> Result:
    args.audit.count = count = await client.dead_letters.purge(args.queue)
    return {"removed": count}, f"removed {count} dead letter(s) of {args.queue.value}"


async def _clean(client: PostroomClient, args: argparse.Namespace) -> Result:
    if args.older_than < 0:
        raise CommandError("--older-than must not be negative")
    state: CleanState = args.state
    args.audit.count = count = await client.clean(args.queue, state, args.older_than)
    return {"removed": count}, f"removed {count} {state} job(s) of {args.queue.value}"


async def _pause(client: PostroomClient, args: argparse.Namespace) -> Result:
    await client.pause(args.queue)
    return await client.queue_stats(args.queue), f"paused {args.queue.value}"


async def _resume(client: PostroomClient, args: argparse.Namespace) -> Result:
    await client.resume(args.queue)
    return await client.queue_stats(args.queue), f"resumed {args.queue.value}"


async def _enqueue(client: PostroomClient, args: argparse.Namespace) -> Result:
    try:
        payload = orjson.loads(args.payload)
    except orjson.JSONDecodeError as exc:
        raise CommandError(f"--json: not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise CommandError("--json: the payload must be a JSON object keyed by argument name")
    if args.delay is not None and args.delay < 0:
        raise CommandError("--delay must not be negative")
    task = client.tasks.get(args.task)
    handle = await client.enqueue_payload(
        args.task, payload, job_id=args.job_id, priority=args.priority, delay=args.delay
    )
    audit: CliAudit = args.audit
    audit.queue, audit.job_ids, audit.count = task.queue.value, [handle.job_id], 1
    audit.detail["created"] = handle.created
    data = {"job_id": handle.job_id, "task": task.name, "queue": task.queue.value,
            "created": handle.created}  # fmt: skip
    verb = "queued" if handle.created else "already taken:"
    return data, f"{verb} job {handle.job_id} ({task.name} on {task.queue.value})"


async def _cancel(client: PostroomClient, args: argparse.Namespace) -> Result:
    info = await client.job_info(args.job_id)
    audit: CliAudit = args.audit
    audit.queue = info.queue.value if info is not None and info.queue is not None else None
    outcome = await client.cancel(args.job_id)
    audit.detail["outcome"] = outcome
    if outcome == "not-found":
        raise CommandError(f"no job {args.job_id!r} waiting or running")
    audit.count = 1
    verb = "cancelled" if outcome == "cancelled" else "stopping"
    return {"job_id": args.job_id, "outcome": outcome}, f"{verb} job {args.job_id}"


async def _audit(client: PostroomClient, args: argparse.Namespace) -> Result:
    return await list_audit(client, args)


async def _migrate_keys(client: PostroomClient, args: argparse.Namespace) -> Result:
    reports = await migrate_keys(
        client.redis, client.keys.prefix, args.queues or QueueName, dry_run=args.dry_run
    )
    rows = [
        [r.queue.value, r.ready, r.delayed, r.completed, r.dead, r.recovered, r.stale,
         len(r.running), len(r.conflict), sum(r.counters.values()), r.paused]
        for r in reports
    ]  # fmt: skip
    headers = ["queue", "ready", "delayed", "completed", "dead", "recovered", "stale",
               "running", "conflict", "counted", "paused"]  # fmt: skip
    markers: list[MarkerMigration] = []
    if not args.queues:
        rules = marker_rules(client.keys.prefix, {t.name: t.queue for t in client.tasks})
        markers = await migrate_markers(client.redis, rules, dry_run=args.dry_run)
    marker_rows = [[m.kind, m.moved, len(m.unknown), len(m.conflict)] for m in markers]
    args.audit.count = sum(r.moved for r in reports)
    args.audit.detail["markers"] = sum(m.moved for m in markers)
    text = table(headers, rows)
    if markers:
        text += "\n\n" + table(["marker", "moved", "unknown", "conflict"], marker_rows)
    summary = _migration_summary(reports, markers, dry_run=args.dry_run)
    data = {
        "dry_run": args.dry_run,
        "queues": [r.as_dict() for r in reports],
        "markers": [m.as_dict() for m in markers],
    }
    return data, f"{text}\n{summary}"


def _migration_summary(
    reports: list[QueueMigration], markers: list[MarkerMigration], *, dry_run: bool
) -> str:
    moved = sum(r.moved for r in reports)
    verb = "would move" if dry_run else "moved"
    marked = sum(m.moved for m in markers)
    lines = [f"{verb} {moved} job(s) and {marked} marker(s) from the old key layout"]
    for r in reports:
        if r.running:
            lines.append(
                f"{r.queue.value}: left {len(r.running)} job(s) an old worker is running "
                f"({', '.join(r.running[:5])}); run migrate-keys again once they finished"
            )
        if r.conflict:
            lines.append(
                f"{r.queue.value}: left {len(r.conflict)} job(s) whose id is taken in the new "
                f"layout ({', '.join(r.conflict[:5])}); they stay in the old keys"
            )
    for m in markers:
        if m.unknown:
            lines.append(f"left {len(m.unknown)} {m.kind}(s) of no known task or queue "
                         f"({', '.join(m.unknown[:5])})")  # fmt: skip
        if m.conflict:
            lines.append(f"left {len(m.conflict)} {m.kind}(s) whose new key holds another "
                         f"value ({', '.join(m.conflict[:5])})")  # fmt: skip
    if not dry_run and not any(r.left for r in reports) and not any(m.left for m in markers):
        lines.append("nothing is left in the old layout")
    return "\n".join(lines)


async def _reseal(client: PostroomClient, args: argparse.Namespace) -> Result:
    sealer = client.sealer
    if sealer.keyring is None:
        raise CommandError(
            "no keys are configured (POSTROOM_ENCRYPTION__KEYS): there is nothing to seal with"
        )
    reports = [
        await reseal_queue(client.redis, client.keys, queue, sealer, dry_run=args.dry_run)
        for queue in args.queues or QueueName
    ]
    rows = [[r.queue.value, r.resealed, r.current, r.changed, len(r.unopenable)] for r in reports]
    text = table(["queue", "resealed", "current", "changed", "unopenable"], rows)
    verb = "would seal" if args.dry_run else "sealed"
    lines = [f"{verb} {sum(r.resealed for r in reports)} record(s) under key "
             f"{sealer.active_key_id!r}"]  # fmt: skip
    for r in reports:
        if r.unopenable:
            lines.append(
                f"{r.queue.value}: {len(r.unopenable)} job(s) whose seal does not open with "
                f"the keys held ({', '.join(r.unopenable[:5])}); a worker dead-letters them"
            )
    data = {"dry_run": args.dry_run, "active_key_id": sealer.active_key_id,
            "queues": [r.as_dict() for r in reports]}  # fmt: skip
    return data, f"{text}\n" + "\n".join(lines)


HANDLERS: dict[str, Handler] = {
    "stats": _stats,
    "rate-limits": _rate_limits,
    "jobs": _jobs,
    "job": _job,
    "failed": _failed,
    "retry": _retry,
    "remove": _remove,
    "purge": _purge,
    "clean": _clean,
    "pause": _pause,
    "resume": _resume,
    "cancel": _cancel,
    "enqueue": _enqueue,
    "audit": _audit,
    "migrate-keys": _migrate_keys,
    "reseal": _reseal,
}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(settings: PostroomSettings, host: str, port: int, *, local_only: bool) -> int:
    """Run the admin API with uvicorn until SIGINT/SIGTERM."""
    # Imported here: the other commands need neither the server nor the app.
    import uvicorn

    from workers.ops.admin.app import create_admin_app

    local_only = local_only or settings.admin_local_only
    if local_only and not is_loopback(host):
        raise ConfigError(f"--local-only serves on loopback only, not --host {host}")
    configure_logging(settings.log_level, settings.log_format)
    # uvicorn's own lines (started, listening on, ...) go where postroom's go.
    server_logger = logging.getLogger("uvicorn")
    server_logger.handlers[:] = logging.getLogger("workers").handlers
    server_logger.setLevel(settings.log_level)
    server_logger.propagate = False
    load_task_modules(settings.task_modules)
    app = create_admin_app(settings=settings, local_only=local_only)
    uvicorn.run(app, host=host, port=port, log_config=None, lifespan="on")
    return 0
