"""The orchestrator: runs every measurement of every chosen system, then writes the results.

Systems are interleaved within each run (run 1 of every system, then run 2, ...), so a slow
drift of the machine spreads over all of them instead of penalising the last. Each figure is
the median of the runs; the RSS with 100,000 queued jobs is measured once per system.
A failed measurement is recorded with its error and the rest go on; Ctrl-C (or SIGTERM)
stops everything started, writes what was measured so far, and exits 130.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from benchmarks import jobs, processes, report, servers
from benchmarks.measure import Harness, MeasurementError, Sizes, drain, end_to_end, enqueue_rate
from benchmarks.measure import latency as measure_latency
from benchmarks.measure import peak_rss as measure_rss
from benchmarks.systems import SYSTEMS, System

# What `--figures` chooses from: the measurements of a run (`_MEASURES`) and the RSS one.
FIGURES = ("drain", "bulk", "io", "e2e", "latency", "drain-2procs", "rss")


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__)
    parser.add_argument("--root", type=Path, default=Path.cwd(), help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, help="runs per figure (default 3; 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 run of small job counts")
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated systems (default all: {','.join(SYSTEMS)})",
    )
    parser.add_argument("--out", type=Path, help="results directory (default bench-results/)")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also run one drain of each chosen system under py-spy (bench-results/profiles/)",
    )
    parser.add_argument(
        "--figures",
        default="",
        help=f"comma-separated figures to measure (default all: {','.join(FIGURES)})",
    )
    args = parser.parse_args(argv)
    args.figures = {f.strip() for f in args.figures.split(",") if f.strip()} or set(FIGURES)
    if args.figures - set(FIGURES):
        parser.error(f"unknown figure(s); known: {', '.join(FIGURES)}")
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(SYSTEMS)
    unknown = [n for n in names if n not in SYSTEMS]
    if unknown:
        parser.error(f"unknown system(s) {', '.join(unknown)}; known: {', '.join(SYSTEMS)}")
    args.systems = [SYSTEMS[n] for n in names]
    args.runs = args.runs or (1 if args.quick else 3)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    args.out = args.out or args.root / "bench-results"
    return args


class Results:
    """Every sample, error and detail gathered so far."""

    def __init__(self) -> None:
        self.samples: dict[str, dict[str, list[float]]] = {}
        self.details: dict[str, dict[str, Any]] = {}
        self.errors: dict[str, list[str]] = {}

    def add(self, system: str, metric: str, value: float) -> None:
        self.samples.setdefault(system, {}).setdefault(metric, []).append(value)

    def fail(self, system: str, what: str, error: str) -> None:
        self.errors.setdefault(system, []).append(f"{what}: {error}")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _attempt(
    results: Results, system: System, what: str, measure: Callable[[], dict[str, Any]]
) -> dict[str, Any] | None:
    started = time.monotonic()
    try:
        outcome = measure()
    except MeasurementError as exc:
        _say(f"  {system.name:12} {what:14} FAILED: {exc}")
        results.fail(system.name, what, str(exc))
        return None
    shown = ", ".join(f"{k}={v:,.2f}" for k, v in outcome.items() if isinstance(v, float | int))
    _say(f"  {system.name:12} {what:14} {shown}  ({time.monotonic() - started:.0f}s)")
    return outcome


def _one_run(h: Harness, results: Results, system: System, figures: set[str]) -> None:
    for figure, measure in _MEASURES:
        applies = (figure != "bulk" or system.bulk) and (
            figure != "drain-2procs" or system.name == "postroom"
        )
        if figure in figures and applies:
            measure(h, results, system)


def _drain(h: Harness, results: Results, system: System) -> None:
    # The 1-by-1 enqueue fills the drain's queue (see measure.drain); bulk is timed apart.
    name = system.name
    got = _attempt(
        results,
        system,
        "enqueue+drain",
        lambda: drain(h, system, jobs.NOOP, h.sizes.drain, fill="one"),
    )
    if got:
        results.add(name, "enqueue_one", got["enqueue_one"])
        results.add(name, "drain", got["throughput"])
        results.add(name, "drain_from_spawn", got["throughput_from_spawn"])
        results.add(name, "commands_per_job", got["commands_per_job"])
        results.add(name, "worker_cpu_us_per_job", got["worker_cpu_us_per_job"])
        results.add(name, "redis_cpu_us_per_job", got["redis_cpu_us_per_job"])
        results.add(name, "cores_busy", got["cores_busy"])
        results.add(name, "drain_peak_rss_mib", got["peak_rss_mib"])
        results.details.setdefault(name, {})["drain_commands"] = got["commands"]


def _bulk(h: Harness, results: Results, system: System) -> None:
    got = _attempt(results, system, "enqueue-bulk", lambda: enqueue_rate(h, system, "bulk"))
    if got:
        results.add(system.name, "enqueue_bulk", got["enqueue_bulk"])


def _io(h: Harness, results: Results, system: System) -> None:
    got = _attempt(results, system, "io", lambda: drain(h, system, jobs.SLEEP, h.sizes.io))
    if got:
        results.add(system.name, "io", got["throughput"])


def _e2e(h: Harness, results: Results, system: System) -> None:
    for task, metric in ((jobs.NOOP, "e2e"), (jobs.SLEEP, "e2e_io")):
        got = _attempt(results, system, metric, lambda t=task: end_to_end(h, system, t))  # type: ignore[misc]
        if got:
            results.add(system.name, metric, got["throughput"])


def _latency(h: Harness, results: Results, system: System) -> None:
    got = _attempt(results, system, "latency", lambda: measure_latency(h, system))
    if got:
        for key in ("p50_ms", "p99_ms", "max_ms", "mean_ms"):
            results.add(system.name, f"latency_{key}", got[key])


def _drain_2procs(h: Harness, results: Results, system: System) -> None:
    name = system.name
    got = _attempt(
        results, system, "drain-2procs", lambda: drain(h, system, jobs.NOOP, h.sizes.drain, 2)
    )
    if got:
        results.add(name, "drain_2procs", got["throughput"])
        results.add(name, "commands_per_job_2procs", got["commands_per_job"])
        results.add(name, "worker_cpu_us_per_job_2procs", got["worker_cpu_us_per_job"])
        results.add(name, "redis_cpu_us_per_job_2procs", got["redis_cpu_us_per_job"])
        results.add(name, "cores_busy_2procs", got["cores_busy"])


# Each run's measurements in order, by the `--figures` name that chooses them (drain-2procs is
# postroom's alone, bulk only for a system with a bulk enqueue).
_MEASURES: tuple[tuple[str, Callable[[Harness, Results, System], None]], ...] = (
    ("drain", _drain),
    ("bulk", _bulk),
    ("io", _io),
    ("e2e", _e2e),
    ("latency", _latency),
    ("drain-2procs", _drain_2procs),
)


def _profile(h: Harness, system: System, out: Path) -> None:
    """One extra drain with py-spy attached to the worker: where its CPU time goes."""
    from benchmarks import profiling

    out.mkdir(parents=True, exist_ok=True)
    try:
        summary = profiling.profile_drain(h, system, out)
    except MeasurementError as exc:
        _say(f"  {system.name:12} profile        FAILED: {exc}")
        return
    _say(f"  {system.name:12} profile        {summary}")


def _source(at_start: dict[str, Any], at_end: dict[str, Any]) -> dict[str, Any]:
    """postroom's commit at the end, flagged when its code changed while the bench ran."""
    return {
        **at_end,
        "commit_at_start": at_start["commit"],
        "changed_during_run": at_start != at_end,
    }


