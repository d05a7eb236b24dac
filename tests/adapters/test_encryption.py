"""The AES-256-GCM keyring and its envelopes."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os

import pytest

from tasks.encryption import (
    DecryptionError,
    Envelope,
    Keyring,
    MalformedEnvelope,
    UnknownKeyError,
    decrypt_async,
    encrypt_async,
    rotate_async,
)
from workers.errors import PermanentError

KEY_A = os.urandom(32)
KEY_B = os.urandom(32)


def keyring_a() -> Keyring:
    return Keyring({"a": KEY_A}, "a")


def test_round_trip_through_the_text_form() -> None:
    keyring = keyring_a()
    envelope = keyring.encrypt("héllo, wörld", message_id="msg-1")
    text = envelope.to_text()
    assert text.startswith("v1:a:")
    assert "héllo" not in text
    parsed = Envelope.from_text(text)
    assert parsed == envelope
    assert keyring.decrypt(parsed, message_id="msg-1") == "héllo, wörld".encode()


@pytest.mark.parametrize("size", [0, 1, 2, 100])  # every ciphertext length modulo 3
def test_the_text_form_holds_each_part_in_unpadded_base64url(size: int) -> None:
    envelope = keyring_a().encrypt(os.urandom(size), message_id="msg-1")

    def url(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    assert envelope.to_text() == f"v1:a:{url(envelope.nonce)}:{url(envelope.ciphertext)}"


def test_every_encryption_uses_a_fresh_nonce() -> None:
    keyring = keyring_a()
    first = keyring.encrypt(b"same", message_id="m")
    second = keyring.encrypt(b"same", message_id="m")
    assert len(first.nonce) == 12
    assert first.nonce != second.nonce
    assert first.ciphertext != second.ciphertext


def test_the_message_id_is_bound_as_associated_data() -> None:
    keyring = keyring_a()
    envelope = keyring.encrypt(b"secret body", message_id="msg-1")
    with pytest.raises(DecryptionError) as caught:
        keyring.decrypt(envelope, message_id="msg-2")
    assert isinstance(caught.value, PermanentError)
    assert "'msg-2'" in str(caught.value)
    assert "'a'" in str(caught.value)
    assert "secret body" not in str(caught.value)


def test_tampered_ciphertext_fails_to_decrypt() -> None:
    keyring = keyring_a()
    envelope = keyring.encrypt(b"secret body", message_id="m")
    flipped = bytes([envelope.ciphertext[0] ^ 1]) + envelope.ciphertext[1:]
    with pytest.raises(DecryptionError, match="authentication failed"):
        keyring.decrypt(dataclasses.replace(envelope, ciphertext=flipped), message_id="m")


def test_an_unknown_key_id_is_named() -> None:
    envelope = Keyring({"gone": KEY_B}, "gone").encrypt(b"x", message_id="m")
    with pytest.raises(UnknownKeyError, match="'gone'") as caught:
        keyring_a().decrypt(envelope, message_id="m")
    assert isinstance(caught.value, PermanentError)
    assert KEY_B.hex() not in str(caught.value)


def test_rotation_re_encrypts_under_the_active_key() -> None:
    old = keyring_a().encrypt(b"original", message_id="m")
    both = Keyring({"a": KEY_A, "b": KEY_B}, "b")

    rotated = both.rotate(old, message_id="m")

    assert rotated.key_id == "b"
    assert both.decrypt(rotated, message_id="m") == b"original"
    # Old envelopes keep decrypting while key A stays in the keyring.
    assert both.decrypt(old, message_id="m") == b"original"
    # Already under the active key: nothing to do.
    assert both.rotate(rotated, message_id="m") is rotated
    # Rotation still authenticates: the wrong message id fails.
    with pytest.raises(DecryptionError):
        both.rotate(old, message_id="other")


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "4"),
        ("v1:a:bm9uY2U", "4"),
        ("v2:a:AAAAAAAAAAAAAAAA:AAAAAAAAAAAAAAAAAAAAAA", "version"),
        ("v1:bad key:AAAAAAAAAAAAAAAA:AAAAAAAAAAAAAAAAAAAAAA", "key id"),
        ("v1:a:AAAA:AAAAAAAAAAAAAAAAAAAAAA", "nonce"),
        ("v1:a:AAAAAAAAAAAAAAAA:AAAA", "ciphertext"),
        ("v1:a:AAAAAAAAAAAAAAAA:AAAA+AAAAAAAAAAAAAAAAA", "base64url"),
    ],
)
def test_malformed_text_is_a_clear_permanent_error(text: str, complaint: str) -> None:
    with pytest.raises(MalformedEnvelope, match=complaint) as caught:
        Envelope.from_text(text)
    assert isinstance(caught.value, PermanentError)


def test_a_bad_key_table_is_refused() -> None:
    with pytest.raises(ValueError, match="32"):
        Keyring({"a": b"short"}, "a")
    with pytest.raises(ValueError, match="active"):
        Keyring({"a": KEY_A}, "b")
    with pytest.raises(ValueError, match="key id"):
        Keyring({"a:b": KEY_A}, "a:b")
    assert KEY_A.hex() not in repr(keyring_a())


async def test_a_large_payload_round_trips_through_the_async_helpers() -> None:
    keyring = Keyring({"a": KEY_A, "b": KEY_B}, "b")
    payload = os.urandom(1024 * 1024 + 7)

    envelope = await encrypt_async(keyring, payload, message_id="big")
    assert (
        await decrypt_async(keyring, Envelope.from_text(envelope.to_text()), message_id="big")
        == payload
    )

    old = await encrypt_async(Keyring({"a": KEY_A}, "a"), payload, message_id="big")
    rotated = await rotate_async(keyring, old, message_id="big")
    assert rotated.key_id == "b"
    assert await decrypt_async(keyring, rotated, message_id="big") == payload


async def test_a_large_payload_leaves_the_event_loop_running() -> None:
    keyring = keyring_a()
    payload = os.urandom(16 * 1024 * 1024)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0)
            ticks += 1

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0)
    try:
        before = ticks
        envelope = await encrypt_async(keyring, payload, message_id="big")
        during_encrypt = ticks - before
        before = ticks
        assert await decrypt_async(keyring, envelope, message_id="big") == payload
        during_decrypt = ticks - before
    finally:
        ticker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await ticker
    # Inline, the helpers would not yield at all; in a thread working in chunks, the loop
    # keeps serving other tasks meanwhile.
    assert during_encrypt > 2
    assert during_decrypt > 2


async def test_small_payloads_run_inline() -> None:
    keyring = keyring_a()
    envelope = await encrypt_async(keyring, "short", message_id="m")
    assert await decrypt_async(keyring, envelope, message_id="m") == b"short"
    with pytest.raises(DecryptionError):
        await decrypt_async(keyring, envelope, message_id="other")
