"""AES-256-GCM with several keys by id: one active key encrypts, any held key decrypts.

One keyring for every sealed thing: stored messages (bound to their message id) and the
jobs' payloads in Redis (bound to job id, queue and field, workers/store/sealing.py). The
associated data makes a ciphertext copied elsewhere (a swapped column, another job's key)
fail to authenticate instead of decrypting.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from workers.keyring.envelope import (
    KEY_ID_PATTERN,
    NONCE_BYTES,
    Envelope,
    envelope_parts,
    envelope_text,
    valid_key_id,
)
from workers.keyring.errors import DecryptionError, UnknownKeyError
from workers.keyring.gcm import seal, unseal

KEY_BYTES = 32  # AES-256


def _associated_data(message_id: str) -> bytes:
    if not message_id:
        # An empty id would bind nothing; that is a caller's bug, not a data problem.
        raise ValueError("message_id must be a non-empty string")
    return message_id.encode("utf-8")


class Keyring:
    """Keys by id (32 bytes each) and the id of the one that encrypts.

    Construction raises ValueError for a bad key table; `load_keyring` turns configuration into
    a Keyring and reports such problems as ConfigError naming the setting.
    """

    def __init__(self, keys: Mapping[str, bytes], active_key_id: str) -> None:
        for key_id, key in keys.items():
            if not valid_key_id(key_id):
                raise ValueError(f"key id {key_id!r} must match {KEY_ID_PATTERN.pattern}")
            if len(key) != KEY_BYTES:
                raise ValueError(f"key {key_id!r} is {len(key)} bytes, expected {KEY_BYTES}")
        if active_key_id not in keys:
            raise ValueError(f"active key id {active_key_id!r} is not among the keys")
        self._keys = {key_id: bytes(key) for key_id, key in keys.items()}
        self._aead = {key_id: AESGCM(key) for key_id, key in self._keys.items()}
        self._active_key_id = active_key_id

    @property
    def active_key_id(self) -> str:
        return self._active_key_id

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._keys)

    def seal(self, data: bytes, associated_data: bytes) -> Envelope:
        """Encrypt under the active key with a fresh random 96-bit nonce, bound to
        `associated_data` (which opening must present again)."""
        nonce = os.urandom(NONCE_BYTES)
        key_id = self._active_key_id
        sealed = seal(self._keys[key_id], nonce, data, associated_data, self._aead[key_id])
        return Envelope(key_id, nonce, sealed)

    def open(
        self, envelope: Envelope, associated_data: bytes, what: str, *, bound_to: str
    ) -> bytes:
        """Decrypt with the key the envelope names; DecryptionError naming `what` (never the
        data) if the key is not held or it does not authenticate (`bound_to`: what the
        associated data names, for the message)."""
        key = self._keys.get(envelope.key_id)
        if key is None:
            raise UnknownKeyError(
                f"cannot decrypt {what}: key id {envelope.key_id!r} is not in "
                f"the keyring (holds {', '.join(sorted(self._keys))})"
            )
        try:
            aead = self._aead[envelope.key_id]
            return unseal(key, envelope.nonce, envelope.ciphertext, associated_data, aead)
        except InvalidTag:
            raise DecryptionError(
                f"cannot decrypt {what} with key {envelope.key_id!r}: "
                f"authentication failed (tampered, or encrypted for another {bound_to})"
            ) from None

    def seal_text(self, data: bytes, associated_data: bytes) -> str:
        """`seal(...).to_text()` without the envelope object in between: every job's payload
        is sealed here (workers/store/sealing.py), so it takes the shortest path."""
        nonce = os.urandom(NONCE_BYTES)
        key_id = self._active_key_id
        sealed = seal(self._keys[key_id], nonce, data, associated_data, self._aead[key_id])
        return envelope_text(key_id, nonce, sealed)

    def open_text(
        self, text: str, associated_data: bytes, what: Callable[[], str], *, bound_to: str
    ) -> bytes:
        """`open(Envelope.from_text(text), ...)` by the shortest path; anything unusual (a
        malformed text, a key not held) takes the long one, whose errors say what is wrong.
        `what` builds the errors' subject only when there is an error."""
        parts = envelope_parts(text)
        aead = None if parts is None else self._aead.get(parts[0])
        if parts is None or aead is None:
            return self.open(Envelope.from_text(text), associated_data, what(), bound_to=bound_to)
        key_id, nonce, ciphertext = parts
        try:
            return unseal(self._keys[key_id], nonce, ciphertext, associated_data, aead)
        except InvalidTag:
            raise DecryptionError(
                f"cannot decrypt {what()} with key {key_id!r}: "
                f"authentication failed (tampered, or encrypted for another {bound_to})"
            ) from None

    def encrypt(self, plaintext: bytes | str, *, message_id: str) -> Envelope:
        """Encrypt under the active key with a fresh random 96-bit nonce; str is UTF-8 encoded."""
        data = plaintext.encode("utf-8") if isinstance(plaintext, str) else plaintext
        return self.seal(data, _associated_data(message_id))

    def decrypt(self, envelope: Envelope, *, message_id: str) -> bytes:
        """Decrypt with the key the envelope names; DecryptionError if it does not authenticate."""
        return self.open(
            envelope, _associated_data(message_id), f"message {message_id!r}", bound_to="message id"
        )

    def rotate(self, envelope: Envelope, *, message_id: str) -> Envelope:
        """Re-encrypt under the active key; an envelope already under it is returned as is."""
        if envelope.key_id == self._active_key_id:
            return envelope
        return self.encrypt(self.decrypt(envelope, message_id=message_id), message_id=message_id)

    def __repr__(self) -> str:
        return f"Keyring(key_ids={sorted(self._keys)}, active={self._active_key_id!r})"
