"""Encryption failures; all permanent, since stored bytes do not heal by retrying."""

from __future__ import annotations

from workers.errors import PermanentError


class EncryptionError(PermanentError):
    """Base of the keyring's errors; messages name key and message ids, never keys or data."""


class MalformedEnvelope(EncryptionError, ValueError):
    """Raised when an envelope's stored text cannot be parsed."""


class DecryptionError(EncryptionError):
    """Raised when an envelope does not authenticate: tampered, or bound to another message."""


class UnknownKeyError(DecryptionError, LookupError):
    """Raised when an envelope names a key id the keyring does not hold."""
