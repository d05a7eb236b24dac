"""Retry delays as pure functions of the policy and the try number."""

from __future__ import annotations

import random
from collections.abc import Callable

from config.queues import BackoffPolicy


def nominal_delay(policy: BackoffPolicy, failed_try: int) -> float:
    """Delay after try `failed_try` (1-based) before jitter: `min(cap, base * 2**(try-1))`.

    Exponential from 2 s gives 2, 4, 8, 16, 32 s; fixed gives `base` every time.
    """
    if failed_try < 1:
        raise ValueError(f"failed_try must be >= 1, got {failed_try}")
    if policy.kind == "fixed":
        return min(policy.base, policy.cap)
    # Clamp the exponent so a huge try count cannot overflow the float.
    return float(min(policy.cap, policy.base * 2 ** min(failed_try - 1, 64)))


def retry_delay(
    policy: BackoffPolicy, failed_try: int, rand: Callable[[], float] = random.random
) -> float:
    """The delay actually used: "full jitter", uniform in [0, nominal), when the policy asks.

    Full jitter spreads a burst of failures (a provider outage) instead of retrying in lockstep.
    """
    delay = nominal_delay(policy, failed_try)
    return delay * rand() if policy.jitter else delay
