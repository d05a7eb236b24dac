"""An encrypted payload and the compact text it is stored as in a database text column."""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass

import pybase64

from workers.keyring.errors import MalformedEnvelope

VERSION = "v1"
NONCE_BYTES = 12  # 96 bits, GCM's native nonce size
TAG_BYTES = 16
# Key ids appear in the text form, whose separator is ':'; keep them short and plain.
KEY_ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def valid_key_id(key_id: str) -> bool:
    return KEY_ID_PATTERN.fullmatch(key_id) is not None


# binascii's standard alphabet to and from base64url; every job payload passes through here
# (workers/store/sealing.py), so no regex and no base64-module wrappers on the way.
_FROM_URL = bytes.maketrans(b"-_", b"+/")
_NOT_URL = b"+/=\n\r\t "  # what standard base64 (and its lenient decoders) would take
_URL = b"-_"  # pybase64's altchars: base64url
_NONCE_CHARS = 16  # 12 bytes, unpadded: a whole number of base64 quanta


def _b64decode(text: str, part: str) -> bytes:
    # Strict: a stray character means a corrupted column, not something to guess around
    # (the standard alphabet's own '+' and '/' are dropped first, so the length tells, and
    # strict mode refuses anything else outside the alphabet).
    try:
        raw = text.encode("ascii")
        standard = raw.translate(_FROM_URL, _NOT_URL)
        if len(standard) != len(raw):
            raise ValueError(part)
        return binascii.a2b_base64(standard + b"=" * (-len(raw) % 4), strict_mode=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise MalformedEnvelope(f"envelope {part} is not base64url") from None


def envelope_text(key_id: str, nonce: bytes, ciphertext: bytes) -> str:
    """An envelope's text form from its parts (a valid key id and a 12-byte nonce, as the
    keyring's are). The nonce is whole base64 quanta, so nonce and ciphertext are encoded
    in one call (every job's payload is sealed here) and split after the nonce's characters."""
    encoded = pybase64.b64encode_as_string(nonce + ciphertext, _URL).rstrip("=")
    return f"{VERSION}:{key_id}:{encoded[:_NONCE_CHARS]}:{encoded[_NONCE_CHARS:]}"


# The quick path's decoder: SIMD base64 (pybase64), strict (`validate`) but for the standard
# alphabet's '+' and '/', and padding, which a base64url text does not hold: looked for by
# memchr (as ints: a bytes needle costs `in` a TypeError raised and cleared first).
_PADDING = (b"", b"===", b"==", b"=")
_PLUS, _SLASH, _EQUALS = b"+/="
_HEAD = VERSION.encode() + b":"


def envelope_parts(text: str) -> tuple[str, bytes, bytes] | None:
    """(key id, nonce, ciphertext) of a well-formed envelope text, None for any other text
    (`Envelope.from_text` then says what is wrong): the quick path of every job's payload,
    hence no split, and nonce and ciphertext decoded at once by a SIMD decoder."""
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        return None
    key_end = raw.find(b":", 3)
    nonce_end = key_end + 1 + _NONCE_CHARS
    if key_end < 4 or not raw.startswith(_HEAD) or raw[nonce_end : nonce_end + 1] != b":":
        return None
    encoded = raw[key_end + 1 : nonce_end] + raw[nonce_end + 1 :]
    if _PLUS in encoded or _SLASH in encoded or _EQUALS in encoded:
        return None
    try:
        # Positional: keyword arguments cost pybase64's parser more than the decoding itself.
        data = pybase64.b64decode(encoded + _PADDING[len(encoded) & 3], _URL, True)
    except binascii.Error:
        return None
    if len(data) < NONCE_BYTES + TAG_BYTES:
        return None
    return text[3:key_end], data[:NONCE_BYTES], data[NONCE_BYTES:]


@dataclass(frozen=True, repr=False)
class Envelope:
    """AES-256-GCM output: which key, the nonce, and the ciphertext with its 16-byte tag.

    Text form: `v1:<key_id>:<base64url nonce>:<base64url ciphertext>` (no padding), so the
    version allows a future format and the key id lets old keys decrypt after a rotation.
    """

    key_id: str
    nonce: bytes
    ciphertext: bytes

    def __post_init__(self) -> None:
        if not valid_key_id(self.key_id):
            raise MalformedEnvelope(f"envelope key id must match {KEY_ID_PATTERN.pattern}")
        if len(self.nonce) != NONCE_BYTES:
            raise MalformedEnvelope(
                f"envelope nonce is {len(self.nonce)} bytes, expected {NONCE_BYTES}"
            )
        if len(self.ciphertext) < TAG_BYTES:
            raise MalformedEnvelope(
                f"envelope ciphertext is {len(self.ciphertext)} bytes, shorter than its tag"
            )

    def to_text(self) -> str:
        return envelope_text(self.key_id, self.nonce, self.ciphertext)

    @classmethod
    def from_text(cls, text: str) -> Envelope:
        """Parse `to_text()` output; MalformedEnvelope says which part is wrong (not the data)."""
        parts = text.strip().split(":")
        if len(parts) != 4:
            raise MalformedEnvelope(
                f"envelope text has {len(parts)} ':'-separated parts, expected 4 "
                f"({VERSION}:<key_id>:<nonce>:<ciphertext>)"
            )
        version, key_id, nonce, ciphertext = parts
        if version != VERSION:
            raise MalformedEnvelope(f"unsupported envelope version {version[:8]!r}")
        return cls(key_id, _b64decode(nonce, "nonce"), _b64decode(ciphertext, "ciphertext"))

    def __repr__(self) -> str:
        # A repr ends up in logs and tracebacks: no ciphertext dump (it may be megabytes).
        return f"Envelope(key_id={self.key_id!r}, ciphertext=<{len(self.ciphertext)} bytes>)"
