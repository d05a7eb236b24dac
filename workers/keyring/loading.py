"""The keyring a worker starts with: the configured keys, or a generated key on a bare machine."""

from __future__ import annotations

import base64
import binascii
import logging
from pathlib import Path

from config.encryption import (
    ACTIVE_KEY_SETTING,
    KEY_FILE_SETTING,
    KEYS_SETTING,
    EncryptionSettings,
)
from config.errors import ConfigError
from workers.keyring.envelope import KEY_ID_PATTERN, valid_key_id
from workers.keyring.key_file import KeyFileError, read_or_create_key_file
from workers.keyring.keyring import KEY_BYTES, Keyring

DEFAULT_KEY_FILE = "encryption.key"
# The generated key's id; to move to configured keys, put the file's content in `keys` under
# this id (decrypt-only) beside the new active key, then rotate.
GENERATED_KEY_ID = "generated"

logger = logging.getLogger(__name__)


def decode_key(value: str) -> bytes:
    """A base64 key, standard or URL-safe alphabet, padding optional; ValueError names no data."""
    text = value.strip().translate(str.maketrans("-_", "+/"))
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not valid base64") from None
    if len(key) != KEY_BYTES:
        raise ValueError(f"decodes to {len(key)} bytes, expected {KEY_BYTES} (AES-256)")
    return key


def _configured_keyring(settings: EncryptionSettings) -> Keyring:
    keys: dict[str, bytes] = {}
    for key_id, secret in settings.keys.items():
        if not valid_key_id(key_id):
            raise ConfigError(
                f"{KEYS_SETTING}: key id {key_id!r} must match {KEY_ID_PATTERN.pattern}"
            )
        try:
            keys[key_id] = decode_key(secret.get_secret_value())
        except ValueError as exc:
            raise ConfigError(f"{KEYS_SETTING}: key {key_id!r} {exc}") from None
    known = ", ".join(sorted(keys))
    active = settings.active_key_id
    if active is None:
        if len(keys) > 1:
            raise ConfigError(
                f"{ACTIVE_KEY_SETTING} is required when {KEYS_SETTING} holds several keys ({known})"
            )
        (active,) = keys
    elif active not in keys:
        raise ConfigError(
            f"{ACTIVE_KEY_SETTING}={active!r} is not among the keys of {KEYS_SETTING} ({known})"
        )
    return Keyring(keys, active)


def _generated_keyring(settings: EncryptionSettings, data_dir: Path) -> Keyring:
    if settings.active_key_id not in (None, GENERATED_KEY_ID):
        raise ConfigError(
            f"{ACTIVE_KEY_SETTING}={settings.active_key_id!r} but {KEYS_SETTING} is empty"
        )
    path = settings.key_file or data_dir / DEFAULT_KEY_FILE
    try:
        key, created = read_or_create_key_file(path)
    except (KeyFileError, OSError) as exc:
        raise ConfigError(f"{KEY_FILE_SETTING}: {exc}") from None
    logger.warning(
        "no encryption keys configured (%s): using the key %s %s, which lives beside the data "
        "it protects; configure keys for production",
        KEYS_SETTING,
        "just generated in" if created else "generated earlier in",
        path,
    )
    return Keyring({GENERATED_KEY_ID: key}, GENERATED_KEY_ID)


def load_keyring(settings: EncryptionSettings, data_dir: Path) -> Keyring:
    """The keyring `settings` describe; ConfigError naming the setting when they are wrong.

    With no keys configured, the key in `key_file` (default `<data_dir>/encryption.key`) is
    used, generated on first start, and a warning says so on every start.
    """
    if not settings.keys:
        return _generated_keyring(settings, data_dir)
    if settings.key_file is not None:
        raise ConfigError(
            f"{KEY_FILE_SETTING} is only used when {KEYS_SETTING} is empty; unset one of them"
        )
    return _configured_keyring(settings)
