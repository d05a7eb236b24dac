"""Every Redis key postroom writes: one module owns the layout.

Each queue's keys, its jobs' keys included, share one hash tag, `{<prefix>:<queue>}`, so that
everything a queue's scripts touch lives in one Redis Cluster slot, different queues can land
on different shards, and two deployments with different prefixes never see each other's
keys. arq's own layout (`arq:job:<id>`, `arq:result:<id>`, ...) is global: one prefix for every
deployment and no room for a hash tag, so postroom keeps arq's *encoding* of a job and a result
but not its key names. A job id is therefore unique per queue, as in BullMQ or Celery.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from config.queues import QueueName
from config.settings import PostroomSettings


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """The keys of one queue (or one partition of it) and of the jobs in it, all under its
    hash tag."""

    queue_name: QueueName
    tag: str  # "{<prefix>:<queue>}", or "{<prefix>:<queue>#<n>}" for partition n > 0
    partition: int = 0

    @property
    def queue(self) -> str:
        """Sorted set of the queue's jobs: ready ones in their priority bands, waiting ones
        scored by when they are due (priority.py). A job stays in it until it ends."""
        return f"{self.tag}:queue"

    @property
    def wake(self) -> str:
        """List an idle worker blocks on; an enqueue of a ready job leaves one token."""
        return f"{self.tag}:wake"

    @property
    def active(self) -> str:
        """Sorted set of the queue's running jobs, scored by when their lease runs out."""
        return f"{self.tag}:active"

    @property
    def results(self) -> str:
        """Sorted set of the jobs whose results are kept, scored by when they finished."""
        return f"{self.tag}:results"

    @property
    def stats(self) -> str:
        """Hash of the queue's lifetime counters (completed, failed, retried, ...)."""
        return f"{self.tag}:stats"

    @property
    def cancel_requests(self) -> str:
        """Sorted set of running jobs a user cancelled, for their workers to stop."""
        return f"{self.tag}:cancel"

    @property
    def paused(self) -> str:
        """Set while the queue is paused: the first partition's key stands for every one."""
        return f"{self.tag}:paused"

    @property
    def partitions_used(self) -> str:
        """The most partitions the queue ever had (first partition's key): workers serve them
        all, so lowering `partitions` strands no job (Keys.partitions)."""
        return f"{self.tag}:partitions"

    @property
    def rate_bucket(self) -> str:
        """Hash of the queue's rate-limit bucket (first partition's key: one bucket for the
        whole queue, claimed from in its own call; workers/store/rate_limit.py)."""
        return f"{self.tag}:rate"

    @property
    def dead_index(self) -> str:
        """Sorted set of the queue's dead-lettered job ids, scored by when they died."""
        return f"{self.tag}:dead"

    def job(self, job_id: str) -> str:
        """The job's payload (arq's encoding), kept until the job ends."""
        return f"{self.tag}:job:{job_id}"

    def result(self, job_id: str) -> str:
        """The job's result (arq's encoding), kept `keep_result` seconds."""
        return f"{self.tag}:result:{job_id}"

    def tries(self, job_id: str) -> str:
        """How many tries the job has started (counted at each claim)."""
        return f"{self.tag}:tries:{job_id}"

    def running(self, job_id: str) -> str:
        """Set while a job runs, to its run's lease token (the lease's end is the job's score
        in the active set); found with that lease lapsed, the run's worker died."""
        return f"{self.tag}:running:{job_id}"

    def recoveries(self, job_id: str) -> str:
        return f"{self.tag}:recoveries:{job_id}"

    def progress(self, job_id: str) -> str:
        """The last progress a running job reported, kept as long as its result."""
        return f"{self.tag}:progress:{job_id}"

    def rate_limited(self, job_id: str) -> str:
        """How often the job was deferred by its provider's 429 (execution.py bounds it)."""
        return f"{self.tag}:rate-limited:{job_id}"

    def try_errors(self, job_id: str) -> str:
        """List of the errors of a job's failed tries, kept until it succeeds or dies."""
        return f"{self.tag}:errors:{job_id}"

    def dead_record(self, job_id: str) -> str:
        return f"{self.tag}:dead-letter:{job_id}"

    def cron_tick(self, task: str, tick_ms: int) -> str:
        """Marks a cron tick as enqueued, so every process enqueues it only once."""
        return f"{self.tag}:cron:{task}:{tick_ms}"

    def checkpoint(self, name: str) -> str:
        """A marker written in the same transaction as a bulk enqueue into this queue."""
        return f"{self.tag}:checkpoint:{name}"


