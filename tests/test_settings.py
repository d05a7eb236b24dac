"""Settings come from the environment; a bad value is reported under its variable's name."""

from __future__ import annotations

import pytest

from config.errors import ConfigError
from config.queues import QueueName, QueueTable
from config.settings import load_settings


def test_bad_values_raise_config_error_naming_each_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_PORT", "abc")
    monkeypatch.setenv("POSTROOM_QUEUES__MESSAGE_DELIVERY__CONCURRENCY", "x")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "REDIS_PORT" in message
    assert "POSTROOM_QUEUES__MESSAGE_DELIVERY__CONCURRENCY" in message


def test_partial_queue_override_from_env_keeps_the_other_fields_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POSTROOM_QUEUES__MESSAGE_DELIVERY__CONCURRENCY", "20")
    settings = load_settings()
    default = QueueTable().message_delivery
    assert settings.queues.message_delivery == default.model_copy(update={"concurrency": 20})
    assert settings.queues.message_notification == QueueTable().message_notification


def test_partial_queue_override_as_argument_keeps_the_other_fields_defaults() -> None:
    settings = load_settings(queues={"message_delivery": {"concurrency": 2}})
    delivery = settings.queues[QueueName.DELIVERY]
    assert delivery.concurrency == 2
    assert delivery.max_tries == QueueTable().message_delivery.max_tries
    assert delivery.backoff == QueueTable().message_delivery.backoff
    assert delivery.timeout == QueueTable().message_delivery.timeout


def test_redis_parts_build_a_dsn_with_quoted_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_HOST", "cache.internal")
    monkeypatch.setenv("REDIS_PORT", "6380")
    monkeypatch.setenv("REDIS_USERNAME", "app user")
    monkeypatch.setenv("REDIS_PASSWORD", "p@ss:word")
    monkeypatch.setenv("REDIS_DB", "3")
    assert load_settings().redis_dsn() == "redis://app%20user:p%40ss%3Aword@cache.internal:6380/3"


def test_redis_host_alone_builds_a_dsn_with_default_port_and_db(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_HOST", "cache.internal")
    assert load_settings().redis_dsn() == "redis://cache.internal:6379/0"


def test_without_redis_url_or_host_the_dsn_is_none() -> None:
    assert load_settings().redis_dsn() is None


def test_rediss_url_is_accepted_and_wins_over_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "rediss://user:pw@cache.internal:6380/2")
    monkeypatch.setenv("REDIS_HOST", "other.internal")
    assert load_settings().redis_dsn() == "rediss://user:pw@cache.internal:6380/2"


def test_url_with_an_unknown_scheme_is_rejected_naming_redis_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_URL", "ftp://cache.internal/")
    with pytest.raises(ConfigError, match="REDIS_URL"):
        load_settings()


def test_worker_queues_are_parsed_from_a_comma_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTROOM_WORKER_QUEUES", "message-delivery, message-cleanup,")
    assert load_settings().worker_queues == [QueueName.DELIVERY, QueueName.CLEANUP]


def test_unknown_worker_queue_is_rejected_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POSTROOM_WORKER_QUEUES", "message-delivery,no-such-queue")
    with pytest.raises(ConfigError, match="POSTROOM_WORKER_QUEUES") as caught:
        load_settings()
    assert "no-such-queue" in str(caught.value)


def test_by_default_a_worker_serves_all_six_queues() -> None:
    assert load_settings().worker_queues == list(QueueName)


def test_the_tasks_services_are_pointed_at_real_servers_by_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://app:secret@db.internal:5432/postroom")
    monkeypatch.setenv("POSTROOM_ENCRYPTION__KEYS", '{"2026-11": "' + "A" * 43 + '="}')
    monkeypatch.setenv("POSTROOM_ENCRYPTION__ACTIVE_KEY_ID", "2026-11")
    monkeypatch.setenv("POSTROOM_SMTP__HOST", "smtp.internal")
    monkeypatch.setenv("POSTROOM_SMTP__USERNAME", "mailer")
    monkeypatch.setenv("POSTROOM_SMTP__PASSWORD", "pw")
    monkeypatch.setenv("POSTROOM_PUSH__URL", "https://push.internal/send")
    monkeypatch.setenv("POSTROOM_SMS__URL", "https://sms.internal/messages")
    settings = load_settings()
    assert settings.database_url == "postgres://app:secret@db.internal:5432/postroom"
    assert settings.encryption.active_key_id == "2026-11"
    assert list(settings.encryption.keys) == ["2026-11"]
    assert (settings.smtp.host, settings.smtp.effective_port) == ("smtp.internal", 587)
    assert str(settings.push.url) == "https://push.internal/send"
    assert settings.sms.url is not None and settings.sms.url.host == "sms.internal"


def test_a_bad_service_setting_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTROOM_SMTP__PORT", "0")
    monkeypatch.setenv("POSTROOM_PUSH__URL", "not a url")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "POSTROOM_SMTP__PORT" in str(caught.value)
    assert "POSTROOM_PUSH__URL" in str(caught.value)
