"""Errors the task functions raise for jobs that no retry can fix."""

from __future__ import annotations

from workers import PermanentError


class MessageNotFound(PermanentError):
    """The job names a message the store does not hold (deleted, or never stored)."""
