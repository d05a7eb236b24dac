"""Job records of every shape for the malformed-record tests: the issue's cases by name, and
hypothesis strategies of any JSON and of random bytes."""

from __future__ import annotations

import pickle
import time
from typing import Any

import orjson
from hypothesis import strategies as st

from workers.store.serialization import UNDELIVERABLE_TASK

GOOD_KWARGS = {"greeting": {"messageId": "m-1", "text": "hello"}}


def record(**fields: Any) -> dict[str, Any]:
    """A well-formed record of tests.echo, with `fields` replacing or (as None-valued
    `drop_<key>`) removing its own."""
    data: dict[str, Any] = {
        "t": None,
        "f": "tests.echo",
        "a": [],
        "k": GOOD_KWARGS,
        "et": int(time.time() * 1000),
    }
    for key, value in fields.items():
        if key.startswith("drop_"):
            data.pop(key.removeprefix("drop_"))
        else:
            data[key] = value
    return data


def deeply_nested(levels: int) -> bytes:
    now = int(time.time() * 1000)
    inner = b"[" * levels + b"]" * levels
    return b'{"t":null,"f":"tests.echo","a":[],"k":{"greeting":' + inner + b'},"et":%d}' % now


def _bad(name: str, says: str, **fields: Any) -> tuple[str, bytes, str]:
    return name, orjson.dumps(record(**fields)), says


_ET, _T = "enqueue_time_ms (et)", "job_try (t)"
# (name, stored bytes, what the dead letter's reason must say)
NAMED_CASES: list[tuple[str, bytes, str]] = [
    _bad("enqueue time a string", f"{_ET} is a string", et="1700000000000"),
    _bad("enqueue time a float", f"{_ET} is a number with a fraction", et=1.5),
    _bad("enqueue time past 9999", f"{_ET} is {2**62}, not between", et=2**62),
    _bad("enqueue time missing", f"{_ET} is missing", drop_et=None),
    _bad("try count a string", f"{_T} is a string", t="2"),
    _bad("try count a boolean", f"{_T} is a boolean", t=True),
    _bad("try count past arq's limit", f"{_T} is 2000000", t=2_000_000),
    _bad("task name an integer", "task (f) is an integer", f=7),
    _bad("task name an object", "task (f) is an object", f={"name": "tests.echo"}),
    _bad("task name the internal one", UNDELIVERABLE_TASK, f=UNDELIVERABLE_TASK, k={"x": 1}),
    _bad("args not a list", "args (a) is an object", a={"x": 1}),
    _bad("positional args", "args (a) holds 2 value(s)", a=[1, 2]),
    _bad("kwargs not an object", "kwargs (k) is a list", k=[1]),
    _bad("kwargs a string", "kwargs (k) is a string", k="greeting"),
    _bad("kwargs with a ctx key", "ctx", k={"ctx": 1, **GOOD_KWARGS}),
    ("kwargs nested 300 deep", deeply_nested(300), "nested more than"),
    ("a JSON list", b"[1, 2, 3]", "the record is a list, not an object"),
    ("JSON null", b"null", "the record is null"),
    ("a pickle", pickle.dumps(record()), "not JSON"),
    ("random bytes", b"\x00\xff\xfe garbage \x80", "not JSON"),
    ("empty", b"", "not JSON"),
]

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=10),
)
ANY_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
_FIELDS = {
    "f": st.one_of(st.sampled_from(["tests.echo", "tests.never_registered", ""]), ANY_JSON),
    "a": st.one_of(st.just([]), ANY_JSON),
    "k": st.one_of(st.just(GOOD_KWARGS), st.just({"greeting": {"text": 1}}), ANY_JSON),
    "t": st.one_of(st.none(), st.integers(0, 3), ANY_JSON),
    "et": st.one_of(st.integers(0, 2**45), ANY_JSON),
}
# Shaped like a record, every field there or not, of the right type or of any.
RECORD_SHAPED = st.fixed_dictionaries({}, optional=_FIELDS).map(orjson.dumps)
ANY_RECORD = st.one_of(
    RECORD_SHAPED,
    RECORD_SHAPED,
    ANY_JSON.map(orjson.dumps),
    st.binary(max_size=40),
    st.sampled_from([raw for _, raw, _ in NAMED_CASES]),
)
