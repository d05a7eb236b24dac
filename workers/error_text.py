"""How an exception is shown outside its job's try error: in log lines, spans, event dead
letters and the try error's own text.

A task's exception may quote its payload (`ValueError(f"bad phone {phone}")`). With payload
encryption on, Redis keeps that text sealed with the try's error (dead_letter.sealed_error),
which the admin tools open with the keys; logs and spans leave in plaintext. So there, by
default (`PostroomSettings.error_details`, POSTROOM_LOG_ERROR_DETAILS), an exception shows as
its type and `WITHHELD` only, but for postroom's own messages whose wording quotes no payload
(`own_words`: a timeout, a sealed value that does not open, a payload's invalid fields).

A pydantic `ValidationError`'s text quotes the values it refused (`input_value=...`): it is
never shown whole, anywhere, only each error's field and reason (its traceback line too).
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from typing import TypeVar, get_args

from pydantic import ValidationError
from pydantic_core.core_schema import ErrorType

E = TypeVar("E", bound=BaseException)

WITHHELD = "<message not logged: it is kept with the job's try error>"
_OWN_WORDS = "postroom_own_words"
# pydantic's reasons worded from the schema, never the input, but for those a validator
# writes itself (it may quote the value) and those naming a part of the input.
_SCHEMA_WORDED = frozenset(get_args(ErrorType)) - {
    "value_error",
    "assertion_error",
    "union_tag_invalid",
    "get_attribute_error",
}


def own_words(exc: E, text: str | None = None) -> E:
    """Mark `exc` as worded by postroom (or give it such a `text`): shown where an exception
    raised by a task is not, for it quotes no payload."""
    setattr(exc, _OWN_WORDS, str(exc) if text is None else text)
    return exc


def problems(
    error: ValidationError, *, prefix: str = "", empty: str = "<value>", quoting: bool = True
) -> list[tuple[str, str]]:
    """Each error's field (dotted, after `prefix`) and reason, never the value refused.
    Without `quoting`, a reason that may quote the value is its error type."""
    found = []
    for e in error.errors(include_input=False, include_url=False):
        where = prefix + ".".join(str(p) for p in e["loc"]) or empty
        worded = quoting or e["type"] in _SCHEMA_WORDED
        found.append((where, e["msg"] if worded else f"invalid ({e['type']})"))
    return found


def validation_text(error: ValidationError, *, quoting: bool = True) -> str:
    return "; ".join(f"{where}: {why}" for where, why in problems(error, quoting=quoting))


def shown(exc: BaseException, *, details: bool) -> str:
    """`exc`'s message for a log line or a span: whole with `details`, else only when
    postroom worded it (`own_words`), `WITHHELD` otherwise; a ValidationError's fields."""
    if isinstance(exc, ValidationError):
        return validation_text(exc, quoting=details)
    if details:
        return str(exc)
    own = getattr(exc, _OWN_WORDS, None)
    return own if isinstance(own, str) else WITHHELD


def message(exc: BaseException) -> str:
    """`exc`'s message as its try error and failed result keep it (sealed when payloads are)."""
    if isinstance(exc, ValidationError):
        return f"{exc.error_count()} validation error(s) for {exc.title}: {validation_text(exc)}"
    return str(exc)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        todo += [item.__cause__, item.__context__]
        if isinstance(item, BaseExceptionGroup):
            todo += item.exceptions


def traceback_text(exc: BaseException) -> str:
    """`exc`'s traceback (its causes' too), a ValidationError's text in it its fields only."""
    text = "".join(traceback.format_exception(exc))
    for item in _chain(exc):
        if isinstance(item, ValidationError):
            text = text.replace(str(item), message(item))
    return text
