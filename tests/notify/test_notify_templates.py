"""Message templates: only bare placeholders, checked early, filled as plain text."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import mangostore
from mangostore.errors import TemplateError, ValidationError
from mangostore.notify import Template

pytestmark = pytest.mark.database("clocked_db")


def test_renders_bare_placeholders_and_literal_braces() -> None:
    template = Template.parse("Build {name} took {seconds} s {{ok}}")
    assert template.fields == ("name", "seconds")
    assert template.render({"name": "api", "seconds": 42}) == "Build api took 42 s {ok}"


def test_a_placeholder_may_repeat() -> None:
    assert Template.parse("{a}/{a}").render({"a": "x"}) == "x/x"


def test_a_template_without_placeholders_takes_no_parameters() -> None:
    template = Template.parse("Backup done")
    assert template.render() == "Backup done"
    with pytest.raises(TemplateError, match="no placeholder for extra"):
        template.render({"extra": 1})


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{a.b}", "attribute or an index"),
        ("{a[0]}", "attribute or an index"),
        ("{a.__class__.__mro__}", "attribute or an index"),
        ("{a!r}", "converts"),
        ("{a!s}", "converts"),
        ("{a:>10}", "formats"),
        ("{a:{b}}", "formats"),
        ("{}", "positional"),
        ("{0}", "numbered"),
        ("{a", "malformed"),
        ("a}", "malformed"),
    ],
)
def test_refuses_anything_but_bare_names(text: str, problem: str) -> None:
    with pytest.raises(TemplateError, match=problem) as caught:
        Template.parse(text)
    assert caught.value.field == "template"
    assert isinstance(caught.value, ValidationError)


def test_a_missing_parameter_is_named() -> None:
    with pytest.raises(TemplateError, match="needs the parameter") as caught:
        Template.parse("{a} and {b}").render({"a": 1})
    assert caught.value.field == "b"


def test_an_extra_parameter_is_named() -> None:
    with pytest.raises(TemplateError, match="no placeholder for zzz") as caught:
        Template.parse("{a}").render({"a": 1, "zzz": 2})
    assert caught.value.field == "zzz"


@pytest.mark.parametrize("value", [None, [1], {"x": 1}, object(), b"bytes"])
def test_parameter_values_are_text_or_numbers(value: object) -> None:
    with pytest.raises(TemplateError, match="text, a number or a boolean"):
        Template.parse("{a}").render({"a": value})


@pytest.mark.parametrize(
    "value",
    ["{b}", "{a}", "{a.__class__}", "{0}", "{{", "}", "{b!r:>9}", "%(a)s", "${a}"],
)
def test_braces_in_values_stay_literal(value: str) -> None:
    assert Template.parse("<{a}>").render({"a": value}) == f"<{value}>"


@given(st.text(), st.text())
def test_values_are_substituted_verbatim(first: str, second: str) -> None:
    rendered = Template.parse("{first}|{second}").render({"first": first, "second": second})
    assert rendered == f"{first}|{second}"


def test_registration_refuses_a_bad_template(db: mangostore.Database) -> None:
    with pytest.raises(TemplateError):
        db.notify.register_type("bad", category="system", template="{user.password}")
    assert db.notification_types.count() == 0


def test_send_refuses_mismatched_parameters_before_writing(db: mangostore.Database) -> None:
    user = db.users.create(username="ann")
    db.notify.register_type("t", category="system", template="Hello {name}")
    with pytest.raises(TemplateError, match="needs the parameter"):
        db.notify.send(user.id, "t", {})
    with pytest.raises(TemplateError, match="no placeholder"):
        db.notify.send(user.id, "t", {"name": "x", "other": "y"})
    assert db.notifications.count() == 0


def test_send_keeps_braces_of_user_text(db: mangostore.Database) -> None:
    user = db.users.create(username="ann")
    db.notify.register_type("t", category="system", template="Hello {name}, {greeting}")
    sent = db.notify.send(user.id, "t", {"name": "{greeting}", "greeting": "{name.__class__}"})
    assert sent.message == "Hello {greeting}, {name.__class__}"
