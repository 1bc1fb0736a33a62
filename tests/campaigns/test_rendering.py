import pytest

from campaigns.rendering import (
    TemplateSyntaxError,
    parse_template,
    render,
    uses_variable,
)


def test_it_fills_variables_from_the_recipient():
    assert render("Hi {{ first_name }}, {{name}}!", {"first_name": "Zoë", "name": "Zoë Ng"}) == (
        "Hi Zoë, Zoë Ng!"
    )


def test_it_uses_the_inline_default_when_the_value_is_blank_or_missing():
    template = "Hi {{ first_name|there }}"
    assert render(template, {}) == "Hi there"
    assert render(template, {"first_name": "  "}) == "Hi there"
    assert render(template, {"first_name": "Ana"}) == "Hi Ana"


def test_it_keeps_spaces_inside_a_default():
    assert render("{{ greeting|good morning }}", {}) == "good morning"


def test_it_renders_a_missing_variable_without_default_as_nothing():
    assert render("[{{ clinic }}]", {}) == "[]"


def test_it_lists_the_variables_used():
    parsed = parse_template("{{ first_name|there }} {{ clinic }} {{ clinic }}")
    assert parsed.variables == {"first_name", "clinic"}
    assert uses_variable("<a href='{{ unsubscribe_url }}'>", "unsubscribe_url")


def test_it_escapes_values_in_html_but_not_in_text():
    values = {"name": "<script>alert(1)</script>"}
    assert render("{{ name }}", values, html=True) == "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert render("{{ name }}", values) == "<script>alert(1)</script>"


def test_it_leaves_text_without_variables_untouched():
    assert render("Braces { alone } are fine", {}) == "Braces { alone } are fine"


@pytest.mark.parametrize(
    ("text", "line", "column", "words"),
    [
        ("Hi {{ first_name", 1, 4, "never closed"),
        ("Hello\nDear {{ name and more", 2, 6, "never closed"),
        ("Hi {{ a {{ b }}", 1, 4, "never closed"),
        ("Hi }} there", 1, 4, "without a matching"),
        ("Hi {{ }}", 1, 4, "Empty variable"),
        ("Hi {{ first name }}", 1, 4, "not a variable name"),
        ("Hi {{ 1st }}", 1, 4, "not a variable name"),
        ("{% if x %}", 1, 1, "not supported"),
        ("{# note #}", 1, 1, "not supported"),
        ("{{ a|b|c }}", 1, 1, "Only one default"),
    ],
)
def test_it_refuses_bad_syntax_pointing_at_the_spot(text, line, column, words):
    with pytest.raises(TemplateSyntaxError) as caught:
        parse_template(text)
    assert (caught.value.line, caught.value.column) == (line, column)
    assert words in caught.value.message
    assert f"line {line}, column {column}" in caught.value.message
