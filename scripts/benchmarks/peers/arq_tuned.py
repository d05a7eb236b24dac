"""arq 0.28 tuned as far as its settings go: uvloop, orjson, poll_delay 0.01 s, read limit 1000.

This is the "bare arq" postroom is built on, without postroom's guarantees (leases, retries
with backoff, dead letters, priorities): the baseline for postroom's overhead. It logs like
arq's CLI (one INFO line per job start and end), as postroom does by default. Run through this
module's own `__main__`, because arq's CLI cannot install uvloop before it builds the Worker.
"""

from __future__ import annotations

import asyncio
import logging.config
from collections.abc import Sequence
from typing import Any, ClassVar

import orjson
from arq.connections import ArqRedis

from benchmarks import jobs
from benchmarks.jobs import JobSpec
from benchmarks.peers import _arq

BULK = False
VERSIONS = ("arq", "redis", "uvloop", "orjson")


class WorkerSettings:
    functions: ClassVar[list[Any]] = _arq.FUNCTIONS
    queue_name = _arq.QUEUE
    redis_settings = _arq.redis_settings()
    max_jobs = jobs.concurrency()
    poll_delay = 0.01
    queue_read_limit = 1000
    job_serializer = staticmethod(orjson.dumps)
    job_deserializer = staticmethod(orjson.loads)


def worker_command(processes: int) -> tuple[list[str], dict[str, str]]:
    if processes != 1:
        raise ValueError("the arq-tuned runner runs one process")
    return ["-m", __name__], {}


async def connect() -> ArqRedis:
    pool: ArqRedis = await _arq.connect(orjson.dumps)
    return pool


async def close(client: ArqRedis) -> None:
    await _arq.close(client)


async def enqueue_one(client: ArqRedis, job: JobSpec) -> None:
    await _arq.enqueue_one(client, job)


async def enqueue_bulk(client: ArqRedis, batch: Sequence[JobSpec]) -> None:
    raise NotImplementedError("arq has no bulk enqueue")


def main() -> None:
    import uvloop
    from arq.logs import default_log_config
    from arq.worker import run_worker

    logging.config.dictConfig(default_log_config(verbose=False))
    # arq's Worker adopts the current loop when it is built (postroom does the same).
    asyncio.set_event_loop(uvloop.new_event_loop())
    run_worker(WorkerSettings)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
