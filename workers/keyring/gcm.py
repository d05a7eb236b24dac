"""AES-GCM sealing that lets other threads run while it works through a large payload.

cryptography's one-shot `AESGCM` holds the GIL for the whole call, so from a worker thread a
256 MiB payload would still freeze the event loop for most of a second. Past one chunk the same
GCM computation runs through the incremental interface a chunk at a time, and the GIL changes
hands between chunks. Both paths produce the same bytes: ciphertext followed by the 16-byte tag.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

CHUNK_BYTES = 1 << 20  # about 3 ms of AES-GCM: the longest the GIL is held at a time
TAG_BYTES = 16


def _chunks(data: bytes | memoryview) -> list[memoryview]:
    view = memoryview(data)
    return [view[start : start + CHUNK_BYTES] for start in range(0, len(view), CHUNK_BYTES)]


def seal(
    key: bytes, nonce: bytes, data: bytes, associated_data: bytes, aead: AESGCM | None = None
) -> bytes:
    """`aead`: the key's AESGCM, made once (making one costs more than sealing a small job)."""
    if len(data) <= CHUNK_BYTES:
        return (aead or AESGCM(key)).encrypt(nonce, data, associated_data)
    encryptor = Cipher(algorithms.AES(key), modes.GCM(nonce)).encryptor()
    encryptor.authenticate_additional_data(associated_data)
    parts = [encryptor.update(chunk) for chunk in _chunks(data)]
    parts.append(encryptor.finalize())
    parts.append(encryptor.tag)
    return b"".join(parts)


def unseal(
    key: bytes, nonce: bytes, sealed: bytes, associated_data: bytes, aead: AESGCM | None = None
) -> bytes:
    """The plaintext, or `cryptography.exceptions.InvalidTag` if it does not authenticate.

    The chunked path buffers the plaintext and returns it only after the tag verified.
    """
    if len(sealed) <= CHUNK_BYTES + TAG_BYTES:
        return (aead or AESGCM(key)).decrypt(nonce, sealed, associated_data)
    view = memoryview(sealed)
    ciphertext, tag = view[:-TAG_BYTES], bytes(view[-TAG_BYTES:])
    decryptor = Cipher(algorithms.AES(key), modes.GCM(nonce, tag)).decryptor()
    decryptor.authenticate_additional_data(associated_data)
    parts = [decryptor.update(chunk) for chunk in _chunks(ciphertext)]
    parts.append(decryptor.finalize())
    return b"".join(parts)
