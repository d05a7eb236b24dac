"""Async encryption that keeps large payloads off the event loop.

AES-GCM runs at a few hundred megabytes a second here, so a few kilobytes cost microseconds and
a thread hop would cost more, while a multi-megabyte attachment would stall every other job of
the worker. In a thread, the keyring works through a large payload in chunks (see gcm.py), so
the event loop gets the GIL back every few milliseconds. Sizes of `str` payloads are counted in
characters.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from workers import Envelope, Keyring

OFFLOAD_THRESHOLD = 64 * 1024

P = ParamSpec("P")
R = TypeVar("R")


async def _off_loop_if_large(
    size: int, threshold: int, function: Callable[P, R], *args: P.args, **kwargs: P.kwargs
) -> R:
    """`function(...)` in a worker thread when `size` exceeds `threshold`, else inline."""
    if size > threshold:
        return await asyncio.to_thread(function, *args, **kwargs)
    return function(*args, **kwargs)


async def encrypt_async(
    keyring: Keyring,
    plaintext: bytes | str,
    *,
    message_id: str,
    threshold: int = OFFLOAD_THRESHOLD,
) -> Envelope:
    """`keyring.encrypt`, in a worker thread when the payload is larger than `threshold`."""
    return await _off_loop_if_large(
        len(plaintext), threshold, keyring.encrypt, plaintext, message_id=message_id
    )


async def decrypt_async(
    keyring: Keyring,
    envelope: Envelope,
    *,
    message_id: str,
    threshold: int = OFFLOAD_THRESHOLD,
) -> bytes:
    """`keyring.decrypt`, in a worker thread when the ciphertext is larger than `threshold`."""
    return await _off_loop_if_large(
        len(envelope.ciphertext), threshold, keyring.decrypt, envelope, message_id=message_id
    )


async def rotate_async(
    keyring: Keyring,
    envelope: Envelope,
    *,
    message_id: str,
    threshold: int = OFFLOAD_THRESHOLD,
) -> Envelope:
    """`keyring.rotate`, in a worker thread when the ciphertext is larger than `threshold`."""
    # Already under the active key: rotate returns it as is, no work to move off the loop.
    size = 0 if envelope.key_id == keyring.active_key_id else len(envelope.ciphertext)
    return await _off_loop_if_large(
        size, threshold, keyring.rotate, envelope, message_id=message_id
    )
