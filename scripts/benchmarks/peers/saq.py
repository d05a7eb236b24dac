"""SAQ with its Redis queue: BLMOVE dequeue, concurrency 100, uvloop; otherwise its defaults.

Run through this module's `__main__`, which does what `saq SETTINGS` does (WARNING logging,
`saq.worker.start`) after installing uvloop. SAQ has no bulk enqueue (`Queue.map` waits for
the results; `Queue.batch` only groups jobs for abort).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from saq import Queue

from benchmarks import jobs
from benchmarks.jobs import JobSpec

BULK = False
VERSIONS = ("saq", "redis", "uvloop")
QUEUE = "bench"


async def bench_noop(ctx: dict[str, Any]) -> None:
    await jobs.done()


async def bench_sleep(ctx: dict[str, Any], *, seconds: float) -> None:
    await asyncio.sleep(seconds)
    await jobs.done()


async def bench_latency(ctx: dict[str, Any], *, enqueued_at: float) -> None:
    await jobs.started(enqueued_at)


def settings() -> dict[str, Any]:
    """The worker settings `saq.worker.start` imports (a callable is allowed)."""
    return {
        "queue": Queue.from_url(jobs.redis_url(), name=QUEUE),
        "functions": [bench_noop, bench_sleep, bench_latency],
        "concurrency": jobs.concurrency(),
    }


def worker_command(processes: int) -> tuple[list[str], dict[str, str]]:
    if processes != 1:
        raise ValueError("the SAQ runner runs one process")
    return ["-m", __name__], {}


async def connect() -> Queue:
    queue = Queue.from_url(jobs.redis_url(), name=QUEUE)
    await queue.connect()
    return queue


async def close(queue: Queue) -> None:
    await queue.disconnect()


async def enqueue_one(queue: Queue, job: JobSpec) -> None:
    await queue.enqueue(job.task, **job.kwargs())


async def enqueue_bulk(queue: Queue, batch: Sequence[JobSpec]) -> None:
    raise NotImplementedError("SAQ has no bulk enqueue")


def main() -> None:
    import uvloop
    from saq.worker import start

    logging.basicConfig(level=logging.WARNING)
    # start() builds its loop with asyncio.new_event_loop(), which asks the policy.
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    start(f"{__name__}.settings")


if __name__ == "__main__":
    main()
