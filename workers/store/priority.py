"""Priorities as positions in arq's queue sorted set, so that one ZRANGEBYSCORE reads them in order.

arq reads a queue's ready jobs as the members scored at most "now", lowest score first. Postroom
keeps that read and only chooses the scores:

- a ready job is scored ``since_ms - OFFSET[priority]``: every band lies below zero, urgent
  lowest, and within a band the job that became ready first comes first;
- a job waiting for its time (delayed, or retrying after a backoff) is scored by that time,
  ``due_ms + TAG[priority] / 8``: it stays out of every read until then, and the fraction keeps
  its priority (exactly: a double holds a millisecond timestamp with bits to spare);
- before each read a worker promotes the jobs whose time has come into their band (PROMOTE).

A plain millisecond score written by a stock arq client has tag 0 and so counts as ``normal``.
"""

from __future__ import annotations

import math
from enum import StrEnum


class Priority(StrEnum):
    """Chosen at enqueue; within a queue, a ready job of a higher priority starts first."""

    URGENT = "urgent"
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


# Wider than any millisecond timestamp before the year 2286, so bands never overlap.
BAND_MS = 10**13
OFFSET = {Priority.URGENT: 4 * BAND_MS, Priority.HIGH: 3 * BAND_MS, Priority.NORMAL: 2 * BAND_MS}
OFFSET[Priority.LOW] = BAND_MS
TAG = {Priority.NORMAL: 0, Priority.URGENT: 1, Priority.HIGH: 2, Priority.LOW: 3}
_BY_TAG = {tag: priority for priority, tag in TAG.items()}
_BY_OFFSET = {offset: priority for priority, offset in OFFSET.items()}


def ready_score(priority: Priority, since_ms: int) -> int:
    return since_ms - OFFSET[priority]


def waiting_score(priority: Priority, due_ms: int) -> float:
    return due_ms + TAG[priority] / 8


def job_score(priority: Priority, due_ms: int, now_ms: int) -> float:
    """The score of a job that may start at `due_ms`: in its band if that time has come."""
    return ready_score(priority, due_ms) if due_ms <= now_ms else waiting_score(priority, due_ms)


def priority_of(score: float) -> Priority:
    if score >= 0:
        return _BY_TAG.get(round((score - math.floor(score)) * 8), Priority.NORMAL)
    return _BY_OFFSET[math.ceil(-score / BAND_MS) * BAND_MS]


def is_waiting(score: float) -> bool:
    """True for a job scored by the time it waits for (not yet promoted into its band)."""
    return score >= 0


# The constants of lua/bands.lua, the Lua shared by the scripts that move jobs between the
# two forms (its `offset_of(score)` reads the band of a ready score or the tag of a waiting one).
LUA_BAND_VALUES = {
    "BAND": BAND_MS,
    **{f"OFFSET_{priority.name}": OFFSET[priority] for priority in Priority},
}
