"""Every acknowledged job accounted for, from the ledger (which survives Redis) and what
Redis holds after the drain.

A job is, exactly one of: completed once; completed again after its worker was killed or
stopped (an explained duplicate: each execution other than the one whose result Redis kept
ran on a worker SIGKILLed, or SIGSTOPped, after that execution began and before the
completing one began: the job had no completion before it was run again); completed more
than once otherwise (an unexplained duplicate); dead-lettered (with its reason); still
queued (waiting, retrying or running); ended without an outcome (a failed result and no
dead letter, which the runtime promises never to leave); or lost (no trace in Redis).

A `stalled` dead letter is explained when at least max_recoveries + 1 of its job's
recoveries took over a run whose worker had been SIGKILLed (worker_logs.py names the
process of each run taken over); one that kills do not explain was counted from lapsed
leases that were not deaths, such as those of a Redis restart.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chaos.ledger import Ledger, Run
from chaos.snapshot import Snapshot
from chaos.worker_logs import Recovery
from workers.store.job_status import JobInfo, JobState

_QUEUED = {JobState.QUEUED, JobState.DEFERRED, JobState.RUNNING, JobState.RETRYING}


@dataclass(slots=True)
class Accounting:
    acknowledged: int = 0
    completed_once: int = 0
    completed_again_after_kill: int = 0
    completed_again_after_stop: int = 0
    dead_lettered: Counter[str] = field(default_factory=Counter)
    still_queued: list[str] = field(default_factory=list)
    ended_without_outcome: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    unexplained_duplicates: list[str] = field(default_factory=list)
    unmatched_results: list[str] = field(default_factory=list)  # no ledger run wrote them
    stalled_unexplained: list[str] = field(default_factory=list)
    executions: int = 0  # job bodies that ran to their end
    failed_tries: int = 0  # job bodies that raised (their Redis call during an outage)
    orphans: list[str] = field(default_factory=list)
    unknown_entries: list[str] = field(default_factory=list)  # queue ids never acknowledged
    counters: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def completed(self) -> int:
        """Jobs whose result says complete, however many times they ran."""
        return (
            self.completed_once
            + self.completed_again_after_kill
            + self.completed_again_after_stop
            + len(self.unexplained_duplicates)
            + len(self.unmatched_results)
        )

    def warnings(self) -> list[str]:
        """Counters that disagree with the jobs' states: reported, not failed on (a counter
        is bookkeeping; the jobs' states are the outcome)."""
        return [
            f"queue counter {name} is {pair['counter']}, the jobs say {pair['jobs']}"
            for name, pair in self.counters.items()
            if "jobs" in pair and pair["counter"] != pair["jobs"]
        ]

    def failures(self) -> list[str]:
        """What makes the soak fail, one line per kind found."""
        found = {
            "lost jobs": len(self.lost),
            "jobs ended without an outcome": len(self.ended_without_outcome),
            "unexplained duplicates": len(self.unexplained_duplicates),
            "results no execution in the ledger wrote": len(self.unmatched_results),
            "orphan queue entries": len(self.orphans),
            "stalled dead letters not explained by worker kills": len(self.stalled_unexplained),
        }
        return [f"{n} {what}" for what, n in found.items() if n]


def _why_again(run: Run, completing: Run, ledger: Ledger) -> str | None:
    """'kill' or 'stop' if `run`'s worker was killed or stopped while it had the job, before
    the completing run began; None if nothing explains why `run` did not complete it."""
    if any(run.start <= t <= completing.start for t in ledger.kill_times(run.pid)):
        return "kill"
    stops = (s for s in ledger.stops if s.pid == run.pid)
    if any(run.start <= s.start <= completing.start for s in stops):
        return "stop"
    return None


def _completed(job_id: str, info: JobInfo, ledger: Ledger, acc: Accounting) -> None:
    ended = [r for r in ledger.runs.get(job_id, []) if r.end is not None]
    result: Any = info.result
    winner = result.get("run") if isinstance(result, dict) else None
    completing = next((r for r in ended if r.run == winner), None)
    if completing is None:
        acc.unmatched_results.append(job_id)
        return
    reasons = {_why_again(r, completing, ledger) for r in ended if r is not completing}
    if not reasons:
        acc.completed_once += 1
    elif None in reasons:
        acc.unexplained_duplicates.append(job_id)
    elif "kill" in reasons:
        acc.completed_again_after_kill += 1
    else:
        acc.completed_again_after_stop += 1


def _stall_explained(recoveries: list[Recovery], ledger: Ledger, max_recoveries: int) -> bool:
    """At least max_recoveries + 1 recoveries took over a run of a worker killed before."""
    deaths = sum(
        r.lost_pid is not None and any(t <= r.at for t in ledger.kill_times(r.lost_pid))
        for r in recoveries
    )
    return deaths > max_recoveries


def _counters(snapshot: Snapshot, acc: Accounting) -> dict[str, dict[str, int]]:
    """The queue's counters beside what the ledger and the jobs' states say they count."""
    stats = snapshot.stats
    return {
        "completed": {"counter": stats.completed, "jobs": acc.completed},
        "dead_lettered": {"counter": stats.dead_lettered, "jobs": sum(acc.dead_lettered.values())},
        "failed": {"counter": stats.failed, "ledger_failed_tries": acc.failed_tries},
        "retried": {"counter": stats.retried, "ledger_failed_tries": acc.failed_tries},
    }


def account(
    ledger: Ledger,
    snapshot: Snapshot,
    recoveries: Mapping[str, list[Recovery]],
    max_recoveries: int,
) -> Accounting:
    acc = Accounting(acknowledged=len(ledger.acknowledged))
    for runs in ledger.runs.values():
        acc.executions += sum(r.end is not None for r in runs)
        acc.failed_tries += sum(r.failed is not None for r in runs)
    for job_id in ledger.acknowledged:
        info = snapshot.infos.get(job_id)
        if info is None:
            acc.lost.append(job_id)
        elif info.state is JobState.COMPLETE:
            _completed(job_id, info, ledger, acc)
        elif info.state is JobState.DEAD_LETTERED:
            letter = snapshot.dead_letters.get(job_id)
            reason = letter.reason if letter is not None else "unlisted"
            acc.dead_lettered[reason] += 1
            explained = _stall_explained(recoveries.get(job_id, []), ledger, max_recoveries)
            if reason == "stalled" and not explained:
                acc.stalled_unexplained.append(job_id)
        elif info.state in _QUEUED:
            acc.still_queued.append(job_id)
        else:
            acc.ended_without_outcome.append(job_id)
    acc.orphans = snapshot.orphans
    acc.unknown_entries = [i for i in snapshot.queue_entries if i not in ledger.acknowledged]
    acc.counters = _counters(snapshot, acc)
    return acc
