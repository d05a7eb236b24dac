"""Enqueues the soak's jobs at a steady rate, each under an explicit id; an enqueue that
raised (Redis away) may or may not have been written, so it is repeated with the same id
until Redis acknowledges it: the README's answer. Only acknowledged jobs enter the ledger."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from chaos.ledger import LedgerFile
from chaos.task import soak
from workers.client import PostroomClient
from workers.connection.transient import is_transient


def job_id(n: int) -> str:
    return f"c{n}"


@dataclass(slots=True)
class Enqueued:
    acknowledged: int = 0
    created: int = 0  # the rest were found already written by an attempt that raised
    retries: int = 0
    seconds: float = 0.0


async def _enqueue_one(
    client: PostroomClient, n: int, work_ms: float, patience: float
) -> tuple[bool, int]:
    """(created, attempts), repeating through transient errors for up to `patience` s."""
    delay, attempts, deadline = 0.05, 0, time.monotonic() + patience
    while True:
        attempts += 1
        try:
            job = await client.enqueue(soak.call(work_ms), job_id=job_id(n))
        except Exception as exc:
            if not is_transient(exc) or time.monotonic() > deadline:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
            continue
        return job.created, attempts


async def enqueue_all(
    client: PostroomClient,
    jobs: int,
    rate: float,
    work_ms: float,
    ledger: LedgerFile,
    patience: float = 120.0,
) -> Enqueued:
    """Job n is due at n / rate s after the start; one behind schedule goes at once."""
    done = Enqueued()
    start = time.monotonic()
    for n in range(jobs):
        wait = start + n / rate - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        created, attempts = await _enqueue_one(client, n, work_ms, patience)
        ledger.append(k="ack", job=job_id(n), created=created, attempts=attempts)
        done.acknowledged += 1
        done.created += created
        done.retries += attempts - 1
    done.seconds = time.monotonic() - start
    return done
