"""The chaos soak (scripts/soak): a short run of it against real worker processes and a
Redis it kills, and its accounting, which must catch what it is there to catch."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict
from typing import Any

import orjson
from chaos.accounting import account
from chaos.ledger import Interval, Ledger, Run
from chaos.snapshot import QUEUE, Snapshot
from chaos.worker_logs import Recovery

from config.queues import QueueName
from tests.conftest import ROOT
from workers.store.dead_letter import DeadLetter
from workers.store.job_status import JobInfo, JobState
from workers.store.queue_stats import QueueStats


def test_chaos_soak_short_run_loses_nothing() -> None:
    """600 jobs at 100/s, a worker killed every 2 s, a stop past the lease, one Redis
    restart: every acknowledged job is accounted for, none lost or run twice unexplained."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "scripts")}
    flags = ["--jobs", "600", "--rate", "100", "--kill-every", "2", "--redis-restarts", "1"]
    done = subprocess.run(
        [sys.executable, "-m", "chaos.run", *flags, "--stops", "1", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=110,
        check=False,
    )
    assert done.stdout, done.stderr.decode()[-3000:]
    report: dict[str, Any] = orjson.loads(done.stdout)
    jobs = report["jobs"]
    assert (jobs["lost"]["count"], jobs["unexplained_duplicates"]["count"]) == (0, 0), report
    assert report["queue"]["orphans"]["count"] == 0, report
    assert jobs["stalled_unexplained"]["count"] == 0, report
    assert jobs["ended_without_outcome"]["count"] == 0, report
    assert jobs["acknowledged"] == 600
    settled = jobs["completed"] + sum(jobs["dead_lettered"].values())
    assert settled + jobs["still_queued"]["count"] == 600
    assert report["chaos"]["redis_restarts"] == 1 and report["chaos"]["stops"] == 1
    assert report["chaos"]["worker_kills"] >= 1
    assert report["ok"] and done.returncode == 0, report


def _info(job_id: str, state: JobState, run: str | None = None) -> JobInfo:
    result = {"run": run, "pid": 0} if run else None
    return JobInfo(job_id=job_id, state=state, queue=QueueName.DELIVERY, result=result)


def _stalled(job_id: str) -> DeadLetter:
    return DeadLetter(
        job_id=job_id,
        task="chaos.soak",
        queue=QUEUE,
        payload={},
        reason="stalled",
        tries=1,
        errors=[],
        enqueued_at=0.0,
        failed_at=9.0,
    )


def _snapshot(infos: dict[str, JobInfo | None], orphans: list[str]) -> Snapshot:
    stats = QueueStats(
        queue=QUEUE, waiting=0, active=0, delayed=len(orphans), paused=False, dead_lettered_now=0
    )
    stalled = [job for job, info in infos.items() if info and info.state is JobState.DEAD_LETTERED]
    return Snapshot(
        infos=infos,
        dead_letters={job: _stalled(job) for job in stalled},
        queue_entries=orphans,
        orphans=orphans,
        stats=stats,
    )


def test_chaos_accounting_tells_explained_duplicates_from_losses() -> None:
    """A rerun after its worker's kill or stop is explained; one by a worker that lived on
    is not; a job with no trace is lost; a queue entry with no record is an orphan; a stall
    is explained by four recoveries of killed workers' runs, not by recoveries of runs whose
    worker lived (a lease lapsed in a Redis outage)."""
    runs: dict[str, list[Run]] = defaultdict(list)
    runs["once"] = [Run("once", "r1", 10, 1, start=1.0, end=1.1)]
    runs["killed"] = [
        Run("killed", "r2", 11, 1, start=1.0, end=1.1),  # its worker killed before its finish
        Run("killed", "r3", 12, 1, start=5.0, end=5.1),
    ]
    runs["stopped"] = [
        Run("stopped", "r4", 13, 1, start=1.0, end=9.0),  # woke after its job was taken over
        Run("stopped", "r5", 12, 1, start=6.0, end=6.1),
    ]
    runs["twice"] = [
        Run("twice", "r6", 12, 1, start=1.0, end=1.1),  # pid 12 was never killed nor stopped
        Run("twice", "r7", 10, 1, start=5.0, end=5.1),
    ]
    jobs = ("once", "killed", "stopped", "twice", "lost", "stalled-by-kills", "stalled-by-outage")
    kills = [Interval(pid, float(pid), float(pid)) for pid in (20, 21, 22, 23)]
    ledger = Ledger(
        acknowledged={job: 0.5 for job in jobs},
        runs=runs,
        kills=[Interval(11, 1.2, 1.2), Interval(10, 0.2, 0.2), *kills],
        stops=[Interval(13, 1.05, 8.9)],
    )
    recoveries = {
        "stalled-by-kills": [Recovery(float(pid) + 3, pid) for pid in (20, 21, 22, 23)],
        # pid 12 lived on; pid 23 was killed only after its run was taken over
        "stalled-by-outage": [
            Recovery(4.0, 12),
            *(Recovery(p + 3.0, p) for p in (20, 21)),
            Recovery(5.0, 23),
        ],
    }
    infos: dict[str, JobInfo | None] = {
        "once": _info("once", JobState.COMPLETE, "r1"),
        "killed": _info("killed", JobState.COMPLETE, "r3"),
        "stopped": _info("stopped", JobState.COMPLETE, "r5"),
        "twice": _info("twice", JobState.COMPLETE, "r7"),
        "lost": None,
        "stalled-by-kills": _info("stalled-by-kills", JobState.DEAD_LETTERED),
        "stalled-by-outage": _info("stalled-by-outage", JobState.DEAD_LETTERED),
    }
    acc = account(ledger, _snapshot(infos, ["ghost"]), recoveries, max_recoveries=3)
    assert (acc.completed_once, acc.completed_again_after_kill) == (1, 1)
    assert acc.completed_again_after_stop == 1
    assert acc.unexplained_duplicates == ["twice"]
    assert acc.lost == ["lost"]
    assert acc.orphans == ["ghost"]
    assert acc.unknown_entries == ["ghost"]
    assert acc.dead_lettered == {"stalled": 2}
    assert acc.stalled_unexplained == ["stalled-by-outage"]
    assert len(acc.failures()) == 4
