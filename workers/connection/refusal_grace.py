"""Refused credentials at run time: wait out a rollout for a while, then stop the process.

At start-up a refused password or ACL permission stops the process at once
(redis_refusal.py). Once running, the same refusal may be a credential change rolling out
(the password changed on the server before the workers' secret, an ACL rule re-applied), so
the worker keeps reconnecting with its capped backoff for `POSTROOM_REDIS_AUTH_GRACE`
seconds, logging one error naming the variable to fix, then gives up with `RedisRefused`,
which exits non-zero so the orchestrator sees it. The jobs it held come back to the other
workers when their leases lapse.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    NoPermissionError,
    RedisError,
    ResponseError,
)

from config.errors import ConfigError
from config.settings import PostroomSettings
from workers.connection.redis_refusal import ACL_HINT, refusal

logger = logging.getLogger(__name__)

# The server's error codes for a refused login or command; a script's error (and a
# pipeline's) carries the code inside its message.
_REFUSED = re.compile(r"\b(WRONGPASS|NOPERM|NOAUTH)\b|no permissions to ", re.IGNORECASE)


class RedisRefused(ConfigError, RedisError):
    """Redis refuses the credentials or a permission: the message names the variable to fix.
    Still a RedisError, so code that catches those (a web app's 503) keeps doing so."""


def refused(exc: BaseException) -> bool:
    """Whether `exc` is Redis refusing the credentials or a permission (not an outage)."""
    if isinstance(exc, (AuthenticationError, AuthorizationError, NoPermissionError)):
        return True
    return isinstance(exc, ResponseError) and _REFUSED.search(str(exc)) is not None


def explain(exc: BaseException, settings: PostroomSettings, where: str) -> str:
    """The refusal in words, naming the variable to fix (never a credential)."""
    known = refusal(exc, settings, where)
    if known is not None:
        return str(known)
    user = settings.redis_username or "default"
    return (
        f"REDIS_USERNAME: {where} refused user {user!r} a command or key postroom needs "
        f"({exc}): {ACL_HINT}"
    )


def named_refusal(
    exc: BaseException, settings: PostroomSettings, where: str
) -> RedisRefused | None:
    """`exc` as the error to raise to a caller (the client, the admin API): named, at once."""
    return RedisRefused(explain(exc, settings, where)) if refused(exc) else None


class RefusalGrace:
    """Counts how long Redis has refused this process; `check` raises once it is too long.

    A run of refusals ends only after a whole grace without one: with a password changed on
    the server, connections opened before still work while each new one is refused, so a
    success says little, and a worker in that state would be stopped at its next reconnect
    anyway.
    """

    def __init__(
        self,
        settings: PostroomSettings,
        where: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.where = where
        self.grace = settings.redis_auth_grace
        self.clock = clock
        # The first and the latest refusal of the current run (None: none lately).
        self.first: float | None = None
        self.latest: float | None = None

    def check(self, exc: BaseException) -> bool:
        """False for an error that is not a refusal; True for one within the grace (the
        first of a run is logged); raises `RedisRefused` once the grace is over."""
        if not refused(exc):
            return False
        now = self.clock()
        message = explain(exc, self.settings, self.where)
        if self.first is None or self.latest is None or now - self.latest > self.grace:
            self.first = now
            logger.error(
                "%s; retrying for %gs (POSTROOM_REDIS_AUTH_GRACE), then stopping",
                message,
                self.grace,
            )
        self.latest = now
        if now - self.first >= self.grace:
            raise RedisRefused(
                f"{message}; still refused after {self.grace:g}s (POSTROOM_REDIS_AUTH_GRACE)"
            ) from None
        return True
