"""Redis over TLS (`rediss://`, a CA file, a client certificate), end to end against a
redis-server that speaks only TLS and wants client certificates; and what each mistake says."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import pytest

from config.errors import ConfigError
from config.settings import PostroomSettings, load_settings
from tests.redis_security import client_refusal, refusal, run_jobs_end_to_end
from tests.servers.guarded import AclServer
from tests.servers.sentinel import SentinelSet
from tests.servers.tls import TlsProcess, TlsServer, start_tls_cluster, started


def tls_settings(server: TlsServer, tmp_path: Path, **changes: Any) -> PostroomSettings:
    """What a deployment sets for `server`: rediss://, the password, the CA, its client pair."""
    certs = server.certificates
    values: dict[str, Any] = {
        "redis_url": server.url,
        "redis_password": server.password,
        "redis_ca_file": certs.ca,
        "redis_cert_file": certs.client_cert,
        "redis_key_file": certs.client_key,
        "key_prefix": f"tls-{uuid.uuid4().hex[:10]}",
        "data_dir": tmp_path,
        "shutdown_grace": 5,
        **changes,
    }
    return load_settings(**{k: v for k, v in values.items() if v is not None})


async def test_redis_tls_worker_and_client_run_jobs_with_a_client_certificate(
    tls_redis: TlsServer, tmp_path: Path
) -> None:
    await run_jobs_end_to_end(tls_settings(tls_redis, tmp_path))
    # POSTROOM_REDIS_TLS=true with a redis:// URL is the same deployment.
    plain_scheme = tls_redis.url.replace("rediss://", "redis://")
    await run_jobs_end_to_end(
        tls_settings(tls_redis, tmp_path, redis_url=plain_scheme, redis_tls=True)
    )


