"""Loading the Redis TLS files at start, so a bad one stops the process naming its variable
instead of failing every connection later with an OpenSSL error."""

from __future__ import annotations

import ssl
from pathlib import Path


def load_ca(ca_file: Path) -> None:
    """ValueError unless `ca_file` holds at least one PEM certificate."""
    context = ssl.create_default_context(cafile=None)
    try:
        context.load_verify_locations(cafile=str(ca_file))
    except (ssl.SSLError, ValueError) as exc:
        raise ValueError(f"holds no PEM CA certificate ({_reason(exc)})") from None


def load_pair(cert_file: Path, key_file: Path | None) -> None:
    """ValueError unless the certificate and its private key load and match (an encrypted
    key cannot be used: no passphrase is asked for)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_cert_chain(
            str(cert_file), str(key_file) if key_file else None, password=_no_passphrase
        )
    except (ssl.SSLError, ValueError) as exc:
        key = f"with POSTROOM_REDIS_KEY_FILE={key_file}" if key_file else "(no key file set)"
        raise ValueError(
            f"certificate and key do not load {key}: {_reason(exc)}; both must be PEM, the "
            f"key unencrypted and the certificate's"
        ) from None


def _no_passphrase() -> str:
    raise ValueError("the private key is encrypted")


def _reason(exc: Exception) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason) if reason else str(exc)
