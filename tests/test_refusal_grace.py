"""How a running worker counts Redis' refusals (workers/connection/refusal_grace.py), on a
clock the test moves: which errors are refusals, one error logged per run of them, the stop
once a run outlasts POSTROOM_REDIS_AUTH_GRACE, and a new run after a quiet grace."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from redis.exceptions import (
    AuthenticationError,
    ConnectionError,
    NoPermissionError,
    ResponseError,
)

from config.errors import ConfigError
from config.settings import load_settings
from workers.connection.refusal_grace import RedisRefused, RefusalGrace, refused

WHERE = "Redis at redis://127.0.0.1:6379/0"


def test_refusals_are_told_from_outages_and_other_errors() -> None:
    assert refused(AuthenticationError("invalid username-password pair"))
    assert refused(NoPermissionError("No permissions to access a key"))
    # A script's or a pipeline's error carries the code inside its text.
    assert refused(ResponseError("Error in script: NOPERM this user has no permissions"))
    assert refused(ResponseError("Command # 1 (EXISTS k) of pipeline caused error: NOAUTH"))
    assert not refused(ConnectionError("Connection closed by server."))
    assert not refused(ResponseError("WRONGTYPE Operation against a key"))


def test_one_error_per_run_then_stop_after_the_grace(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    settings = load_settings(
        data_dir=tmp_path, redis_username="worker", redis_password="s3cret-pw", redis_auth_grace=60
    )
    now = [100.0]
    grace = RefusalGrace(settings, WHERE, clock=lambda: now[0])
    wrong = AuthenticationError("invalid username-password pair or user is disabled.")
    assert not grace.check(ConnectionError("Connection refused"))
    for moment in (100.0, 110.0, 159.0):
        now[0] = moment
        assert grace.check(wrong)
    [logged] = caplog.messages
    assert logged.startswith("REDIS_USERNAME/REDIS_PASSWORD: Redis at redis://127.0.0.1:6379/0")
    assert "retrying for 60s (POSTROOM_REDIS_AUTH_GRACE)" in logged
    now[0] = 160.0
    with pytest.raises(RedisRefused) as caught:
        grace.check(wrong)
    assert isinstance(caught.value, ConfigError)
    assert str(caught.value).endswith("still refused after 60s (POSTROOM_REDIS_AUTH_GRACE)")
    assert "s3cret-pw" not in str(caught.value) + caplog.text


def test_a_quiet_grace_ends_the_run(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    settings = load_settings(data_dir=tmp_path, redis_username="worker", redis_auth_grace=60)
    now = [0.0]
    grace = RefusalGrace(settings, WHERE, clock=lambda: now[0])
    denied = NoPermissionError("No permissions to access a key")
    assert grace.check(denied)
    now[0] = 50.0
    assert grace.check(denied)
    now[0] = 111.0  # 61 s without a refusal: a new run, logged again, its grace from now
    assert grace.check(denied)
    now[0] = 170.0
    assert grace.check(denied)
    assert len(caplog.messages) == 2
    assert caplog.messages[1].startswith("REDIS_USERNAME: the ACL user 'worker' of Redis at ")
