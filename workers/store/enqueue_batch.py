"""Enqueues from many coroutines at once, coalesced into one pipelined write.

A web app enqueues from many requests at the same moment. Each call on its own would check
out a pooled connection and pay a round trip and a script run per job; here the first caller
writes at once, and the jobs of the callers that come while that write is on the wire go out
together, in one round trip, as soon as it returns (at most one write is in flight). Each
caller still gets its own answers, whether each of its jobs was created, or its own error.

Each write is one call per queue of that queue's ENQUEUE_BATCH script (its key names part of
its source, as the worker's FINISH: only the payload, TTL, score and id go per job), which
writes any number of jobs and leaves at most one wake token. On one server (or Sentinel's
primary) the write goes over a connection this writer keeps, its commands packed here:
redis-py's pool checkout (with a readiness poll of the socket) and its argument encoding were
most of an enqueue's CPU. A Cluster client gets each queue's call through redis-py, routed to
its slot's node.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import NoScriptError, ResponseError

from workers.store import enqueue
from workers.store.enqueue import NewJob, enqueue_call
from workers.store.keys import QueueKeys
from workers.store.scripts import LuaScript, RedisClient, lua_string, pack

# The most jobs one coalesced write carries (a caller's own jobs are never split).
MAX_BATCH_JOBS = 1000


@functools.lru_cache(maxsize=256)
def enqueue_batch_script(keys: QueueKeys) -> LuaScript:
    """`keys`' queue's ENQUEUE_BATCH. KEYS: the queue (declared, so that a Cluster routes the
    call to its slot, which holds every key the script touches). ARGV: per job its payload,
    TTL ms, score and id. Each job as ENQUEUE (lua/enqueue_function.lua), in order, so a
    repeated id is written once; returns each job's 1 (written) or 0 (its id was taken)."""
    names = {"JOB": keys.job(""), "RESULT": keys.result(""), "WAKE": keys.wake}
    return LuaScript.file("enqueue_batch", **{k: lua_string(v) for k, v in names.items()})


class _Call:
    """One script call of a write: its script, KEYS and ARGV, and which jobs it answers for
    (their places in the write)."""

    __slots__ = ("args", "keys", "places", "script")

    def __init__(self, script: LuaScript, keys: list[str]) -> None:
        self.script = script
        self.keys = keys
        self.args: list[Any] = []
        self.places: list[int] = []

    def packed(self) -> bytes:
        return pack(["EVALSHA", self.script.sha, len(self.keys), *self.keys, *self.args])


def _calls(jobs: Sequence[NewJob]) -> list[_Call]:
    """The script calls that write `jobs`: one per queue (a cron tick's job, with its "once"
    marker, alone through ENQUEUE)."""
    calls: list[_Call] = []
    by_queue: dict[QueueKeys, _Call] = {}
    for place, job in enumerate(jobs):
        if job.once_key is not None:
            keys, args = enqueue_call(job)
            call = _Call(enqueue.ENQUEUE, keys)
            call.args = args
            calls.append(call)
        else:
            call = by_queue.get(job.keys)  # type: ignore[assignment]
            if call is None:
                call = by_queue[job.keys] = _Call(enqueue_batch_script(job.keys), [job.keys.queue])
                calls.append(call)
            call.args += (job.payload(), job.ttl_ms(), repr(job.score()), job.job_id)
        call.places.append(place)
    return calls


