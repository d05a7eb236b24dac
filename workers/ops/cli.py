"""`postroom` (also `python -m workers`): the command operators run."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

import uvloop

from config.errors import ConfigError
from config.queues import QueueName
from config.settings import load_settings
from workers.connection.connections import describe
from workers.connection.redis_server import resolve_redis
from workers.observe.logs import configure_logging
from workers.runner.process_pool import ChildCommand, ProcessPool, child_env
from workers.runner.serve import run_worker_process


def _queues(values: Sequence[str]) -> list[QueueName]:
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    try:
        return [QueueName(name) for name in names]
    except ValueError as exc:
        known = ", ".join(q.value for q in QueueName)
        raise ConfigError(f"--queues: {exc}; known queues: {known}") from None


def _parser(operator_commands: bool = True) -> argparse.ArgumentParser:
    """Every command, or (`postroom worker ...`) the worker's alone: the operator commands'
    modules (the client, the audit trail, tables, key migration) stay out of a worker process."""
    parser = argparse.ArgumentParser(prog="postroom", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker", help="run worker processes")
    worker.add_argument(
        "--queues",
        nargs="+",
        default=[],
        help="queues to serve (space- or comma-separated; default POSTROOM_WORKER_QUEUES, all)",
    )
    worker.add_argument("--processes", type=int, default=1, help="worker processes to fork")
    worker.add_argument("--burst", action="store_true", help="exit once the queues are empty")
    worker.add_argument(
        "--metrics-port",
        type=int,
        help="serve Prometheus /metrics on this port (process i of --processes: port + i)",
    )
    worker.add_argument("--metrics-host", help="address /metrics listens on (127.0.0.1)")
    worker.add_argument("--log-format", choices=["plain", "json"], help="log lines (plain)")
    if operator_commands:
        from workers.ops import admin_cli, events_cli

        admin_cli.add_commands(commands)
        events_cli.add_commands(commands)
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    """The settings a flag sets, taking precedence over the environment."""
    flags = {
        "metrics_port": args.metrics_port,
        "metrics_host": args.metrics_host,
        "log_format": args.log_format,
    }
    return {name: value for name, value in flags.items() if value is not None}


def _worker(args: argparse.Namespace) -> int:
    settings = load_settings(**_overrides(args))
    configure_logging(settings.log_level, settings.log_format)
    queues = _queues(args.queues) if args.queues else list(settings.worker_queues)
    if args.processes < 1:
        raise ConfigError("--processes must be at least 1")
    if args.processes == 1:
        return run_worker_process(settings, queues, burst=args.burst)
    redis_settings, server = resolve_redis(settings)
    # Children find the sentinels in the environment they inherit; else the URL resolved here.
    url = None if settings.redis_sentinels else settings.redis_dsn() or describe(redis_settings)
    command = ChildCommand([q.value for q in queues], settings.metrics_port)
    pool = ProcessPool(command, args.processes, child_env(url, settings))
    try:
        return uvloop.run(pool.run())
    finally:
        if server is not None:
            server.stop()


def _stop_before_serving(signum: int, frame: object) -> None:
    """SIGTERM before the supervisor (or pool) owns signals, or after it let go: nothing runs
    yet or any more, so exit cleanly (finally blocks still stop an embedded Redis)."""
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _stop_before_serving)
    words = sys.argv[1:] if argv is None else list(argv)
    args = _parser(operator_commands=words[:1] != ["worker"]).parse_args(words)
    try:
        if args.command == "worker":
            return _worker(args)
        from workers.ops import admin_cli, events_cli

        if args.command in events_cli.COMMANDS:
            return events_cli.run(args)
        return admin_cli.run(args)
    except ConfigError as exc:
        print(f"postroom: {exc}", file=sys.stderr)
        return 2
