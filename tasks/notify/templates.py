"""Title and body templates filled with per-recipient variables.

Syntax is `string.Template`'s: `$name` or `${name}`, `$$` for a literal dollar. Unlike
`str.format`, it cannot reach attributes or items (`{user.__class__}`), so a template written
by an operator cannot read more than the variables it is given. Values are rendered with
`str()`; a missing variable, or one that is None, is a template or data bug that no retry will
fix, hence a PermanentError naming it.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass

from workers import PermanentError


class TemplateError(PermanentError):
    """Raised when a template is invalid or lacks variables; `missing` names the variables."""

    def __init__(self, message: str, missing: tuple[str, ...] = ()) -> None:
        self.missing = missing
        super().__init__(message)


def render(template: str, variables: Mapping[str, object], *, name: str = "template") -> str:
    """`template` with its placeholders replaced; `name` says which template in errors."""
    compiled = string.Template(template)
    if not compiled.is_valid():
        try:
            compiled.substitute({})
        except ValueError as exc:  # names the line and column of the bad placeholder
            raise TemplateError(f"{name} template is invalid: {exc}") from None
    wanted = compiled.get_identifiers()
    missing = tuple(ident for ident in wanted if variables.get(ident) is None)
    if missing:
        names = ", ".join(repr(ident) for ident in missing)
        raise TemplateError(f"{name} template needs variable(s) {names}, missing or None", missing)
    return compiled.substitute({ident: str(variables[ident]) for ident in wanted})


@dataclass(frozen=True)
class RenderedMessage:
    """What a channel sends: the title (push title, e-mail subject; SMS ignores it) and body."""

    title: str
    body: str


@dataclass(frozen=True)
class MessageTemplate:
    title: str
    body: str

    def render(self, variables: Mapping[str, object]) -> RenderedMessage:
        return RenderedMessage(
            title=render(self.title, variables, name="title"),
            body=render(self.body, variables, name="body"),
        )
