"""Payloads as an operator may see them: message bodies and secrets replaced by "***".

The admin API and the CLI show jobs' payloads; a payload carries what users wrote (a
message's content, a notification's title and text) and sometimes credentials, which an
operator's screen must not.
"""

from __future__ import annotations

import re
from typing import Any

from config.redaction import MASK, redact_credentials
from workers.store.dead_letter import DeadLetter, opened_letter
from workers.store.job_status import JobInfo
from workers.store.sealing import NO_SEALER, PayloadSealer

__all__ = ["MASK", "mask", "masked_job", "masked_letter"]

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
    """A copy of `value` with body text and secret-looking fields replaced by `MASK`, and
    the password of any URL in its other text."""
    if isinstance(value, dict):
        return {key: _masked_field(str(key), item) for key, item in value.items()}
    if isinstance(value, list):
        return [mask(item, body=body) for item in value]
    if body and value is not None:
        return MASK
    if isinstance(value, str):
        return redact_credentials(value)
    return value


def _masked_field(name: str, value: Any) -> Any:
    normal = _normal(name)
    if _SECRET.search(normal) and value is not None:
        return MASK
    return mask(value, body=normal in BODY_FIELDS or normal.endswith(("content", "body")))


def masked_letter(letter: DeadLetter, sealer: PayloadSealer = NO_SEALER) -> DeadLetter:
    """A copy of a dead letter, opened with `sealer` (sealing.py), its payload masked and URL
    passwords out of its errors, as the API and the CLI show it."""
    opened = opened_letter(sealer, letter)
    errors = [
        error.model_copy(
            update={
                "message": redact_credentials(error.message),
                "traceback": redact_credentials(error.traceback),
            }
        )
        for error in opened.errors
    ]
    return opened.model_copy(update={"payload": mask(opened.payload), "errors": errors})


def masked_job(info: JobInfo) -> JobInfo:
    """A copy of a job's status with its result masked and URL passwords out of its error."""
    error = redact_credentials(info.error) if info.error else info.error
    return info.model_copy(update={"result": mask(info.result), "error": error})
