"""AES-256-GCM encryption of message payloads under a keyring that supports rotation.

The keyring itself is the runtime's (`workers.Keyring`, shared with the sealing of job
payloads in Redis); here are the async helpers that keep large payloads off the event loop.

keyring = load_keyring(settings.encryption, settings.data_dir)
text = (await encrypt_async(keyring, body, message_id=id)).to_text()  # store in a column
body = await decrypt_async(keyring, Envelope.from_text(text), message_id=id)
"""

from tasks.encryption.offload import OFFLOAD_THRESHOLD, decrypt_async, encrypt_async, rotate_async
from workers import (
    GENERATED_KEY_ID,
    DecryptionError,
    EncryptionError,
    Envelope,
    Keyring,
    MalformedEnvelope,
    UnknownKeyError,
    decode_key,
    load_keyring,
)

__all__ = [
    "GENERATED_KEY_ID",
    "OFFLOAD_THRESHOLD",
    "DecryptionError",
    "EncryptionError",
    "Envelope",
    "Keyring",
    "MalformedEnvelope",
    "UnknownKeyError",
    "decode_key",
    "decrypt_async",
    "encrypt_async",
    "load_keyring",
    "rotate_async",
]
