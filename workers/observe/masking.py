"""Payloads as an operator may see them: message bodies and secrets replaced by "***".

The admin API and the CLI show jobs' payloads; a payload carries what users wrote (a
message's content, a notification's title and text) and sometimes credentials, which an
operator's screen must not.
"""

from __future__ import annotations

import re
from typing import Any

from workers.store.dead_letter import DeadLetter, opened_letter
from workers.store.sealing import NO_SEALER, PayloadSealer

MASK = "***"

# Fields holding what a user wrote: their text is hidden, a nested object is looked into.
BODY_FIELDS = frozenset(
    {"content", "body", "message", "title", "text", "html", "subject", "plaintext", "preview"}
)
# Fields whose whole value is hidden, whatever it holds: credentials, template variables
# (they fill a body), ciphertext.
_SECRET = re.compile(
    r"password|passwd|secret|token|apikey|authorization|credential|privatekey|signature"
    r"|variables|ciphertext|envelope|key$"
)


def _normal(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def mask(value: Any, *, body: bool = False) -> Any:
    """A copy of `value` with body text and secret-looking fields replaced by `MASK`."""
    if isinstance(value, dict):
        return {key: _masked_field(str(key), item) for key, item in value.items()}
    if isinstance(value, list):
        return [mask(item, body=body) for item in value]
    if body and value is not None:
        return MASK
    return value


def _masked_field(name: str, value: Any) -> Any:
    normal = _normal(name)
    if _SECRET.search(normal) and value is not None:
        return MASK
    return mask(value, body=normal in BODY_FIELDS or normal.endswith(("content", "body")))


def masked_letter(letter: DeadLetter, sealer: PayloadSealer = NO_SEALER) -> DeadLetter:
    """A copy of a dead letter, opened with `sealer` (sealing.py) and its payload masked, as
    the API and the CLI show it."""
    opened = opened_letter(sealer, letter)
    return opened.model_copy(update={"payload": mask(opened.payload)})
