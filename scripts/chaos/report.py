"""The soak's report: its figures as one JSON-ready dict, or as text for a terminal."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from chaos.accounting import Accounting
from chaos.config import SoakConfig
from chaos.enqueuer import Enqueued

# Ids shown per list in the report; the JSON's counts are whole.
_SHOWN = 20


def _ids(ids: list[str]) -> dict[str, Any]:
    return {"count": len(ids), "ids": ids[:_SHOWN]}


def build(
    config: SoakConfig,
    acc: Accounting,
    enqueued: Enqueued,
    chaos: dict[str, int],
    drain: dict[str, Any],
    seconds: float,
    run_dir: str,
) -> dict[str, Any]:
    failures = acc.failures()
    if not drain["drained"]:
        failures.append(f"not drained within {config.drain_timeout:g}s")
    return {
        "ok": not failures,
        "failures": failures,
        "warnings": acc.warnings(),
        "duration_s": round(seconds, 1),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
        "enqueue": asdict(enqueued),
        "chaos": chaos,
        "drain": drain,
        "jobs": {
            "acknowledged": acc.acknowledged,
            "completed": acc.completed,
            "completed_once": acc.completed_once,
            "completed_again_after_kill": acc.completed_again_after_kill,
            "completed_again_after_stop": acc.completed_again_after_stop,
            "dead_lettered": dict(acc.dead_lettered),
            "still_queued": _ids(acc.still_queued),
            "ended_without_outcome": _ids(acc.ended_without_outcome),
            "lost": _ids(acc.lost),
            "unexplained_duplicates": _ids(acc.unexplained_duplicates),
            "unmatched_results": _ids(acc.unmatched_results),
            "stalled_unexplained": _ids(acc.stalled_unexplained),
        },
        "executions": acc.executions,
        "failed_tries": acc.failed_tries,
        "queue": {"orphans": _ids(acc.orphans), "unknown_entries": _ids(acc.unknown_entries)},
        "counters": acc.counters,
        "run_dir": run_dir,
    }


def text(report: dict[str, Any]) -> str:
    jobs, chaos, enq = report["jobs"], report["chaos"], report["enqueue"]
    dead = ", ".join(f"{r} {n}" for r, n in sorted(jobs["dead_lettered"].items())) or "none"
    counters = "; ".join(
        f"{name} " + " / ".join(f"{k} {v}" for k, v in pair.items())
        for name, pair in report["counters"].items()
    )
    lines = [
        f"chaos soak: {'OK' if report['ok'] else 'FAILED'} in {report['duration_s']}s",
        f"  enqueued: {enq['acknowledged']} acknowledged ({enq['created']} created by their "
        f"first write), {enq['retries']} enqueues repeated after an error",
        f"  chaos: {chaos['worker_kills']} worker kills, {chaos['stops']} stops, "
        f"{chaos['redis_restarts']} Redis restarts",
        f"  drained: {report['drain']['drained']} after {report['drain']['seconds']}s",
        f"  completed: {jobs['completed']} (once {jobs['completed_once']}, again after a kill "
        f"{jobs['completed_again_after_kill']}, again after a stop "
        f"{jobs['completed_again_after_stop']})",
        f"  dead-lettered: {dead}",
        f"  still queued {jobs['still_queued']['count']}, lost {jobs['lost']['count']}, "
        f"ended without outcome {jobs['ended_without_outcome']['count']}, unexplained "
        f"duplicates {jobs['unexplained_duplicates']['count']}, stalled unexplained "
        f"{jobs['stalled_unexplained']['count']}",
        f"  queue: orphans {report['queue']['orphans']['count']}, entries never enqueued "
        f"{report['queue']['unknown_entries']['count']}",
        f"  executions {report['executions']}, failed tries {report['failed_tries']}",
        f"  counters: {counters}",
        f"  run dir: {report['run_dir']}",
    ]
    lines += [f"  FAILURE: {failure}" for failure in report["failures"]]
    lines += [f"  warning: {warning}" for warning in report["warnings"]]
    listed = {**jobs, "orphans": report["queue"]["orphans"]}
    for name in (
        "lost",
        "ended_without_outcome",
        "unexplained_duplicates",
        "unmatched_results",
        "stalled_unexplained",
        "orphans",
    ):
        if listed[name]["ids"]:
            lines.append(f"  {name}: {' '.join(listed[name]['ids'])}")
    return "\n".join(lines)