class EnqueueBatcher:
    """One client's writer of jobs; `write` may be awaited from any number of coroutines."""

    def __init__(self, redis: RedisClient, max_batch_jobs: int = MAX_BATCH_JOBS) -> None:
        self.redis = redis
        self.max_batch_jobs = max_batch_jobs
        self._busy = False  # a write is on the wire: new callers wait for the next one
        self._waiting: list[tuple[Sequence[NewJob], asyncio.Future[list[bool]]]] = []
        self._sender: asyncio.Task[None] | None = None
        self._connection: AbstractConnection | None = None

    async def write(self, jobs: Sequence[NewJob]) -> list[bool]:
        """Write `jobs`; each answer says whether that job was new."""
        if not jobs:
            return []
        if self._busy:
            done: asyncio.Future[list[bool]] = asyncio.get_running_loop().create_future()
            self._waiting.append((jobs, done))
            return await done
        self._busy = True
        try:
            [answer] = await self._write([jobs])
        finally:
            self._hand_over()
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def close(self) -> None:
        """Give the connection back to its pool (the pool closes it with the client)."""
        if self._sender is not None:
            await asyncio.gather(self._sender, return_exceptions=True)
        connection, self._connection = self._connection, None
        if connection is not None and isinstance(self.redis, Redis):
            await self.redis.connection_pool.release(connection)

    def _hand_over(self) -> None:
        """After a write: send what came meanwhile (in a task: this caller has its answer)."""
        if self._waiting:
            self._sender = asyncio.create_task(self._send_waiting())
        else:
            self._busy = False

    async def _send_waiting(self) -> None:
        try:
            while self._waiting:
                count, taken = 0, 0
                for jobs, _ in self._waiting:
                    if taken and count + len(jobs) > self.max_batch_jobs:
                        break
                    count += len(jobs)
                    taken += 1
                batch = self._waiting[:taken]
                del self._waiting[:taken]
                try:
                    answers = await self._write([jobs for jobs, _ in batch])
                except asyncio.CancelledError:
                    for _, done in batch:
                        done.cancel()
                    raise
                for (_, done), answer in zip(batch, answers, strict=True):
                    if done.done():  # its caller was cancelled
                        continue
                    if isinstance(answer, BaseException):
                        done.set_exception(answer)
                    else:
                        done.set_result(answer)
        finally:
            self._sender = None
            self._busy = False
            if self._waiting:  # cancelled with callers left: they get their own write
                for _, done in self._waiting:
                    done.cancel()
                self._waiting.clear()

    async def _write(self, callers: Sequence[Sequence[NewJob]]) -> list[list[bool] | BaseException]:
        """Every caller's jobs in one round trip; per caller its answers, or the error of a
        call that wrote some of its jobs (or of the whole write)."""
        jobs = [job for own in callers for job in own]
        calls = _calls(jobs)
        try:
            if isinstance(self.redis, RedisCluster):
                replies = await _on_cluster(self.redis, calls)
            else:
                replies = await self._pipelined(calls)
        except Exception as exc:  # nothing was answered: every caller gets it
            return [exc] * len(callers)
        created: list[bool | BaseException] = [False] * len(jobs)
        for call, reply in zip(calls, replies, strict=True):
            if call.script is enqueue.ENQUEUE and not isinstance(reply, BaseException):
                reply = [reply]  # ENQUEUE answers for its one job
            for i, place in enumerate(call.places):
                created[place] = reply if isinstance(reply, BaseException) else bool(reply[i])
        out: list[list[bool] | BaseException] = []
        start = 0
        for own in callers:
            mine = created[start : start + len(own)]
            start += len(own)
            error = next((c for c in mine if isinstance(c, BaseException)), None)
            out.append(error if error is not None else [bool(c) for c in mine])
        return out

    async def _pipelined(self, calls: Sequence[_Call]) -> list[Any]:
        """The calls' replies (each a list, or the error it got), over this writer's own
        connection; a script Redis lost (a restart, SCRIPT FLUSH) is loaded and its calls
        sent again (NOSCRIPT means they did not run)."""
        assert isinstance(self.redis, Redis)
        if self._connection is None:
            self._connection = await self.redis.connection_pool.get_connection()
        connection = self._connection
        replies: list[Any] = [None] * len(calls)
        todo = list(range(len(calls)))
        for attempt in range(2):
            await connection.send_packed_command(b"".join(calls[i].packed() for i in todo))
            missing: list[int] = []
            for i in todo:
                try:
                    replies[i] = await connection.read_response()
                except NoScriptError as exc:
                    replies[i] = exc
                    missing.append(i)
                except ResponseError as exc:
                    replies[i] = exc
            if not missing or attempt:
                break
            for script in {calls[i].script.sha: calls[i].script for i in missing}.values():
                await script.load(self.redis)
            todo = missing
        return replies


async def _on_cluster(redis: RedisCluster, calls: Sequence[_Call]) -> list[Any]:
    """Each call to its slot's node (redis-py 5's Cluster pipelines refuse EVALSHA)."""
    return await asyncio.gather(
        *(call.script(redis, call.keys, call.args) for call in calls), return_exceptions=True
    )
