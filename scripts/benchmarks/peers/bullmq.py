"""BullMQ's Python port, run by this module's `__main__` (bullmq has no worker CLI).

Concurrency 100 on uvloop; everything else is bullmq's default (completed jobs are kept,
30 s locks renewed every 15 s, stalled-job checks). `Queue.addBulk` is its bulk enqueue.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Sequence
from typing import Any

from bullmq import Queue, Worker

from benchmarks import jobs
from benchmarks.jobs import JobSpec

BULK = True
VERSIONS = ("bullmq", "redis", "uvloop")
QUEUE = "bench"


async def process(job: Any, token: str) -> None:
    """The one processor bullmq calls; it dispatches on the job's name."""
    if job.name == jobs.SLEEP:
        await asyncio.sleep(job.data["seconds"])
        await jobs.done()
    elif job.name == jobs.LATENCY:
        await jobs.started(job.data["enqueued_at"])
    else:
        await jobs.done()


def worker_command(processes: int) -> tuple[list[str], dict[str, str]]:
    if processes != 1:
        raise ValueError("the bullmq runner runs one process")
    return ["-m", __name__], {}


async def connect() -> Queue:
    return Queue(QUEUE, {"connection": jobs.redis_url()})


async def close(queue: Queue) -> None:
    await queue.close()


async def enqueue_one(queue: Queue, job: JobSpec) -> None:
    await queue.add(job.task, job.kwargs())


async def enqueue_bulk(queue: Queue, batch: Sequence[JobSpec]) -> None:
    await queue.addBulk([{"name": job.task, "data": job.kwargs()} for job in batch])


async def serve() -> None:
    """Run a Worker until SIGTERM or SIGINT, then close it gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    worker = Worker(
        QUEUE, process, {"connection": jobs.redis_url(), "concurrency": jobs.concurrency()}
    )
    await stop.wait()
    await worker.close()


def main() -> None:
    import uvloop

    uvloop.run(serve())


if __name__ == "__main__":
    main()
