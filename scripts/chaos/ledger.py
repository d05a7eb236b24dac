"""The soak's ledger: JSON lines in files outside Redis, so it survives every Redis loss.

Each writer appends to a file of its own (a worker process to `runs-<pid>.jsonl`, the
enqueuer to `enqueued.jsonl`, the chaos to `events.jsonl`) with one `write` per line on an
O_APPEND descriptor: a line is in the kernel the moment the call returns, so a SIGKILL right
after it loses nothing, and no two writers interleave.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

# The environment variable naming the ledger's directory (set for the worker processes).
LEDGER_ENV = "CHAOS_LEDGER_DIR"
ENQUEUED = "enqueued.jsonl"
EVENTS = "events.jsonl"
RUNS_GLOB = "runs-*.jsonl"


class LedgerFile:
    """One writer's append-only file of JSON lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, **row: Any) -> None:
        os.write(self._fd, orjson.dumps({"t": time.time(), **row}) + b"\n")

    def close(self) -> None:
        os.close(self._fd)


def runs_file(directory: Path) -> LedgerFile:
    """This process's file of job runs."""
    return LedgerFile(directory / f"runs-{os.getpid()}.jsonl")


@dataclass(frozen=True, slots=True)
class Run:
    """One execution of a job's body: started, and ended (`end`) or failed (`failed`)."""

    job_id: str
    run: str  # the execution's own id, returned as the job's result when it ends
    pid: int
    job_try: int
    start: float
    end: float | None = None
    failed: float | None = None


@dataclass(frozen=True, slots=True)
class Interval:
    pid: int
    start: float
    end: float


@dataclass(slots=True)
class Ledger:
    """Everything the ledger recorded, read back after the run."""

    acknowledged: dict[str, float] = field(default_factory=dict)  # job id -> when
    runs: dict[str, list[Run]] = field(default_factory=lambda: defaultdict(list))
    kills: list[Interval] = field(default_factory=list)  # a worker SIGKILLed (start == end)
    stops: list[Interval] = field(default_factory=list)  # a worker SIGSTOPped, then resumed
    redis_outages: list[tuple[float, float]] = field(default_factory=list)

    def kill_times(self, pid: int) -> list[float]:
        return [k.start for k in self.kills if k.pid == pid]


def _lines(path: Path) -> list[dict[str, Any]]:
    """A file's rows; a torn last line (a writer killed mid-write) is skipped."""
    rows = []
    for line in path.read_bytes().splitlines():
        try:
            rows.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            continue
    return rows


def _runs(directory: Path) -> dict[str, list[Run]]:
    started: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob(RUNS_GLOB)):
        for row in _lines(path):
            if row["k"] == "start":
                started[row["run"]] = {
                    "job_id": row["job"],
                    "run": row["run"],
                    "pid": row["pid"],
                    "job_try": row["try"],
                    "start": row["t"],
                }
            elif row["run"] in started:
                started[row["run"]]["end" if row["k"] == "end" else "failed"] = row["t"]
    runs: dict[str, list[Run]] = defaultdict(list)
    for fields in sorted(started.values(), key=lambda f: f["start"]):
        runs[fields["job_id"]].append(Run(**fields))
    return runs


def read_ledger(directory: Path) -> Ledger:
    ledger = Ledger(runs=_runs(directory))
    if (directory / ENQUEUED).exists():
        for row in _lines(directory / ENQUEUED):
            ledger.acknowledged[row["job"]] = row["t"]
    stopped: dict[int, float] = {}
    down: float | None = None
    for row in _lines(directory / EVENTS) if (directory / EVENTS).exists() else []:
        kind = row["k"]
        if kind == "kill":
            ledger.kills.append(Interval(row["pid"], row["t"], row["t"]))
        elif kind == "stop":
            stopped[row["pid"]] = row["t"]
        elif kind == "resume":
            ledger.stops.append(Interval(row["pid"], stopped.pop(row["pid"]), row["t"]))
        elif kind == "redis-kill":
            down = row["t"]
        elif kind == "redis-up" and down is not None:
            ledger.redis_outages.append((down, row["t"]))
            down = None
    return ledger
