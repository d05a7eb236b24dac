"""Settings of the message-encryption keyring: AES-256 keys by id and which one encrypts.

Meant to sit in the settings as `encryption`, so the environment reads e.g.
`POSTROOM_ENCRYPTION__KEYS='{"2024-06": "<base64 of 32 bytes>"}'` and
`POSTROOM_ENCRYPTION__ACTIVE_KEY_ID=2024-06`. With no keys at all, a key is generated into
`key_file` (default `<data_dir>/encryption.key`): fine for one machine, but that key lives next
to the data it protects, so production configures `keys`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, SecretStr

# The environment variables error messages name (see ConfigError).
ENV_PREFIX = "POSTROOM_ENCRYPTION__"
KEYS_SETTING = f"{ENV_PREFIX}KEYS"
ACTIVE_KEY_SETTING = f"{ENV_PREFIX}ACTIVE_KEY_ID"
KEY_FILE_SETTING = f"{ENV_PREFIX}KEY_FILE"


class EncryptionSettings(BaseModel):
    """The keyring's configuration; `workers.load_keyring` validates and loads it.

    Rotation: add the new key to `keys`, make it `active_key_id`, keep the old ones until every
    stored envelope was rotated (the envelope names its key, so old keys still decrypt).
    """

    model_config = ConfigDict(frozen=True)

    # Key id -> base64 (standard or URL-safe) of a 32-byte key.
    keys: dict[str, SecretStr] = {}
    # The key new envelopes use; may be omitted when `keys` holds exactly one key.
    active_key_id: str | None = None
    # Where the generated key lives when `keys` is empty (default `<data_dir>/encryption.key`).
    key_file: Path | None = None
