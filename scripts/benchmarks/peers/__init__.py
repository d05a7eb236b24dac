"""One adapter module per system, all with the same surface (see `Peer`).

An adapter is imported only by interpreters of its own virtualenv (the agent, or the worker
it starts), so it may import its library at the top. Every adapter registers the same three
tasks under the names in `benchmarks.jobs` (a no-op, a 10 ms sleep, a latency probe), and
reads the Redis URL and concurrency from `BENCH_REDIS_URL` / `BENCH_CONCURRENCY`, which the
orchestrator sets for every subprocess of a measurement.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from benchmarks.jobs import JobSpec


class Peer(Protocol):
    """What `benchmarks.agent` needs from an adapter module."""

    # Whether the library has a bulk enqueue (one round trip for many jobs).
    BULK: bool
    # Distributions whose versions the results report.
    VERSIONS: tuple[str, ...]

    def worker_command(self, processes: int) -> tuple[list[str], dict[str, str]]:
        """The worker's argv after the interpreter, and the environment it adds."""
        ...

    async def connect(self) -> Any: ...

    async def close(self, client: Any) -> None: ...

    async def enqueue_one(self, client: Any, job: JobSpec) -> None: ...

    async def enqueue_bulk(self, client: Any, jobs: Sequence[JobSpec]) -> None: ...
