"""Every Redis key postroom writes besides arq's own (`arq:job:`, `arq:result:`, ...)."""

from __future__ import annotations

from dataclasses import dataclass

from config.queues import QueueName


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names under one deployment's prefix, so deployments and tests can share a Redis."""

    prefix: str

    def queue(self, queue: QueueName) -> str:
        return f"{self.prefix}:queue:{queue.value}"

    def dead_index(self, queue: QueueName) -> str:
        """Sorted set of a queue's dead-lettered job ids, scored by when they died."""
        return f"{self.prefix}:dead:{queue.value}"

    def dead_record(self, job_id: str) -> str:
        return f"{self.prefix}:dead-letter:{job_id}"

    def try_errors(self, job_id: str) -> str:
        """List of the errors of a job's failed tries, kept until it succeeds or dies."""
        return f"{self.prefix}:errors:{job_id}"

    def cron_tick(self, task: str, tick_ms: int) -> str:
        """Marks a cron tick as enqueued, so every process enqueues it only once."""
        return f"{self.prefix}:cron:{task}:{tick_ms}"

    def running(self, job_id: str) -> str:
        """Set while a job runs; found at pickup, it means the previous run's worker died."""
        return f"{self.prefix}:running:{job_id}"

    def recoveries(self, job_id: str) -> str:
        return f"{self.prefix}:recoveries:{job_id}"

    def progress(self, job_id: str) -> str:
        """The last progress a running job reported, kept as long as its result."""
        return f"{self.prefix}:progress:{job_id}"

    def stats(self, queue: QueueName) -> str:
        """Hash of a queue's lifetime counters (completed, failed, retried, ...)."""
        return f"{self.prefix}:stats:{queue.value}"

    def active(self, queue: QueueName) -> str:
        """Sorted set of a queue's running jobs, scored by when their lease runs out."""
        return f"{self.prefix}:active:{queue.value}"

    def results(self, queue: QueueName) -> str:
        """Sorted set of the jobs whose results are kept, scored by when they finished."""
        return f"{self.prefix}:results:{queue.value}"

    def cancel_requests(self, queue: QueueName) -> str:
        """Sorted set of running jobs a user cancelled, for their workers to stop."""
        return f"{self.prefix}:cancel:{queue.value}"

    def paused(self, queue: QueueName) -> str:
        return f"{self.prefix}:paused:{queue.value}"

    def health(self, queue: QueueName, worker_id: str) -> str:
        return f"{self.health_prefix()}{queue.value}:{worker_id}"

    def health_prefix(self) -> str:
        """What every queue's health keys start with (`health` = this + `<queue>:<worker>`)."""
        return f"{self.prefix}:health:"

    def control_queue(self) -> str:
        """The queue of the host worker that `arq workers.Settings` starts; it runs no jobs."""
        return f"{self.prefix}:control"
