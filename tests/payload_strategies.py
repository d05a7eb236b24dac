"""Hypothesis strategies for the seed tasks' payloads: mostly well-typed, some values no JSON
field should hold (lone surrogates, 70-bit integers, NaN, times at the edge of year 1 or 9999,
nested junk), keys in either case, fields left out."""

from __future__ import annotations

import types
import typing
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st
from pydantic import BaseModel

import tasks  # noqa: F401 - registers the seed tasks
from workers.registry import Task, registry


def seed_tasks() -> list[Task[Any, Any]]:
    """The tasks of `tasks/` (not the tests' own), by name."""
    found = [t for t in registry if t.function.__module__.startswith("tasks.")]
    return sorted(found, key=lambda t: t.name)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


_OFFSETS = st.integers(-23 * 60, 23 * 60).map(lambda m: timezone(timedelta(minutes=m)))
_EDGE_TIMES = st.sampled_from(
    [
        datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-5))),
        datetime(1, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=5))),
        datetime(9999, 12, 31, 23, 59, 59),
        datetime(1, 1, 1),
    ]
)
_TIMES = st.one_of(
    st.datetimes(timezones=st.one_of(st.none(), _OFFSETS)),
    _EDGE_TIMES,
    st.datetimes(timezones=_OFFSETS).map(lambda d: d.isoformat()),
    _EDGE_TIMES.map(lambda d: d.isoformat()),
)
_TEXT = st.one_of(
    st.text(max_size=12),
    st.text(st.characters(categories=["Cs", "Ll", "Nd"]), min_size=1, max_size=4),
    st.sampled_from(["$name", "${name}", "$", "hello $who", ""]),
)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.integers(-5, 300),
    st.floats(),
    _TEXT,
    _TIMES,
)
JUNK = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


_ID = st.text(st.characters(categories=["Ll", "Lu", "Nd"]), min_size=1, max_size=8)
_PLAIN_TIMES = st.datetimes(datetime(2000, 1, 1), datetime(2040, 1, 1), timezones=_OFFSETS)
# What no field should hold, or only some: each payload may get one of these in one field.
WEIRD = st.one_of(
    st.text(st.characters(categories=["Cs"]), min_size=1, max_size=2),  # lone surrogates
    st.integers(2**64, 2**70),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e308, -0.0]),
    _EDGE_TIMES,
    _EDGE_TIMES.map(lambda d: d.isoformat()),
    st.sampled_from(["$name", "${name}", "$", "", " ", "\x00"]),
    JUNK,
)


def valid_ish(annotation: Any) -> st.SearchStrategy[Any]:
    """Values of the annotation's type, small enough to meet most constraints."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return valid_ish(args[0])
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin in (typing.Union, types.UnionType):
        return st.one_of([valid_ish(a) for a in args])
    if origin is list:
        return st.lists(valid_ish(args[0]), min_size=1, max_size=3)
    if origin is dict:
        return st.dictionaries(_ID, valid_ish(args[1]), max_size=2)
    simple: dict[Any, st.SearchStrategy[Any]] = {
        type(None): st.none(),
        bool: st.booleans(),
        int: st.integers(1, 50),
        float: st.floats(-1e6, 1e6, allow_nan=False),
        str: _ID,
        datetime: st.one_of(_PLAIN_TIMES, _PLAIN_TIMES.map(lambda d: d.isoformat())),
    }
    if annotation in simple:
        return simple[annotation]
    return JUNK


def payloads(model: type[BaseModel]) -> st.SearchStrategy[dict[str, Any]]:
    """A payload of `model`'s fields, either key spelling, mostly valid: now and then a field
    left out, one field given a WEIRD value, or a key the model does not have."""
    fields = [
        (name, st.sampled_from(sorted({name, info.alias or name})), valid_ish(info.annotation))
        for name, info in model.model_fields.items()
    ]

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        payload: dict[str, Any] = {}
        for _, keys, values in fields:
            if draw(st.integers(0, 9)) > 0:  # each field is there nine times in ten
                payload[draw(keys)] = draw(values)
        if len(payload) > 0 and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(payload)))
            payload[key] = draw(WEIRD)
        if draw(st.integers(0, 19)) == 0:
            payload[draw(st.text(max_size=8))] = draw(JUNK)
        return payload

    return build()


def task_calls() -> st.SearchStrategy[tuple[Task[Any, Any], Any]]:
    """A seed task and the payload of its call (keyed by argument name), now and then not a
    mapping at all."""
    options = []
    for task in seed_tasks():
        arguments: dict[str, st.SearchStrategy[Any]] = {}
        for name, info in task.arguments.model_fields.items():
            model = _model_in(info.annotation)
            arguments[name] = payloads(model) if model is not None else JUNK
        call = st.fixed_dictionaries({}, optional=arguments)
        options.append(st.tuples(st.just(task), st.one_of(*[call] * 7, JUNK)))
    return st.one_of(options)


__all__ = ["JUNK", "WEIRD", "payloads", "seed_tasks", "task_calls", "valid_ish"]
