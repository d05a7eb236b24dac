"""Loading the keyring from its settings: configured keys, or the generated default key."""

from __future__ import annotations

import base64
import logging
import os
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from config.encryption import EncryptionSettings
from config.errors import ConfigError
from tasks.encryption import GENERATED_KEY_ID, Envelope, Keyring, decode_key, load_keyring

KEY_A = os.urandom(32)
KEY_B = os.urandom(32)


def b64(key: bytes) -> SecretStr:
    return SecretStr(base64.b64encode(key).decode())


def test_configured_keys_with_an_active_one(tmp_path: Path) -> None:
    settings = EncryptionSettings(keys={"a": b64(KEY_A), "b": b64(KEY_B)}, active_key_id="b")
    keyring = load_keyring(settings, tmp_path)
    assert keyring.active_key_id == "b"
    assert keyring.key_ids == {"a", "b"}
    assert not (tmp_path / "encryption.key").exists()


def test_a_single_key_is_active_by_default(tmp_path: Path) -> None:
    keyring = load_keyring(EncryptionSettings(keys={"only": b64(KEY_A)}), tmp_path)
    assert keyring.active_key_id == "only"


def test_url_safe_and_unpadded_base64_keys_are_accepted() -> None:
    text = base64.urlsafe_b64encode(KEY_A).decode().rstrip("=")
    assert decode_key(text) == KEY_A


def test_rotation_from_key_a_to_key_b_via_settings(tmp_path: Path) -> None:
    old = load_keyring(EncryptionSettings(keys={"a": b64(KEY_A)}), tmp_path).encrypt(
        b"original", message_id="m"
    )
    both = load_keyring(
        EncryptionSettings(keys={"a": b64(KEY_A), "b": b64(KEY_B)}, active_key_id="b"), tmp_path
    )
    rotated = both.rotate(old, message_id="m")
    assert rotated.key_id == "b"
    assert both.decrypt(rotated, message_id="m") == b"original"
    assert both.decrypt(old, message_id="m") == b"original"


def test_the_generated_key_is_private_reused_and_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    first = load_keyring(EncryptionSettings(), tmp_path)
    path = tmp_path / "encryption.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert first.active_key_id == GENERATED_KEY_ID
    envelope = first.encrypt(b"kept across restarts", message_id="m")

    second = load_keyring(EncryptionSettings(), tmp_path)

    assert second.decrypt(envelope, message_id="m") == b"kept across restarts"
    assert [p.name for p in tmp_path.iterdir()] == ["encryption.key"]  # no temporary left
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert all("generated" in r.getMessage() and str(path) in r.getMessage() for r in warnings)
    key_text = path.read_text().strip()
    assert key_text not in caplog.text


def test_the_generated_key_file_can_be_moved(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "postroom.key"
    keyring = load_keyring(EncryptionSettings(key_file=path), tmp_path / "data")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert keyring.decrypt(keyring.encrypt(b"x", message_id="m"), message_id="m") == b"x"
    assert not (tmp_path / "data" / "encryption.key").exists()


def test_a_generated_key_written_by_another_process_is_used(tmp_path: Path) -> None:
    (tmp_path / "encryption.key").write_text(base64.b64encode(KEY_A).decode() + "\n")
    os.chmod(tmp_path / "encryption.key", 0o600)
    keyring = load_keyring(EncryptionSettings(), tmp_path)
    envelope = Keyring({"other": KEY_A}, "other").encrypt(b"x", message_id="m")
    rewrapped = Envelope(GENERATED_KEY_ID, envelope.nonce, envelope.ciphertext)
    assert keyring.decrypt(rewrapped, message_id="m") == b"x"


@pytest.mark.parametrize(
    ("settings", "named", "complaint"),
    [
        (
            EncryptionSettings(keys={"a": SecretStr("not base64!")}),
            "POSTROOM_ENCRYPTION__KEYS",
            "base64",
        ),
        (
            EncryptionSettings(keys={"a": b64(b"sixteen byte key")}),
            "POSTROOM_ENCRYPTION__KEYS",
            "16 bytes",
        ),
        (
            EncryptionSettings(keys={"a": b64(KEY_A)}, active_key_id="b"),
            "POSTROOM_ENCRYPTION__ACTIVE_KEY_ID",
            "'b' is not among",
        ),
        (
            EncryptionSettings(keys={"a": b64(KEY_A), "b": b64(KEY_B)}),
            "POSTROOM_ENCRYPTION__ACTIVE_KEY_ID",
            "required",
        ),
        (
            EncryptionSettings(keys={"a:1": b64(KEY_A)}),
            "POSTROOM_ENCRYPTION__KEYS",
            "key id",
        ),
        (
            EncryptionSettings(active_key_id="b"),
            "POSTROOM_ENCRYPTION__ACTIVE_KEY_ID",
            "empty",
        ),
        (
            EncryptionSettings(keys={"a": b64(KEY_A)}, key_file=Path("k")),
            "POSTROOM_ENCRYPTION__KEY_FILE",
            "only used",
        ),
    ],
)
def test_invalid_configuration_names_the_setting(
    settings: EncryptionSettings, named: str, complaint: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_keyring(settings, tmp_path)
    message = str(caught.value)
    assert named in message
    assert complaint in message
    for secret in settings.keys.values():
        assert secret.get_secret_value() not in message


def test_a_corrupt_key_file_names_the_setting_and_file(tmp_path: Path) -> None:
    path = tmp_path / "encryption.key"
    path.write_text("garbage!\n")
    with pytest.raises(ConfigError, match="POSTROOM_ENCRYPTION__KEY_FILE") as caught:
        load_keyring(EncryptionSettings(), tmp_path)
    assert str(path) in str(caught.value)