@dataclass(frozen=True, slots=True)
class RateKeys:
    """A named rate limit's bucket (a hash: its GCRA state and recent starts) and its held
    slots (a sorted set: each deferred job's reserved start, by job id)."""

    bucket: str
    held: str


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names under one deployment's prefix, so deployments and tests can share a Redis.

    `partitions` is each partitioned queue's partition count (config.queues `partitions`):
    a job goes to partition `crc32(partition key) % count` (its job id unless it names
    another key), each partition under a hash tag of its own, so one queue spreads over many
    Redis Cluster shards. The first partition keeps the unpartitioned queue's tag, so a
    queue of one partition is laid out as before.
    """

    prefix: str
    partitions: Mapping[QueueName, int] = field(default_factory=dict)

    @classmethod
    def of_settings(cls, settings: PostroomSettings) -> Keys:
        """The deployment's keys: its prefix and its queues' partition counts."""
        counts = {q: c.partitions for q, c in settings.queues.items() if c.partitions > 1}
        return cls(settings.key_prefix, counts)

    def of(self, queue: QueueName, partition: int = 0) -> QueueKeys:
        if partition == 0:
            return QueueKeys(queue, f"{{{self.prefix}:{queue.value}}}")
        return QueueKeys(queue, f"{{{self.prefix}:{queue.value}#{partition}}}", partition)

    def count(self, queue: QueueName) -> int:
        return self.partitions.get(queue, 1)

    def route(self, queue: QueueName, partition_key: str) -> QueueKeys:
        """The partition a job of `queue` with this partition key goes to."""
        count = self.count(queue)
        if count == 1:
            return self.of(queue)
        return self.of(queue, zlib.crc32(partition_key.encode()) % count)

    def partitions_of(self, queue: QueueName, count: int | None = None) -> list[QueueKeys]:
        """Every partition of `queue`: its configured count, or `count` if higher (the most
        it ever had: a lowered count still drains the partitions it no longer fills)."""
        n = max(self.count(queue), count or 0)
        return [self.of(queue, p) for p in range(n)]

    def every_partition(self, queues: Iterable[QueueName] = tuple(QueueName)) -> list[QueueKeys]:
        return [qk for queue in queues for qk in self.partitions_of(queue)]

    def health(self, queue: QueueName, worker_id: str) -> str:
        return f"{self.health_prefix()}{queue.value}:{worker_id}"

    def health_prefix(self) -> str:
        """What every queue's health keys start with (`health` = this + `<queue>:<worker>`)."""
        return f"{self.prefix}:health:"

    def rate_limit(self, name: str) -> RateKeys:
        """The keys of a named rate limit (`POSTROOM_RATE_LIMITS__<NAME>`, a task's
        `rate_limit`), under a hash tag of their own: one slot, whichever queues use it."""
        tag = f"{{{self.prefix}:rate:{name}}}"
        return RateKeys(f"{tag}:bucket", f"{tag}:held")

    def worker_hosts(self) -> str:
        """Hash of the hosts whose workers share this Redis, with what each keeps locally."""
        return f"{self.prefix}:worker-hosts"

    def control_queue(self) -> str:
        """The queue of the host worker that `arq workers.Settings` starts; it runs no jobs."""
        return f"{self.prefix}:control"

    def event_handled(self, event_id: str) -> str:
        """Set of the handlers that ran for a queued event (events/queued.py)."""
        return f"{self.prefix}:event:{event_id}:handled"

    def event_group_handled(self, group: str, event_id: str) -> str:
        """Set of the handlers of one consumer group that ran for a RabbitMQ event
        (events/rabbitmq/consumer.py): each group keeps its own log."""
        return f"{self.prefix}:event-group:{group}:{event_id}:handled"

    def event_group_claim(self, group: str, event_id: str) -> str:
        """Held (with a renewed TTL) while a consumer of `group` runs the event's handlers, so
        two deliveries of one event (a publish repeated) never run them at once."""
        return f"{self.prefix}:event-group:{group}:{event_id}:claim"

    def event_published(self, event_id: str) -> str:
        """Marker of an event RabbitMQ confirmed, so publishing it again is a no-op."""
        return f"{self.prefix}:event:{event_id}:published"

    def event_groups(self) -> str:
        """Set of the RabbitMQ consumer groups that ever ran, for the admin tools to list."""
        return f"{self.prefix}:event-groups"

    def acl_key_patterns(self) -> tuple[str, str]:
        """ACL key patterns (`~...`) that cover every key of this prefix and no other
        deployment's: the queues' hash-tagged keys and the few outside a queue."""
        return (f"{{{self.prefix}:*", f"{self.prefix}:*")

    def acl_channel_pattern(self) -> str:
        """The ACL channel pattern (`&...`) of every channel of this prefix (users, events)."""
        return f"{self.prefix}:*"

    def user_channel(self, user_id: str) -> str:
        """The pub/sub channel of one user's real-time events (tasks/realtime.py)."""
        return f"{self.prefix}:user:{user_id}"

    def audit_log(self) -> str:
        """Stream of the audit trail (audit_log.py): who did what through the admin API, the
        dashboard and the CLI, and the domain events sent to it. One key: one Cluster slot."""
        return f"{self.prefix}:audit"
