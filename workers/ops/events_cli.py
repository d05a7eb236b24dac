"""`postroom events` (a RabbitMQ handler group's consumer) and the commands on its dead
letters: event-groups, event-failed, event-retry, event-remove, event-purge.

The dead-letter commands read the broker directly, as the admin API does; a group, an id
or a broker that is not there exits 2 with a message. The changing ones are recorded in the
audit trail (cli_audit.py) with the operator's name, as `retry`/`remove`/`purge` are.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING, Any

import orjson

from config.errors import ConfigError
from config.settings import PostroomSettings, load_settings
from workers.client import PostroomClient
from workers.observe.logs import configure_logging
from workers.ops.cli_audit import CliAudit, audit_command
from workers.ops.cli_tables import table

if TYPE_CHECKING:
    from workers.events.rabbitmq.dead_letters import EventDeadLetters

COMMANDS = ("events", "event-groups", "event-failed", "event-retry", "event-remove", "event-purge")
# The changing commands, and the action their audit records name.
AUDITED = {
    "event-retry": "event-dead-letter.retry",
    "event-remove": "event-dead-letter.remove",
    "event-purge": "event-dead-letter.purge",
}


def _output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", dest="output", action="store_const", const="json", default="table"
    )


def add_commands(commands: Any) -> None:
    events = commands.add_parser("events", help="consume domain events (a handler group)")
    events.add_argument(
        "--transport",
        choices=["rabbitmq"],
        help="the bus to consume (default POSTROOM_EVENT_TRANSPORT; only rabbitmq has consumers)",
    )
    events.add_argument("--group", help="the handler group (default POSTROOM_EVENT_GROUP)")
    events.add_argument("--log-format", choices=["plain", "json"], help="log lines (plain)")
    groups = commands.add_parser("event-groups", help="the RabbitMQ handler groups that ran")
    _output(groups)
    failed = commands.add_parser("event-failed", help="a handler group's event dead letters")
    failed.add_argument("group")
    failed.add_argument("--offset", type=int, default=0)
    failed.add_argument("--limit", type=int, default=20)
    _output(failed)
    retry = commands.add_parser("event-retry", help="send event dead letters back to their group")
    retry.add_argument("group")
    retry.add_argument("ids", nargs="*", metavar="ID")
    retry.add_argument("--all", action="store_true", help="every dead letter of the group")
    _output(retry)
    remove = commands.add_parser("event-remove", help="delete event dead letters")
    remove.add_argument("group")
    remove.add_argument("ids", nargs="+", metavar="ID")
    _output(remove)
    purge = commands.add_parser("event-purge", help="delete every event dead letter of a group")
    purge.add_argument("group")
    _output(purge)
    for parser in (retry, remove, purge):
        parser.add_argument(
            "--operator", help="who the audit record names (POSTROOM_OPERATOR, else the OS user)"
        )


def run(args: argparse.Namespace) -> int:
    overrides = {"log_format": args.log_format} if getattr(args, "log_format", None) else {}
    settings = load_settings(**overrides)
    if args.command == "events":
        return _consume(settings, args)
    if not settings.rabbitmq_url:
        raise ConfigError(
            f"{args.command}: the event dead letters are in RabbitMQ: set RABBITMQ_URL"
        )
    from workers.events.rabbitmq.dead_letters import UnknownEventGroup
    from workers.events.rabbitmq.publisher import transient_errors

    failures: tuple[type[BaseException], ...] = (UnknownEventGroup, *transient_errors())
    try:
        data, text = asyncio.run(_run(settings, args))
    except failures as exc:
        print(f"postroom {args.command}: {exc}", file=sys.stderr)
        return 2
    if args.output == "json":
        print(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
    else:
        print(text)
    return 0


def _consume(settings: PostroomSettings, args: argparse.Namespace) -> int:
    transport = args.transport or settings.event_bus_transport
    if transport != "rabbitmq":
        raise ConfigError(
            f"postroom events: the {transport} bus has no consumer of its own (queued events "
            "run in `postroom worker`, in-memory ones where they are published); use "
            "--transport rabbitmq or POSTROOM_EVENT_TRANSPORT=rabbitmq"
        )
    if not settings.rabbitmq_url:
        raise ConfigError("postroom events --transport rabbitmq: set RABBITMQ_URL")
    from workers.events.rabbitmq.serve import run_event_consumer

    configure_logging(settings.log_level, settings.log_format)
    return run_event_consumer(settings, args.group)


def _audit(settings: PostroomSettings, args: argparse.Namespace) -> CliAudit:
    action = AUDITED.get(args.command)
    if args.command == "event-retry" and args.all:
        action = "event-dead-letter.retry-all"
    return CliAudit(
        action=action,
        operator=getattr(args, "operator", None) or settings.operator,
        host=settings.host_name,
        job_ids=list(getattr(args, "ids", None) or []),
        detail={"group": args.group} if hasattr(args, "group") else {},
    )


async def _run(settings: PostroomSettings, args: argparse.Namespace) -> tuple[Any, str]:
    from workers.events.rabbitmq.dead_letters import EventDeadLetters

    async with await PostroomClient.connect(settings, retries=0) as client:
        letters = EventDeadLetters(settings, client.redis)
        audit = _audit(settings, args)
        try:
            async with audit_command(client, audit):
                data, text = await _command(letters, args, audit)
        finally:
            await letters.close()
    return data, text


async def _command(
    letters: EventDeadLetters, args: argparse.Namespace, audit: CliAudit
) -> tuple[Any, str]:
    from workers.events.rabbitmq.dead_letters import UnknownEventGroup

    if args.command == "event-groups":
        groups = await letters.groups()
        return groups, "\n".join(groups) or "no event group has run"
    group = args.group
    if args.command == "event-failed":
        page = await letters.list(group, args.offset, args.limit)
        total = await letters.count(group)
        items = [letter.masked() for letter in page]
        rows = [[x.id, x.type, x.reason, x.tries, x.dead_at, x.error[:80]] for x in items]
        text = table(["id", "type", "reason", "tries", "dead", "error"], rows)
        data = {
            "group": group,
            "total": total,
            "offset": args.offset,
            "items": [x.model_dump(mode="json") for x in items],
        }
        return data, f"{text}\n{group}: {len(items)} of {total} event dead letters"
    if args.command == "event-retry":
        if args.all == bool(args.ids):
            raise UnknownEventGroup("name the dead letters to retry, or --all (not both)")
        audit.count = count = await letters.retry(group, None if args.all else set(args.ids))
        _missing(args.ids, count, group)
        return {"retried": count}, f"retried {count} event(s) of group {group}"
    if args.command == "event-remove":
        audit.count = count = await letters.remove(group, set(args.ids))
        _missing(args.ids, count, group)
        return {"removed": count}, f"removed {count} event dead letter(s) of {group}"
    audit.count = count = await letters.purge(group)
    return {"removed": count}, f"removed {count} event dead letter(s) of {group}"


def _missing(ids: list[str], done: int, group: str) -> None:
    from workers.events.rabbitmq.dead_letters import UnknownEventGroup

    if ids and done < len(set(ids)):
        raise UnknownEventGroup(
            f"only {done} of {len(set(ids))} id(s) were dead letters of group {group}"
        )
