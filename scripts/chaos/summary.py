"""A Markdown table of several soaks' figures, one row per run (docs/soak-results.md)."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Any


def _dead(report: dict[str, Any]) -> str:
    dead = report["jobs"]["dead_lettered"]
    return ", ".join(f"{reason} {n}" for reason, n in sorted(dead.items())) or "0"


def _row(i: int, report: dict[str, Any]) -> str:
    jobs, chaos = report["jobs"], report["chaos"]
    cells = [
        str(i),
        "ok" if report["ok"] else "**FAILED**: " + "; ".join(report["failures"]),
        str(jobs["acknowledged"]),
        str(jobs["completed"]),
        str(jobs["lost"]["count"] + jobs["ended_without_outcome"]["count"]),
        f"{jobs['completed_again_after_kill']} / {jobs['completed_again_after_stop']}",
        str(jobs["unexplained_duplicates"]["count"]),
        _dead(report),
        str(jobs["dead_lettered"].get("stalled", 0)),
        str(report["queue"]["orphans"]["count"]),
        str(jobs["still_queued"]["count"]),
        f"{chaos['worker_kills']} / {chaos['stops']} / {chaos['redis_restarts']}",
        str(report["enqueue"]["retries"]),
        f"{report['duration_s']:.0f}",
    ]
    return "| " + " | ".join(cells) + " |"


def markdown(argv: Sequence[str], reports: Sequence[dict[str, Any]], when: str) -> str:
    failed = sum(not r["ok"] for r in reports)
    head = [
        f"`{shlex.join(['scripts/soak', *argv])}`",
        "",
        f"{len(reports)} runs in a row, {when}; {failed} failed.",
        "",
        "| run | result | acknowledged | completed | lost | again after kill / stop "
        "| unexplained duplicates | dead letters | stalled | orphans | still queued "
        "| kills / stops / Redis restarts | enqueues repeated | seconds |",
        "|---" * 14 + "|",
    ]
    return "\n".join(head + [_row(i + 1, r) for i, r in enumerate(reports)]) + "\n"
