"""AES-256-GCM encryption of message payloads under a keyring that supports rotation.

keyring = load_keyring(settings.encryption, settings.data_dir)
text = (await encrypt_async(keyring, body, message_id=id)).to_text()  # store in a column
body = await decrypt_async(keyring, Envelope.from_text(text), message_id=id)
"""

from tasks.encryption.envelope import Envelope
from tasks.encryption.errors import (
    DecryptionError,
    EncryptionError,
    MalformedEnvelope,
    UnknownKeyError,
)
from tasks.encryption.keyring import Keyring
from tasks.encryption.loading import GENERATED_KEY_ID, decode_key, load_keyring
from tasks.encryption.offload import OFFLOAD_THRESHOLD, decrypt_async, encrypt_async, rotate_async

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
