"""Title and body templates filled with per-recipient variables."""

from __future__ import annotations

import pytest

from tasks.notify import MessageTemplate, RenderedMessage, TemplateError, render
from workers.errors import PermanentError


def test_variables_are_substituted() -> None:
    template = MessageTemplate("Hi $name", "Your code is ${code}; it costs $$5. Bye $name.")
    assert template.render({"name": "Ada", "code": 1234, "unused": "x"}) == RenderedMessage(
        title="Hi Ada", body="Your code is 1234; it costs $5. Bye Ada."
    )


def test_a_missing_variable_is_named() -> None:
    with pytest.raises(TemplateError, match="'code'") as caught:
        MessageTemplate("Hi $name", "Code ${code}, for $name").render({"name": "Ada"})
    assert isinstance(caught.value, PermanentError)
    assert caught.value.missing == ("code",)
    assert "body" in str(caught.value)
    assert "Ada" not in str(caught.value)


def test_a_none_value_counts_as_missing() -> None:
    with pytest.raises(TemplateError, match="'name'"):
        render("Hi $name", {"name": None}, name="title")


def test_an_invalid_placeholder_is_reported_with_its_position() -> None:
    with pytest.raises(TemplateError, match=r"invalid.*line 1, col 6"):
        render("cost $5", {})


def test_no_attribute_access_from_a_template() -> None:
    # `str.format` would evaluate `{user.__class__}`; `string.Template` leaves text alone.
    assert render("{user.__class__} ${user}", {"user": "ada"}) == "{user.__class__} ada"
