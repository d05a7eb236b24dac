"""What a Redis that refuses postroom means for the operator: the setting to fix.

An outage (a server restarting, a failover) is waited out, but a wrong password, an unknown
user, an ACL rule that lacks what postroom needs, or a TLS handshake that fails will never
mend, so they stop the process with the variable named. The messages quote the server's or
OpenSSL's reason and never a credential (neither says one).
"""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

from redis.exceptions import AuthenticationError, NoPermissionError, RedisError

from config.errors import ConfigError
from config.settings import PostroomSettings

ACL_HINT = "grant it postroom's ACL rule (README, Redis security)"


def credential_variables(settings: PostroomSettings) -> str:
    """Where the data nodes' credentials come from: REDIS_URL's user part, or the variables."""
    if settings.redis_url and urlsplit(settings.redis_url).password is not None:
        return "REDIS_URL"
    return "REDIS_USERNAME/REDIS_PASSWORD" if settings.redis_username else "REDIS_PASSWORD"


def never_mends(exc: BaseException) -> bool:
    """A refusal that retrying cannot change: credentials, permissions, TLS."""
    return isinstance(exc, (AuthenticationError, NoPermissionError)) or tls_failure(exc)


def tls_failure(exc: BaseException) -> bool:
    """Whether `exc` is a failed TLS handshake (or a TLS alert), not an outage."""
    return _tls_error(exc) is not None


def _tls_error(exc: BaseException) -> ssl.SSLError | None:
    """The OpenSSL error under redis-py's ConnectionError (it keeps it as the context)."""
    seen = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__  # type: ignore[assignment]
    return None


def refusal(exc: BaseException, settings: PostroomSettings, where: str) -> ConfigError | None:
    """The ConfigError `exc` means for a connection to `where` ("Redis at redis://host:6379/0",
    "the primary at host:port": never with credentials), or None for an outage to wait out."""
    if isinstance(exc, AuthenticationError):
        return _auth_refusal(exc, settings, where)
    if isinstance(exc, NoPermissionError):
        user = settings.redis_username or "default"
        return ConfigError(
            f"REDIS_USERNAME: the ACL user {user!r} of {where} lacks a permission "
            f"postroom needs ({exc}): {ACL_HINT}"
        )
    tls = _tls_error(exc)
    if tls is not None and isinstance(exc, (RedisError, OSError)):
        return _tls_refusal(tls, settings, where)
    return None


def _auth_refusal(exc: AuthenticationError, settings: PostroomSettings, where: str) -> ConfigError:
    variables = credential_variables(settings)
    text = str(exc)
    if "required" in text.lower():
        return ConfigError(
            f"REDIS_PASSWORD: {where} requires a password and none was given "
            f"({text}): set REDIS_PASSWORD (and REDIS_USERNAME for an ACL user)"
        )
    if "without any password configured" in text.lower():
        return ConfigError(f"REDIS_PASSWORD: {where} has no password, but one was given: unset it")
    user = settings.redis_username or "default"
    return ConfigError(
        f"{variables}: {where} refused user {user!r} with the password given "
        f"({text}): check the user name and the password"
    )


def _tls_refusal(tls: ssl.SSLError, settings: PostroomSettings, where: str) -> ConfigError:
    reason = str(tls.reason or tls)
    if isinstance(tls, ssl.SSLCertVerificationError) and "mismatch" in str(tls.verify_message):
        return ConfigError(
            f"POSTROOM_REDIS_TLS_CHECK_HOSTNAME: the certificate of {where} does not "
            f"name that host ({tls.verify_message}): connect by a name the certificate holds, "
            f"or set POSTROOM_REDIS_TLS_CHECK_HOSTNAME=false for a private CA that names none"
        )
    if isinstance(tls, ssl.SSLCertVerificationError):
        ca = settings.redis_ca_file
        trusted = f"{ca}" if ca else "the system's CAs (POSTROOM_REDIS_CA_FILE is unset)"
        return ConfigError(
            f"POSTROOM_REDIS_CA_FILE: the certificate of {where} does not verify "
            f"against {trusted}: {tls.verify_message or reason}"
        )
    if "CERTIFICATE_REQUIRED" in reason or (
        "HANDSHAKE_FAILURE" in reason and not settings.redis_cert_file
    ):
        return ConfigError(
            f"POSTROOM_REDIS_CERT_FILE: {where} asks for a client certificate "
            f"({reason}): set POSTROOM_REDIS_CERT_FILE and POSTROOM_REDIS_KEY_FILE"
        )
    if isinstance(tls, ssl.SSLEOFError):  # closed mid-handshake, before or instead of an alert
        cert = settings.redis_cert_file
        wanted = (
            f"it may not trust the client certificate {cert} (it must be signed by a CA the "
            f"server trusts)"
            if cert
            else "it may want a client certificate: set POSTROOM_REDIS_CERT_FILE and "
            "POSTROOM_REDIS_KEY_FILE"
        )
        return ConfigError(
            f"POSTROOM_REDIS_CERT_FILE: {where} closed the TLS handshake ({reason}): {wanted}"
        )
    if any(word in reason for word in ("UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_UNKNOWN")):
        return ConfigError(
            f"POSTROOM_REDIS_CERT_FILE: {where} refused the client certificate "
            f"{settings.redis_cert_file} ({reason}): it must be signed by a CA the server trusts"
        )
    return ConfigError(
        f"POSTROOM_REDIS_TLS: the TLS handshake with {where} failed ({reason}): "
        f"check that the server speaks TLS on that port"
    )