def _stop_on_sigterm(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    # Ctrl-C must stop the bench even when started from a shell that ignores SIGINT for it
    # (a background job); Python would otherwise keep that SIG_IGN.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    scratch = Path(tempfile.mkdtemp(prefix="postroom-bench-"))
    logs = scratch / "logs"
    logs.mkdir()
    sizes = Sizes.quick() if args.quick else Sizes()
    h = Harness(root=args.root, scratch=scratch, logs=logs, sizes=sizes)
    results = Results()
    started = time.time()
    cpu_before = report.cpu_times()
    source_at_start = report.postroom_source(args.root)
    interrupted = False
    versions: dict[str, Any] = {}
    redis_server = "?"
    try:
        with servers.fresh_redis(scratch) as server:
            redis_server = servers.server_version(servers.connect(server))
        for system in args.systems:
            try:
                versions[system.name] = h.agent(system, "redis://127.0.0.1:1", "info", timeout=120)
            except MeasurementError as exc:
                results.fail(system.name, "install", str(exc))
        _say(f"bench: {len(args.systems)} systems, {args.runs} run(s), sizes {sizes}")
        for run in range(1, args.runs + 1):
            _say(f"run {run}/{args.runs}")
            for system in args.systems:
                _one_run(h, results, system, args.figures)
        _say("peak RSS with queued jobs")
        for system in args.systems if "rss" in args.figures else ():
            got = _attempt(results, system, "rss", lambda s=system: measure_rss(h, s))  # type: ignore[misc]
            if got:
                results.add(system.name, "peak_rss_mib", got["peak_rss_mib"])
                results.add(system.name, "rss_done_in_window", got["done_in_window"])
        if args.profile:
            _say("profiles (py-spy)")
            for system in args.systems:
                _profile(h, system, args.out / "profiles")
    except KeyboardInterrupt:
        interrupted = True
        _say("bench: interrupted; stopping everything and writing what was measured")
    finally:
        processes.stop_all()
        if results.errors:
            kept = args.out / "logs"
            shutil.rmtree(kept, ignore_errors=True)
            shutil.copytree(logs, kept)
            _say(f"bench: failures recorded; subprocess logs kept in {kept}")
        shutil.rmtree(scratch, ignore_errors=True)
    written = report.write(
        args.out,
        report.Inputs(
            systems=args.systems,
            runs=args.runs,
            sizes=sizes,
            quick=args.quick,
            samples=results.samples,
            details=results.details,
            errors=results.errors,
            versions=versions,
            started=started,
            interrupted=interrupted,
            redis_server=redis_server,
            postroom_source=_source(source_at_start, report.postroom_source(args.root)),
            cpu_steal_percent=report.steal_percent(cpu_before, report.cpu_times()),
        ),
    )
    _say(f"bench: wrote {', '.join(str(p) for p in written)} in {time.time() - started:.0f}s")
    if interrupted:
        return 130
    return 1 if results.errors else 0


if __name__ == "__main__":
    sys.exit(main())
