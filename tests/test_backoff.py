"""Retry delays follow the queue table: exponential doubling or fixed, capped, full jitter."""

from __future__ import annotations

import pytest

from config.queues import BackoffPolicy, QueueTable
from workers.runner.backoff import nominal_delay, retry_delay


def test_delivery_delays_double_from_two_seconds_before_jitter() -> None:
    policy = QueueTable().message_delivery.backoff
    assert [nominal_delay(policy, n) for n in range(1, 6)] == [2, 4, 8, 16, 32]


def test_cleanup_delay_is_fixed_ten_seconds() -> None:
    policy = QueueTable().message_cleanup.backoff
    assert {nominal_delay(policy, n) for n in range(1, 5)} == {10}


def test_delay_never_exceeds_the_cap() -> None:
    policy = BackoffPolicy(base=1, cap=5)
    assert nominal_delay(policy, 100_000) == 5


def test_full_jitter_scales_the_nominal_delay() -> None:
    policy = BackoffPolicy(base=2, cap=300)
    assert retry_delay(policy, 3, rand=lambda: 0.25) == 2.0
    assert retry_delay(policy.model_copy(update={"jitter": False}), 3, rand=lambda: 0.25) == 8.0


def test_try_numbers_start_at_one() -> None:
    with pytest.raises(ValueError, match="failed_try"):
        nominal_delay(BackoffPolicy(), 0)