async def test_redis_tls_wrong_ca_or_certificate_stops_the_start_naming_the_variable(
    tls_redis: TlsServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    certs = tls_redis.certificates
    wrong_ca = tls_settings(tls_redis, tmp_path, redis_ca_file=certs.other_ca)
    message = refusal(wrong_ca)
    assert message.startswith(
        f"POSTROOM_REDIS_CA_FILE: the certificate of Redis at rediss://127.0.0.1:{tls_redis.port}/0"
        f" does not verify against {certs.other_ca}: "
    )
    assert "self-signed certificate in certificate chain" in message
    assert await client_refusal(wrong_ca) == message

    system_cas = tls_settings(tls_redis, tmp_path, redis_ca_file=None)
    assert "the system's CAs (POSTROOM_REDIS_CA_FILE is unset)" in refusal(system_cas)

    no_certificate = tls_settings(tls_redis, tmp_path, redis_cert_file=None, redis_key_file=None)
    # TLS 1.3: the server's alert, or its closing the connection, whichever the client reads.
    for message in (refusal(no_certificate), await client_refusal(no_certificate)):
        assert message.startswith("POSTROOM_REDIS_CERT_FILE: Redis at rediss://127.0.0.1:")
        assert "client certificate" in message
        assert "set POSTROOM_REDIS_CERT_FILE and POSTROOM_REDIS_KEY_FILE" in message

    stranger = tls_settings(
        tls_redis, tmp_path, redis_cert_file=certs.stranger_cert, redis_key_file=certs.stranger_key
    )
    message = refusal(stranger)
    assert message.startswith("POSTROOM_REDIS_CERT_FILE: Redis at rediss://127.0.0.1:")
    assert f"the client certificate {certs.stranger_cert}" in message
    assert "it must be signed by a CA the server trusts" in message

    plain = tls_settings(
        tls_redis,
        tmp_path,
        redis_url=tls_redis.url.replace("rediss://", "redis://"),
        redis_ca_file=None,
        redis_cert_file=None,
        redis_key_file=None,
    )
    assert refusal(plain) == (
        f"REDIS_URL: Redis at redis://127.0.0.1:{tls_redis.port}/0 speaks TLS only: use "
        "rediss:// (or POSTROOM_REDIS_TLS=true) with POSTROOM_REDIS_CA_FILE"
    )
    assert tls_redis.password not in caplog.text


def test_redis_tls_files_are_checked_at_start_naming_the_variable(
    tls_redis: TlsServer, tmp_path: Path
) -> None:
    certs = tls_redis.certificates

    def invalid(**changes: Any) -> str:
        with pytest.raises(ConfigError) as caught:
            tls_settings(tls_redis, tmp_path, **changes)
        return str(caught.value)

    not_pem = tmp_path / "not-a-certificate.pem"
    not_pem.write_text("hello\n")
    assert "POSTROOM_REDIS_CA_FILE: Value error, holds no PEM CA certificate" in invalid(
        redis_ca_file=not_pem
    )
    assert "POSTROOM_REDIS_CA_FILE: Path does not point to a file" in invalid(
        redis_ca_file=tmp_path / "missing.pem"
    )
    mismatched = invalid(redis_key_file=certs.server_key)
    assert (
        "POSTROOM_REDIS_CERT_FILE: Value error, certificate and key do not load with " in mismatched
    )
    assert f"POSTROOM_REDIS_KEY_FILE={certs.server_key}" in mismatched
    assert (
        "POSTROOM_REDIS_CERT_FILE: Value error, is needed with POSTROOM_REDIS_KEY_FILE"
        in invalid(redis_cert_file=None)
    )
    without_tls = invalid(redis_url="redis://127.0.0.1:1/0", redis_ca_file=None)
    assert "POSTROOM_REDIS_KEY_FILE: Value error, needs TLS" in without_tls
    assert "POSTROOM_REDIS_CERT_FILE: Value error, needs TLS" in without_tls


def test_redis_tls_to_a_plain_server_stops_the_start_naming_the_variable(
    password_redis: AclServer, tls_redis: TlsServer, tmp_path: Path
) -> None:
    """rediss:// to a server without TLS: its silence is not taken for an outage."""
    settings = tls_settings(
        tls_redis,
        tmp_path,
        redis_url=f"rediss://{password_redis.address}/0",
        redis_password=password_redis.password,
    )
    assert refusal(settings) == (
        f"REDIS_URL: Redis at rediss://{password_redis.address}/0 speaks plain Redis, not TLS: "
        "use redis:// and leave POSTROOM_REDIS_TLS unset, or enable TLS on it"
    )


async def test_redis_tls_certificate_for_another_host_is_refused_unless_allowed(
    tls_redis: TlsServer, tmp_path: Path
) -> None:
    """The right CA signed it, but for redis.elsewhere.example: a hostname check refuses it
    (POSTROOM_REDIS_TLS_CHECK_HOSTNAME, on by default), and only turning it off lets it by."""
    certs = tls_redis.certificates
    misnamed = TlsServer(
        tmp_path / "misnamed", certs, "misnamed-pw", (certs.misnamed_cert, certs.misnamed_key)
    )
    with started(misnamed):
        settings = tls_settings(misnamed, tmp_path)
        message = refusal(settings)
        assert message.startswith(
            f"POSTROOM_REDIS_TLS_CHECK_HOSTNAME: the certificate of Redis at "
            f"rediss://127.0.0.1:{misnamed.port}/0 does not name that host (IP address mismatch"
        )
        assert await client_refusal(settings) == message
        unchecked = tls_settings(misnamed, tmp_path, redis_tls_check_hostname=False)
        await run_jobs_end_to_end(unchecked)


async def test_redis_tls_cluster_runs_jobs_with_a_client_certificate(
    tls_redis: TlsServer, tmp_path: Path
) -> None:
    """POSTROOM_REDIS_CLUSTER with POSTROOM_REDIS_TLS: the Cluster client takes the same CA
    and client pair; the wrong CA names its variable there too."""
    certs = tls_redis.certificates
    node = start_tls_cluster(tmp_path / "tls-cluster", certs, "tls-cluster-pw")
    try:
        settings = tls_settings(
            node,
            tmp_path,
            redis_url=None,
            redis_cluster=f"127.0.0.1:{node.port}",
            redis_tls=True,
            redis_password="tls-cluster-pw",
        )
        await run_jobs_end_to_end(settings)
        wrong_ca = settings.model_copy(update={"redis_ca_file": certs.other_ca})
        message = await client_refusal(wrong_ca)
        assert message.startswith(
            f"POSTROOM_REDIS_CA_FILE: the certificate of the Cluster at "
            f"POSTROOM_REDIS_CLUSTER=127.0.0.1:{node.port} does not verify against "
        )
    finally:
        node.stop()


async def test_redis_tls_sentinel_set_runs_jobs_and_names_a_wrong_ca(
    tls_sentinel_set: SentinelSet, tmp_path: Path
) -> None:
    """Sentinels and data nodes over TLS with client certificates: the sentinels' connections
    and the data nodes' take the same CA and pair."""
    node = tls_sentinel_set.nodes[0]
    assert isinstance(node, TlsProcess)
    certs = node.certificates
    settings = load_settings(
        redis_sentinels=tls_sentinel_set.addresses,
        redis_password=tls_sentinel_set.password,
        redis_sentinel_password=tls_sentinel_set.sentinel_password,
        redis_tls=True,
        redis_ca_file=certs.ca,
        redis_cert_file=certs.client_cert,
        redis_key_file=certs.client_key,
        key_prefix=f"tls-{uuid.uuid4().hex[:10]}",
        data_dir=tmp_path,
        shutdown_grace=5,
    )
    await run_jobs_end_to_end(settings)
    wrong_ca = settings.model_copy(update={"redis_ca_file": certs.other_ca})
    assert refusal(wrong_ca).startswith(
        "POSTROOM_REDIS_CA_FILE: the certificate of the sentinel at 127.0.0.1:"
    )
