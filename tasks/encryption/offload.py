"""Async encryption that keeps large payloads off the event loop.

AES-GCM runs at a few hundred megabytes a second here, so a few kilobytes cost microseconds and
a thread hop would cost more, while a multi-megabyte attachment would stall every other job of
the worker. In a thread, the keyring works through a large payload in chunks (see gcm.py), so
the event loop gets the GIL back every few milliseconds. Sizes of `str` payloads are counted in
characters.
"""

from __future__ import annotations

import asyncio

from tasks.encryption.envelope import Envelope
from tasks.encryption.keyring import Keyring

OFFLOAD_THRESHOLD = 64 * 1024


async def encrypt_async(
    keyring: Keyring,
    plaintext: bytes | str,
    *,
    message_id: str,
    threshold: int = OFFLOAD_THRESHOLD,
) -> Envelope:
    """`keyring.encrypt`, in a worker thread when the payload is larger than `threshold`."""
    if len(plaintext) > threshold:
        return await asyncio.to_thread(keyring.encrypt, plaintext, message_id=message_id)
    return keyring.encrypt(plaintext, message_id=message_id)


async def decrypt_async(
    keyring: Keyring,
    envelope: Envelope,
    *,
    message_id: str,
    threshold: int = OFFLOAD_THRESHOLD,
) -> bytes:
    """`keyring.decrypt`, in a worker thread when the ciphertext is larger than `threshold`."""
    if len(envelope.ciphertext) > threshold:
        return await asyncio.to_thread(keyring.decrypt, envelope, message_id=message_id)
    return keyring.decrypt(envelope, message_id=message_id)


async def rotate_async(
    keyring: Keyring,
    envelope: Envelope,
    *,
    message_id: str,
    threshold: int = OFFLOAD_THRESHOLD,
) -> Envelope:
    """`keyring.rotate`, in a worker thread when the ciphertext is larger than `threshold`."""
    if envelope.key_id != keyring.active_key_id and len(envelope.ciphertext) > threshold:
        return await asyncio.to_thread(keyring.rotate, envelope, message_id=message_id)
    return keyring.rotate(envelope, message_id=message_id)
