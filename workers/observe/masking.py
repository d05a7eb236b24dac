"""Payloads as an operator may see them: message bodies and secrets replaced by "***".

The admin API and the CLI show jobs' payloads; a payload carries what users wrote (a
message's content, a notification's title and text) and sometimes credentials, which an
operator's screen must not. An error quoting its payload (`ValueError(f"cannot send
{content}")`) must not show them either: `masked_text` takes the values `mask` hides out of
an error's text, in the views and in the workers' log lines.
"""

from __future__ import annotations

import re
from typing import Any

from config.redaction import MASK, redact_credentials
from workers.store.dead_letter import DeadLetter, opened_letter
from workers.store.job_status import JobInfo
from workers.store.sealing import NO_SEALER, PayloadSealer

__all__ = ["MASK", "hidden_values", "mask", "masked_job", "masked_letter", "masked_text"]

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
# A hidden value shorter than this is left in an error's text: too likely a mere word there.
MIN_QUOTED = 4


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
    return mask(value, body=_is_body(normal))


def _is_body(normal: str) -> bool:
    return normal in BODY_FIELDS or normal.endswith(("content", "body"))


def hidden_values(value: Any, *, hidden: bool = False) -> set[str]:
    """The texts `mask` hides in `value` (bodies, secrets), to find them quoted elsewhere."""
    if isinstance(value, dict):
        found: set[str] = set()
        for key, item in value.items():
            normal = _normal(str(key))
            inner = hidden or _is_body(normal) or bool(_SECRET.search(normal))
            found |= hidden_values(item, hidden=inner)
        return found
    if isinstance(value, list):
        return set().union(*(hidden_values(item, hidden=hidden) for item in value))
    if hidden and isinstance(value, str | int | float) and not isinstance(value, bool):
        text = str(value)
        return {text} if len(text) >= MIN_QUOTED else set()
    return set()


def masked_text(text: str, payload: Any) -> str:
    """`text` (an error's message or traceback) with each value `mask` hides in `payload`
    replaced by `MASK`, and URL passwords redacted."""
    for value in sorted(hidden_values(payload), key=len, reverse=True):
        text = text.replace(value, MASK)
    return redact_credentials(text)


def masked_letter(letter: DeadLetter, sealer: PayloadSealer = NO_SEALER) -> DeadLetter:
    """A copy of a dead letter, opened with `sealer` (sealing.py), its payload masked and
    what that hides and URL passwords out of its errors, as the API and the CLI show it."""
    opened = opened_letter(sealer, letter)
    errors = [
        error.model_copy(
            update={
                "message": masked_text(error.message, opened.payload),
                "traceback": masked_text(error.traceback, opened.payload),
            }
        )
        for error in opened.errors
    ]
    return opened.model_copy(update={"payload": mask(opened.payload), "errors": errors})


def masked_job(info: JobInfo) -> JobInfo:
    """A copy of a job's status with its result masked, and what its payload's mask hides
    and URL passwords out of its error."""
    error = masked_text(info.error, info.payload) if info.error else info.error
    return info.model_copy(update={"result": mask(info.result), "error": error})
