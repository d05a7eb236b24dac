"""The soak's job: a Redis call of its own (as real tasks make, and which fails while Redis
is away), a little work, and a ledger line at its start, its end and its failure.

Worker processes import this module (`POSTROOM_TASK_MODULES=chaos.task`); the ledger's
directory comes from `CHAOS_LEDGER_DIR`.
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from pathlib import Path

from pydantic import BaseModel

from chaos.ledger import LEDGER_ENV, LedgerFile, runs_file
from config.queues import QueueName
from workers import JobContext, task
from workers.store.keys import Keys

_ledger: LedgerFile | None = None


def _runs_ledger() -> LedgerFile:
    """This process's ledger file, opened at its first run."""
    global _ledger
    if _ledger is None:
        directory = os.environ.get(LEDGER_ENV)
        if not directory:
            raise RuntimeError(f"{LEDGER_ENV} is not set: the soak task has no ledger")
        _ledger = runs_file(Path(directory))
    return _ledger


class Executed(BaseModel):
    """Which execution completed the job: matched against the ledger's runs."""

    run: str
    pid: int


@task(queue=QueueName.DELIVERY, name="chaos.soak")
async def soak(ctx: JobContext, work_ms: float) -> Executed:
    ledger = _runs_ledger()
    run, job_id = uuid.uuid4().hex[:12], ctx["job_id"]
    ledger.append(k="start", job=job_id, run=run, pid=os.getpid(), **{"try": ctx["job_try"]})
    try:
        keys = Keys(ctx["settings"].key_prefix).of(ctx["queue"])
        await ctx["redis"].exists(keys.job(job_id))
        await asyncio.sleep(random.uniform(0, 2 * work_ms) / 1000)
    except BaseException as exc:
        ledger.append(k="failed", job=job_id, run=run, error=type(exc).__name__)
        raise
    ledger.append(k="end", job=job_id, run=run)
    return Executed(run=run, pid=os.getpid())
