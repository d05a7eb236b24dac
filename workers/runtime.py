"""State one worker process shares between its supervisor and its running jobs."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from config.settings import PostroomSettings
from workers.observe.metrics import WorkerMetrics
from workers.observe.trace_gate import tracing_for
from workers.resources import Resources
from workers.store.sealing import PayloadSealer

if TYPE_CHECKING:
    from workers.observe.tracing import Tracing


@dataclass
class Runtime:
    """Per-process state: who this worker is and whether it is shutting down."""

    settings: PostroomSettings
    worker_id: str = field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    )
    # Set just before the supervisor cancels the jobs still running after the grace period:
    # a job cancelled then is put back without spending a try.
    shutting_down: bool = False
    # The services the tasks share, closed by the supervisor once no job runs.
    resources: Resources = field(init=False)
    # This process's Prometheus metrics (served by the supervisor with `metrics_port`).
    metrics: WorkerMetrics = field(default_factory=WorkerMetrics)
    # Seals and opens the jobs' payloads (store/sealing.py); built at start, so a malformed
    # key stops the process there, naming the variable.
    sealer: PayloadSealer = field(init=False)
    # This process's tracing (POSTROOM_TRACING), None when off: every run is a span then.
    tracing: Tracing | None = field(init=False)

    def __post_init__(self) -> None:
        self.resources = Resources(self.settings)
        self.sealer = PayloadSealer.of_settings(self.settings)
        self.tracing = tracing_for(self.settings, worker=True)
