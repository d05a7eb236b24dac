"""The `@task` decorator: declares a task, its queue and its policy, and types its enqueue."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Concatenate, Generic, Never, ParamSpec, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, create_model

from config.queues import BackoffPolicy, QueueConfig, QueueName
from config.rate_limits import RateLimit, parse_rate_limit
from workers.context import JobContext
from workers.crontab import Cron
from workers.errors import PayloadValidationError, TaskDefinitionError, UnknownTaskError
from workers.store.priority import Priority
from workers.store.serialization import dumps, loads

P = ParamSpec("P")
R = TypeVar("R")

TaskFunction = Callable[Concatenate[JobContext, P], Awaitable[R]]
Hook = Callable[[dict[str, Any]], Awaitable[None]]


# What JSON (and orjson) can hold: 64-bit integers, strings of valid UTF-8, 254 levels.
_INT_RANGE = (-(2**63), 2**64 - 1)
_MAX_DEPTH = 254


def _unstorable(value: Any, path: str = "", depth: int = 0) -> str | None:
    """The dotted path of the first value JSON cannot hold, or None."""
    if depth > _MAX_DEPTH:
        return path or "<payload>"
    if isinstance(value, dict):
        for key, item in value.items():
            found = _unstorable(key, path, depth) or _unstorable(
                item, f"{path}.{key}" if path else str(key), depth + 1
            )
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _unstorable(item, f"{path}.{i}" if path else str(i), depth + 1)
            if found:
                return found
    elif isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            return path or "<payload>"
    elif isinstance(value, int) and not _INT_RANGE[0] <= value <= _INT_RANGE[1]:
        return path or "<payload>"
    return None


@dataclass(frozen=True, slots=True)
class JobRequest(Generic[R]):
    """A validated call of a task, ready to enqueue; `kwargs` is already JSON-safe."""

    task: Task[Any, R]
    kwargs: dict[str, Any]
    job_id: str | None = None
    delay: float | timedelta | None = None
    at: datetime | None = None
    priority: Priority = Priority.NORMAL
    partition_key: str | None = None

    def with_options(
        self,
        *,
        job_id: str | None = None,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        priority: Priority | None = None,
        partition_key: str | None = None,
    ) -> JobRequest[R]:
        """A copy with an idempotency key, a start time, a priority or a partition key
        (default: the task's `partition_by` field, else the job id); unset ones are kept."""
        return replace(
            self,
            job_id=job_id if job_id is not None else self.job_id,
            delay=delay if delay is not None else self.delay,
            at=at if at is not None else self.at,
            priority=Priority(priority) if priority is not None else self.priority,
            partition_key=partition_key if partition_key is not None else self.partition_key,
        )

    def route_key(self, job_id: str) -> str:
        """What picks the job's partition: its partition key, its task's `partition_by`
        field, or its id."""
        return self.partition_key or self.task.partition_key(self.kwargs) or job_id


@dataclass(frozen=True)
class Task(Generic[P, R]):
    """A registered task: the function, its queue and its per-task policy overrides."""

    name: str
    queue: QueueName
    function: TaskFunction[P, R]
    timeout: float | None = None
    max_tries: int | None = None
    backoff: BackoffPolicy | None = None
    cron: Cron | None = None
    # The payload field (a dotted path of JSON names) whose value picks the job's partition
    # on a partitioned queue; unset or absent, the job id does (keys.Keys.route).
    partition_by: str | None = None
    # How fast the task's jobs may start across every worker (`10/s`; config/rate_limits.py),
    # a named limit `task:<name>` taken when each job runs (runner/throttle.py).
    rate_limit: RateLimit | None = None
    arguments: type[BaseModel] = field(repr=False, default=BaseModel)
    returns: TypeAdapter[R] = field(repr=False, default_factory=lambda: TypeAdapter(Any))

    def call(self, *args: P.args, **kwargs: P.kwargs) -> JobRequest[R]:
        """Validate a call now, so a bad payload never reaches Redis."""
        if not args and self._by_keyword:  # as validating would: no need to bind them
            return JobRequest(self, self.encode(kwargs))
        try:
            bound = self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise PayloadValidationError(self.name, [("<arguments>", str(exc))]) from exc
        return JobRequest(self, self.encode(bound.arguments))

    def request(self, payload: Mapping[str, Any]) -> JobRequest[R]:
        """Validate an untyped payload (from JSON or another language) keyed by argument name."""
        return JobRequest(self, self.encode(payload))

    def encode(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Validate `arguments` and return their JSON form, the one stored in the job."""
        model = self._validate(arguments)
        dumped: dict[str, Any] = model.model_dump(mode="json", by_alias=True)
        # The worker validates what it reads back from Redis, so that is what is checked
        # here: pydantic trusts model instances (model_construct skips validation), and JSON
        # cannot hold everything a model can (NaN and infinity become null, a lone surrogate
        # or a 65-bit integer cannot be written at all).
        try:
            stored: dict[str, Any] = loads(dumps(dumped))
        except orjson.JSONEncodeError as exc:
            where = _unstorable(dumped) or "<payload>"
            raise PayloadValidationError(self.name, [(where, f"cannot be stored: {exc}")]) from None
        self._validate(stored)
        return stored

    def decode(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        """Turn a stored job's JSON arguments back into the typed values the function takes."""
        # The model forbids extra fields: its __dict__ holds its fields, and nothing else.
        return self._validate(stored).__dict__.copy()

    def partition_key(self, kwargs: Mapping[str, Any]) -> str | None:
        """The value of `partition_by` in a stored payload, or None."""
        if self.partition_by is None:
            return None
        value: Any = kwargs
        for name in self.partition_by.split("."):
            if not isinstance(value, Mapping) or name not in value:
                return None
            value = value[name]
        return None if value is None else str(value)

    def policy(self, queue: QueueConfig) -> QueueConfig:
        """The queue's policy with this task's overrides applied."""
        return queue.model_copy(
            update={
                k: v
                for k, v in (
                    ("timeout", self.timeout),
                    ("max_tries", self.max_tries),
                    ("backoff", self.backoff),
                )
                if v is not None
            }
        )

    def _validate(self, arguments: Mapping[str, Any]) -> BaseModel:
        """The one check of a payload, the client's and the worker's alike."""
        if not isinstance(arguments, Mapping):
            problem = f"must be an object keyed by argument name, not {type(arguments).__name__}"
            raise PayloadValidationError(self.name, [("<payload>", problem)])
        try:
            if type(arguments) is not dict:  # a stored payload is one already: no copy
                arguments = dict(arguments)
            return self.arguments.model_validate(arguments)
        except ValidationError as exc:
            raise PayloadValidationError.of(self.name, exc) from exc

    @functools.cached_property
    def _by_keyword(self) -> bool:
        """Whether every argument may be passed by keyword: then keyword arguments are
        checked by the arguments model alone (a missing or unknown one names its field)."""
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return all(p.kind in kinds for p in self._signature.parameters.values())

    @functools.cached_property
    def _signature(self) -> inspect.Signature:
        """The function's signature after `ctx`, built once: `inspect.signature` was a
        third of the CPU of a call's validation."""
        signature = inspect.signature(self.function)
        return signature.replace(parameters=list(signature.parameters.values())[1:])


def _arguments_model(name: str, function: Callable[..., Any]) -> type[BaseModel]:
    """A pydantic model of the function's arguments after `ctx`, to validate payloads."""
    hints = inspect.get_annotations(function, eval_str=True)
    parameters = list(inspect.signature(function).parameters.values())
    if not parameters:
        raise TaskDefinitionError(f"task {name!r} must take the job context as first argument")
    fields: dict[str, Any] = {}
    for parameter in parameters[1:]:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise TaskDefinitionError(
                f"task {name!r}: *args/**kwargs ({parameter.name}) cannot be validated"
            )
        if parameter.name not in hints:
            raise TaskDefinitionError(f"task {name!r}: argument {parameter.name!r} needs a type")
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[parameter.name] = (hints[parameter.name], default)
    model: type[BaseModel] = create_model(
        f"{name}.arguments",
        __config__=ConfigDict(extra="forbid", hide_input_in_errors=True),
        **fields,
    )
    return model


def _check_schedule(task: Task[Any, Any], schedule: Cron) -> None:
    problem = schedule.problem()
    if problem is not None:
        raise TaskDefinitionError(f"task {task.name!r}: {problem}")
    try:
        task.encode(schedule.payload)
    except PayloadValidationError as exc:
        raise TaskDefinitionError(f"task {task.name!r}: cron payload: {exc}") from None


@dataclass
class Hooks:
    """Worker lifecycle hooks; each is guarded so that raising cannot stop a worker."""

    on_startup: list[Hook] = field(default_factory=list)
    on_shutdown: list[Hook] = field(default_factory=list)
    on_job_start: list[Hook] = field(default_factory=list)
    on_job_end: list[Hook] = field(default_factory=list)


class TaskRegistry:
    """Tasks by name. The module-level `registry` is the one workers and clients use."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task[Any, Any]] = {}
        self.hooks = Hooks()

    def task(
        self,
        *,
        queue: QueueName,
        name: str | None = None,
        timeout: float | None = None,
        max_tries: int | None = None,
        backoff: BackoffPolicy | None = None,
        cron: str | Cron | None = None,
        partition_by: str | None = None,
        rate_limit: str | None = None,
        **unknown: Never,
    ) -> Callable[[TaskFunction[P, R]], Task[P, R]]:
        """Register an `async def f(ctx, ...)` on `queue`, overriding the queue's policy.

        `cron` ("0 2 * * *" in UTC, or a `Cron` with a time zone and payload) also runs the
        task on that schedule, once per tick across all worker processes. `partition_by`
        ("message.conversationId") names the payload field that picks a job's partition
        when the queue is partitioned: jobs with the same value share a partition.
        `rate_limit` ("10/s", "600/m", "10/s burst=5") bounds how fast its jobs start,
        across every worker process; jobs over it wait, spending no try.
        """
        schedule = Cron(cron) if isinstance(cron, str) else cron

        def register(function: TaskFunction[P, R]) -> Task[P, R]:
            task_name = name or function.__name__
            self._check(task_name, function, queue, timeout, max_tries, unknown)
            limit = _rate_limit(task_name, rate_limit)
            hints = inspect.get_annotations(function, eval_str=True)
            task: Task[P, R] = Task(
                name=task_name,
                queue=queue,
                function=function,
                timeout=timeout,
                max_tries=max_tries,
                backoff=backoff,
                cron=schedule,
                partition_by=partition_by,
                rate_limit=limit,
                arguments=_arguments_model(task_name, function),
                returns=TypeAdapter(hints.get("return", Any)),
            )
            if schedule is not None:
                _check_schedule(task, schedule)
            self._tasks[task_name] = task
            return task

        return register

    def _check(
        self,
        name: str,
        function: Callable[..., Any],
        queue: Any,
        timeout: float | None,
        max_tries: int | None,
        unknown: Mapping[str, Any],
    ) -> None:
        if unknown:
            raise TaskDefinitionError(f"task {name!r}: unknown option(s) {', '.join(unknown)}")
        if not inspect.iscoroutinefunction(function):
            raise TaskDefinitionError(f"task {name!r} must be an async def")
        if not isinstance(queue, QueueName):
            raise TaskDefinitionError(f"task {name!r}: queue must be a QueueName, got {queue!r}")
        if timeout is not None and timeout <= 0:
            raise TaskDefinitionError(f"task {name!r}: timeout must be positive")
        if max_tries is not None and max_tries < 1:
            raise TaskDefinitionError(f"task {name!r}: max_tries must be at least 1")
        if name in self._tasks:
            other = self._tasks[name].function
            raise TaskDefinitionError(
                f"task {name!r} is already registered by {other.__module__}.{other.__qualname__}"
            )

    def get(self, name: str) -> Task[Any, Any]:
        try:
            return self._tasks[name]
        except KeyError:
            raise UnknownTaskError(f"no task named {name!r} is registered") from None

    def for_queue(self, queue: QueueName) -> list[Task[Any, Any]]:
        return [t for t in self._tasks.values() if t.queue == queue]

    def __iter__(self) -> Iterator[Task[Any, Any]]:
        return iter(self._tasks.values())

    def __len__(self) -> int:
        return len(self._tasks)


def _rate_limit(task: str, spec: str | None) -> RateLimit | None:
    if spec is None:
        return None
    try:
        return RateLimit.model_validate(parse_rate_limit(spec))
    except ValueError as exc:
        raise TaskDefinitionError(f"task {task!r}: rate_limit {exc}") from None


registry = TaskRegistry()
task = registry.task
