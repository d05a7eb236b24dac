"""A run's outcome as one value: decided by the job's execution (execution.py), written by its
worker (worker.py), counted and logged by its observer (observation.py), which needs no more of
the execution than this."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from workers.dead_letter import DeadLetter, TryError

# How a run ended, for the queue's counters (see QueueWorker.end_of_run); a run put back by a
# shutdown has none.
Outcome = Literal["completed", "retried", "dead_lettered", "cancelled"]


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """How a run ended, decided once: the worker writes it with all its bookkeeping in one
    script call (worker_scripts.FINISH), and its end line is logged from it."""

    kind: Outcome
    detail: str = ""  # what the end line adds: the next try, a dead letter's reason
    error: TryError | None = None  # the failed try's, kept with the job or its dead letter
    letter: DeadLetter | None = None  # for "dead_lettered": the letter, its errors added then


COMPLETED = RunOutcome("completed")
