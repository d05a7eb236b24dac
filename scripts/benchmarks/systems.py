"""The systems under test: which adapter module, which virtualenv, and how each is configured.

Kept free of library imports: the orchestrator reads it without any peer installed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class System:
    name: str
    module: str
    # The virtualenv (relative to the repository) whose interpreter runs this system.
    venv: str
    # Whether it has a bulk enqueue (the adapter's BULK, known here without importing it).
    bulk: bool
    # How it is configured, for the report.
    setup: str


SYSTEMS: dict[str, System] = {
    s.name: s
    for s in (
        System(
            "postroom",
            "benchmarks.peers.postroom",
            ".bench-venv",
            True,
            "`python -m workers worker --queues message-delivery`, "
            "POSTROOM_QUEUES__MESSAGE_DELIVERY__CONCURRENCY=100, otherwise postroom's defaults "
            "(uvloop, orjson, poll_delay 0.05 s, 15 s leases, INFO logging)",
        ),
        System(
            "arq-default",
            "benchmarks.peers.arq_default",
            ".bench-venv",
            False,
            "arq's CLI with arq's defaults (asyncio loop, pickle, poll_delay 0.5 s, "
            "queue_read_limit 500, INFO log line per job) except max_jobs=100",
        ),
        System(
            "arq-tuned",
            "benchmarks.peers.arq_tuned",
            ".bench-venv",
            False,
            "arq on uvloop, orjson, poll_delay 0.01 s, queue_read_limit 1000, max_jobs=100, "
            "INFO logging as arq's CLI",
        ),
        System(
            "saq",
            "benchmarks.peers.saq",
            ".bench-venv",
            False,
            "SAQ Redis queue (BLMOVE), concurrency 100, uvloop, WARNING logging as its CLI",
        ),
        System(
            "taskiq",
            "benchmarks.peers.taskiq",
            ".bench-venv-taskiq",
            False,
            "Taskiq CLI, taskiq-redis RedisStreamBroker (XREADGROUP 100, ack after run), "
            "--workers 1 --max-async-tasks 100, uvloop, no result backend",
        ),
        System(
            "streaq",
            "benchmarks.peers.streaq",
            ".bench-venv",
            True,
            "streaq CLI (Redis streams), concurrency 100, uvloop, pickle, INFO logging",
        ),
        System(
            "bullmq",
            "benchmarks.peers.bullmq",
            ".bench-venv-bullmq",
            True,
            "bullmq Worker, concurrency 100, uvloop, its defaults (completed jobs kept)",
        ),
    )
}
