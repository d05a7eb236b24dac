"""Runs one worker per queue in one event loop, and alone owns SIGTERM and SIGINT.

Shutdown order, and why:
1. every queue stops taking jobs at once, so no job starts that the grace period cannot cover;
2. running jobs get `shutdown_grace` seconds to finish;
3. the rest are cancelled with `Runtime.shutting_down` set, so each is put back in its queue
   without spending a try (the claim counted it; the put-back refunds it);
4. the workers close (their health keys go, their pools close).
A second signal skips the wait in step 2.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Iterable
from typing import Any

from arq.connections import ArqRedis, RedisSettings
from redis.exceptions import RedisError

from config.queues import QueueName
from workers.connection.connections import describe
from workers.connection.redis_pool import close_pool, on_cluster, open_pool
from workers.connection.refusal_grace import RefusalGrace
from workers.observe.metrics_server import MetricsServer
from workers.registry import TaskRegistry
from workers.runner.cron import CronScheduler
from workers.runner.queue_worker import build_worker
from workers.runner.waiting import sleep_unless
from workers.runner.worker import QueueWorker
from workers.runtime import Runtime
from workers.store.cancellation import REQUEST_TTL_MS
from workers.store.host_state import record_host
from workers.store.key_migration import check_old_layout
from workers.store.keys import Keys, QueueKeys

logger = logging.getLogger(__name__)

# How often a worker process refreshes its host's entry (host_state.HOST_TTL_S: its expiry).
HOST_REFRESH_S = 10.0
# Reconnect backoff after Redis is lost: doubles from the first value up to the second.
# How long a cancelled poll loop may take to unwind before it is cancelled again.
RECANCEL_AFTER_S = 1.0
RECONNECT_DELAYS = (0.5, 10.0)


class Supervisor:
    """The six (or the chosen) queues of one worker process."""

    def __init__(
        self,
        runtime: Runtime,
        registry: TaskRegistry,
        redis_settings: RedisSettings,
        queues: Iterable[QueueName] | None = None,
        *,
        burst: bool = False,
    ) -> None:
        self.runtime = runtime
        self.registry = registry
        self.redis_settings = redis_settings
        self.queues = list(queues if queues is not None else runtime.settings.worker_queues)
        self.burst = burst
        self.workers: dict[QueueName, QueueWorker] = {}
        # Whether each queue is paused, as last read from Redis (absent: not read yet).
        self.paused: dict[QueueName, bool] = {}
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        # Set by stop() once no job runs: leases are renewed until then, because jobs keep
        # running through the drain.
        self._jobs_done = asyncio.Event()
        self._maintenance: asyncio.Task[None] | None = None
        self._stop_lock = asyncio.Lock()
        self._signals = 0
        # Whether the served queues were checked for keys of the old layout (key_migration.py).
        self._old_layout_checked = False
        # When this host was last recorded among the worker hosts (host_state.py).
        self._host_recorded = 0.0
        # This process's /metrics, while run() runs, when `metrics_port` is set.
        self.metrics_server: MetricsServer | None = None
        # Refused credentials or permissions are retried this long, then stop the process.
        self.refusals = RefusalGrace(runtime.settings, f"Redis at {describe(redis_settings)}")

    async def run(self) -> None:
        """Run every queue until a signal (or, in burst mode, until the queues are empty)."""
        loop = asyncio.get_running_loop()
        previous: dict[signal.Signals, Any] = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.getsignal(sig)
            loop.add_signal_handler(sig, self.request_stop, sig)
        try:
            await self._check_hosts()
            self._serve_metrics()
            # Workers capture the running loop when built, so they are built here, inside it.
            for queue in self.queues:
                worker = build_worker(
                    queue, self.registry, self.runtime, self.redis_settings, burst=self.burst
                )
                worker.allow_pick_jobs = False  # until _maintain has read the pause flag
                self.workers[queue] = worker
            logger.info(
                "postroom worker %s serving %s",
                self.runtime.worker_id,
                ", ".join(q.value for q in self.queues),
            )
            runs = [asyncio.create_task(self._keep_running(q, w)) for q, w in self.workers.items()]
            if self.burst:
                runs.append(asyncio.create_task(self._stop_when_done(list(runs))))
            runs.append(asyncio.create_task(self._keep_scheduling()))
            self._maintenance = asyncio.create_task(self._maintain())
            runs.append(self._maintenance)
            stop = asyncio.create_task(self._stop.wait())
            gathered = asyncio.gather(*runs)
            waiters: list[asyncio.Future[Any]] = [stop, gathered]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            # Its failure is raised from `runs` below; taken here so it is not reported twice.
            gathered.add_done_callback(lambda done: done.cancelled() or done.exception())
            await self.stop()
            failures = [
                outcome
                for outcome in await asyncio.gather(*runs, return_exceptions=True)
                if isinstance(outcome, Exception)
            ]
            if failures:
                # Exit non-zero so a process manager (or --processes) restarts this worker.
                raise failures[0]
        finally:
            if self.metrics_server is not None:
                self.metrics_server.stop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
                # remove_signal_handler resets to SIG_DFL; give back what was there before.
                if sig in previous:
                    signal.signal(sig, previous[sig])

    async def _check_hosts(self) -> None:
        """Before any job starts: stop if this host and another share the Redis while
        either keeps state on its own disk (host_state.py). Redis away: checked later."""
        try:
            redis = await open_pool(self.runtime.settings, self.redis_settings)
        except (RedisError, OSError) as exc:
            logger.warning("worker hosts not checked at start (%s); checked once connected", exc)
            return
        try:
            await self._record_host(redis)
        finally:
            await close_pool(redis)

    async def _record_host(self, redis: ArqRedis) -> None:
        try:
            await record_host(redis, self.runtime.settings)
        except (RedisError, OSError) as exc:
            logger.debug("worker host not recorded: %s", exc)  # the lease renewal says so
            return
        self._host_recorded = time.monotonic()

    async def _stop_when_done(self, queue_runs: list[asyncio.Task[None]]) -> None:
        """Burst mode: stop once every queue has run dry (the maintenance loop never ends
        by itself; it renews leases until stop())."""
        await asyncio.wait(queue_runs)
        self._stop.set()

    def _serve_metrics(self) -> None:
        settings = self.runtime.settings
        if settings.metrics_port is None:
            return
        server = MetricsServer(
            self.runtime.metrics.registry, settings.metrics_host, settings.metrics_port
        )
        server.start()
        self.metrics_server = server

    def request_stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """First call: drain gracefully. Second call: stop at once."""
        self._signals += 1
        if self._signals == 1:
            logger.info(
                "%s: draining (grace %.0fs); send again to stop at once",
                sig.name,
                self.runtime.settings.shutdown_grace,
            )
            self._stop.set()
        else:
            logger.warning("%s again: stopping now, running jobs are put back", sig.name)
            self._force.set()

    async def stop(self) -> None:
        """Drain and close every Worker; safe to call more than once."""
        self._stop.set()
        async with self._stop_lock:
            if not self.workers:
                return
            workers = list(self.workers.values())
            self.workers = {}
            try:
                for worker in workers:
                    worker.allow_pick_jobs = False
                await self._wait_for_running_jobs(workers)
                self.runtime.shutting_down = True
                running = [t for w in workers for t in w.tasks.values() if not t.done()]
                if running:
                    logger.warning("putting back %d unfinished job(s)", len(running))
                for task in running:
                    task.cancel()
                await asyncio.gather(*running, return_exceptions=True)
                # No job runs any more: stop renewing leases before the pools close under it.
                self._jobs_done.set()
                if self._maintenance is not None:
                    await asyncio.gather(self._maintenance, return_exceptions=True)
                await self._close_resources()
                mains = [w.main_task for w in workers if w.main_task is not None]
                # Let each poll loop unwind (and release its pipeline) before its pool closes.
                await _cancel_until_done(mains)
                await asyncio.gather(*(self._close(w) for w in workers))
            finally:
                self._jobs_done.set()
            logger.info("postroom worker %s stopped", self.runtime.worker_id)

    async def _wait_for_running_jobs(self, workers: list[QueueWorker]) -> None:
        running = [t for w in workers for t in w.tasks.values() if not t.done()]
        if not running:
            return
        waiters: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(asyncio.wait(running)),
            asyncio.create_task(self._force.wait()),
        ]
        await asyncio.wait(
            waiters,
            timeout=self.runtime.settings.shutdown_grace,
            return_when=asyncio.FIRST_COMPLETED,
        )
        for waiter in waiters:
            waiter.cancel()

    async def _close_resources(self) -> None:
        try:
            await self.runtime.resources.aclose()
        except Exception:
            logger.exception("closing the tasks' shared services failed")

    async def _close(self, worker: QueueWorker) -> None:
        try:
            await worker.close()
        except (RedisError, OSError) as exc:
            logger.warning("closing %s: %s", worker.queue, exc)

    async def _maintain(self) -> None:
        """Renew the leases of running jobs and apply pause/resume, about every second."""
        interval = min(1.0, self.runtime.settings.lease_seconds / 3)
        keys = Keys.of_settings(self.runtime.settings)
        served = dict(self.workers)  # stop() empties self.workers before the drain ends
        while not self._jobs_done.is_set():
            for queue, worker in served.items():
                try:
                    await self._maintain_worker(queue, worker)
                except (RedisError, OSError) as exc:
                    if not self.refusals.check(exc):  # a refusal is logged once, there
                        logger.warning("queue %s: lease renewal failed: %s", queue, exc)
                    worker.redis_lost()
                else:
                    if worker.connected:
                        self.runtime.metrics.queue(queue).heartbeat.set_to_current_time()
            await self._observe_depths(served)
            pools = [w.pool for w in served.values() if w.connected]
            if pools and time.monotonic() - self._host_recorded > HOST_REFRESH_S:
                await self._record_host(pools[0])
            if pools and not self._old_layout_checked:
                # The layout before hash tags never ran on a Cluster.
                self._old_layout_checked = on_cluster(pools[0]) or await check_old_layout(
                    pools[0], keys.prefix, served
                )
            # Until every queue knows whether it is paused (none starts jobs before), look often.
            known = len(self.paused) == len(served)
            await sleep_unless(self._jobs_done, interval if known else 0.02)

    async def _observe_depths(self, served: dict[QueueName, QueueWorker]) -> None:
        """Set the queue-depth gauges: each queue's ready jobs, less those running (they stay
        in the queue until they finish). One round trip for every queue, about every second."""
        pools = [worker.pool for worker in served.values() if worker.connected]
        if not pools:
            return
        now = int(time.time() * 1000)
        try:
            async with pools[0].pipeline(transaction=False) as pipe:
                for worker in served.values():
                    for part in worker.parts:
                        pipe.zcount(part.keys.queue, "-inf", now)
                        pipe.zcount(part.keys.active, now, "+inf")
                counts = iter(await pipe.execute())
        except (RedisError, OSError) as exc:
            logger.debug("queue depths not read: %s", exc)  # the lease renewal says so
            return
        for queue, worker in served.items():
            depth = sum(max(next(counts) - next(counts), 0) for _ in worker.parts)
            self.runtime.metrics.queue(queue).depth.set(depth)

    async def _maintain_worker(self, queue: QueueName, worker: QueueWorker) -> None:
        if not worker.connected:
            return
        lost = await worker.renew_leases(int(self.runtime.settings.lease_seconds * 1000))
        self._leave_lost(queue, worker, lost)
        now = int(time.time() * 1000)
        async with worker.pool.pipeline(transaction=False) as pipe:
            pipe.exists(worker.keys.paused)
            for part in worker.parts:
                pipe.zremrangebyscore(part.keys.cancel_requests, "-inf", now - REQUEST_TTL_MS)
                pipe.zrange(part.keys.cancel_requests, 0, -1)
            paused, *trimmed_and_requested = await pipe.execute()
        for part, cancels in zip(worker.parts, trimmed_and_requested[1::2], strict=True):
            await self._cancel_requested(part.keys, queue, worker, [c.decode() for c in cancels])
        if self._stop.is_set():
            return
        if queue in self.paused and self.paused[queue] != bool(paused):
            logger.info("queue %s %s", queue, "paused" if paused else "resumed")
        self.paused[queue] = bool(paused)
        worker.allow_pick_jobs = not paused

    def _leave_lost(self, queue: QueueName, worker: QueueWorker, lost: list[str]) -> None:
        """Stop the runs whose job another worker took over while this one could not reach
        Redis (its lease lapsed): the job is that worker's now, and nothing of these runs is
        written (fencing refuses it anyway)."""
        for job_id in lost:
            # A run whose function has ended is writing its end, which fencing refuses.
            if worker.stop_run(job_id, lost=True):
                logger.warning(
                    "job %s on %s: lost its lease to another worker; stopping this run",
                    job_id,
                    queue,
                )

    async def _cancel_requested(
        self, keys: QueueKeys, queue: QueueName, worker: QueueWorker, requested: list[str]
    ) -> None:
        """Stop the jobs a user cancelled that run here; each is stored as cancelled."""
        mine = [job_id for job_id in requested if worker.stop_run(job_id)]
        for job_id in mine:
            logger.info("cancelled job %s on %s at a user's request", job_id, queue)
        if mine:
            await worker.pool.zrem(keys.cancel_requests, *mine)

    async def _keep_scheduling(self) -> None:
        """Enqueue the ticks of the served queues' cron tasks, surviving Redis outages."""
        tasks = [t for q in self.queues for t in self.registry.for_queue(q) if t.cron is not None]
        if not tasks or self.burst:
            return
        settings = self.runtime.settings
        while not self._stop.is_set():
            try:
                redis = await open_pool(settings, self.redis_settings)
                try:
                    keys = Keys.of_settings(settings)
                    await CronScheduler(redis, keys, tasks, settings.cron_max_lateness).run(
                        self._stop
                    )
                finally:
                    await close_pool(redis)
            except (RedisError, OSError) as exc:
                if not self.refusals.check(exc):
                    logger.warning("cron scheduler lost Redis (%s); retrying in 1s", exc)
                await sleep_unless(self._stop, 1.0)

    async def _keep_running(self, queue: QueueName, worker: QueueWorker) -> None:
        """Run a worker, restarting its loop when Redis goes away."""
        delay = RECONNECT_DELAYS[0]
        while not self._stop.is_set():
            try:
                await worker.async_run()
                return  # burst mode: the queue is empty
            except asyncio.CancelledError:
                if self._stop.is_set():
                    return
                raise
            except (RedisError, OSError) as exc:
                if self._stop.is_set():
                    return
                # A refusal: logged once, retried for the grace, then the process stops.
                log = logger.debug if self.refusals.check(exc) else logger.warning
                log(
                    "queue %s lost Redis (%s: %s); reconnecting in %.1fs",
                    queue,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                await sleep_unless(self._stop, delay)
                delay = min(delay * 2, RECONNECT_DELAYS[1])


async def _cancel_until_done(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel `tasks` and wait for them, cancelling again any that carries on: on Python
    3.11 a cancel racing a connect timeout becomes a TimeoutError that redis-py retries,
    and a queue still starting would then run on after the stop."""
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_AFTER_S)
    await asyncio.gather(*tasks, return_exceptions=True)
