"""The soak's size, rates and chaos, as flags; the defaults are the operator run of issue 18."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class SoakConfig:
    jobs: int
    rate: float  # enqueues per second
    workers: int
    kill_every: float  # seconds between worker SIGKILLs (0: none)
    redis_restarts: int
    redis_down: float  # seconds Redis stays dead before its restart
    stops: int  # workers SIGSTOPped past their lease, one after the other
    stop_seconds: float
    lease: float
    grace: float
    work_ms: float  # mean time a job's body takes
    drain_timeout: float
    seed: int | None
    json: bool
    keep: bool
    run_dir: Path | None
    runs: int
    summary: Path | None

    @property
    def chaos_seconds(self) -> float:
        """How long the chaos lasts: as long as the enqueues take at `rate`."""
        return self.jobs / self.rate


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scripts/soak",
        description="Chaos soak: enqueue jobs into postroom workers while killing workers "
        "and Redis, then account for every acknowledged job. Exits 1 on any lost job, "
        "unexplained duplicate, orphan queue entry or stalled dead letter that worker "
        "kills do not explain.",
    )
    p.add_argument("--jobs", type=int, default=12_000, help="jobs to enqueue (12000)")
    p.add_argument("--rate", type=float, default=200.0, help="enqueues per second (200)")
    p.add_argument("--workers", type=int, default=3, help="postroom worker processes (3)")
    p.add_argument(
        "--kill-every", type=float, default=3.0, help="SIGKILL a random worker every S s (3)"
    )
    p.add_argument(
        "--redis-restarts", type=int, default=2, help="SIGKILL and restart Redis N times (2)"
    )
    p.add_argument(
        "--redis-down", type=float, default=2.0, help="seconds Redis stays down each time (2)"
    )
    p.add_argument("--stops", type=int, default=1, help="workers SIGSTOPped past their lease (1)")
    p.add_argument(
        "--stop-seconds",
        type=float,
        default=None,
        help="how long a stopped worker stays stopped (default: 2 leases + 1 s)",
    )
    p.add_argument("--lease", type=float, default=3.0, help="POSTROOM_LEASE_SECONDS (3)")
    p.add_argument("--grace", type=float, default=1.0, help="POSTROOM_SHUTDOWN_GRACE (1)")
    p.add_argument("--work-ms", type=float, default=50.0, help="mean job body time, ms (50)")
    p.add_argument(
        "--drain-timeout", type=float, default=180.0, help="seconds to wait for the drain (180)"
    )
    p.add_argument("--seed", type=int, default=None, help="random seed of the chaos")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--keep", action="store_true", help="keep the run directory (logs, ledger)")
    p.add_argument("--run-dir", type=Path, default=None, help="where to keep logs and ledger")
    p.add_argument("--runs", type=int, default=1, help="soaks in a row, each from scratch (1)")
    p.add_argument(
        "--summary", type=Path, default=None, help="write a Markdown table of the runs here"
    )
    return p


def _check(args: argparse.Namespace) -> None:
    """Refuse values the soak cannot run with, naming the flag."""
    rules = [
        ("--jobs", args.jobs >= 1),
        ("--rate", args.rate > 0),
        ("--workers", args.workers >= 2),
        ("--kill-every", args.kill_every >= 0),
        ("--redis-restarts", args.redis_restarts >= 0),
        ("--redis-down", args.redis_down >= 0),
        ("--stops", args.stops >= 0),
        ("--lease", args.lease > 0),
        ("--grace", args.grace >= 0),
        ("--work-ms", args.work_ms >= 0),
        ("--drain-timeout", args.drain_timeout > 0),
        ("--runs", args.runs >= 1),
    ]
    bad = [flag for flag, ok in rules if not ok]
    if bad:
        raise SystemExit(f"scripts/soak: out of range: {', '.join(bad)} (see --help)")
    if args.runs > 1 and args.run_dir is not None:
        raise SystemExit("scripts/soak: --run-dir takes one run; --runs N makes a dir each")
    if args.stop_seconds is not None and args.stop_seconds <= args.lease:
        raise SystemExit("scripts/soak: --stop-seconds must exceed --lease (a stop past it)")


def parse(argv: Sequence[str] | None = None) -> SoakConfig:
    args = parser().parse_args(argv)
    _check(args)
    stop_seconds = args.stop_seconds if args.stop_seconds is not None else 2 * args.lease + 1
    return SoakConfig(
        jobs=args.jobs,
        rate=args.rate,
        workers=args.workers,
        kill_every=args.kill_every,
        redis_restarts=args.redis_restarts,
        redis_down=args.redis_down,
        stops=args.stops,
        stop_seconds=stop_seconds,
        lease=args.lease,
        grace=args.grace,
        work_ms=args.work_ms,
        drain_timeout=args.drain_timeout,
        seed=args.seed,
        json=args.json,
        keep=args.keep,
        run_dir=args.run_dir,
        runs=args.runs,
        summary=args.summary,
    )
