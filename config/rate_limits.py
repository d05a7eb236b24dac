"""Rate limits as settings: `100/s`, `600/m`, `5000/h`, optionally `100/s burst=20`.

A limit is enforced cluster-wide by a GCRA bucket in Redis (workers/store/rate_limit.py):
one start every `interval` seconds, and at most `burst` at once after a quiet spell. The
default burst is a tenth of a second's worth (at least 1): enough that a worker waking a
little late loses no token, small enough that no second ever sees much more than the limit
(a provider counting per second sees at most `rate + burst`).
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer

PERIODS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
}
_SPEC = re.compile(r"^\s*(\d+)\s*/\s*([a-z]+)\s*(?:burst\s*=\s*(\d+)\s*)?$", re.IGNORECASE)


class RateLimit(BaseModel):
    """`count` starts per `period` seconds, `burst` of them at once at most."""

    model_config = ConfigDict(frozen=True)

    count: int
    period: float
    burst: int

    @property
    def interval(self) -> float:
        """Seconds between two starts at the limit (GCRA's emission interval)."""
        return self.period / self.count

    @property
    def per_second(self) -> float:
        return self.count / self.period

    def __str__(self) -> str:
        unit = {1.0: "s", 60.0: "m", 3600.0: "h"}[self.period]
        return f"{self.count}/{unit} burst={self.burst}"


def parse_rate_limit(value: Any) -> Any:
    """`N/s`, `N/m` or `N/h` (and `burst=B`) as a RateLimit; a RateLimit or dict passes."""
    if not isinstance(value, str):
        return value
    match = _SPEC.match(value)
    if match is None:
        raise ValueError(
            f"{value!r} is not a rate limit: write N/s, N/m or N/h (e.g. 100/s, or 100/s burst=20)"
        )
    count, unit, burst = match.groups()
    period = PERIODS.get(unit.lower())
    if period is None:
        raise ValueError(
            f"{value!r}: unknown period {unit!r}; use s, m or h (per second, minute or hour)"
        )
    if int(count) < 1:
        raise ValueError(f"{value!r}: the count must be at least 1")
    per_second = int(count) / period
    default_burst = max(1, math.ceil(per_second / 10))
    if burst is not None and int(burst) < 1:
        raise ValueError(f"{value!r}: the burst must be at least 1")
    return {
        "count": int(count),
        "period": period,
        "burst": int(burst) if burst is not None else default_burst,
    }


# A setting holding a limit: parsed from its text, shown back as text.
RateLimitSpec = Annotated[
    RateLimit, BeforeValidator(parse_rate_limit), PlainSerializer(str, return_type=str)
]
