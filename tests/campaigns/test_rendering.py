import pytest

from campaigns.rendering import (
    TemplateSyntaxError,
    parse_template,
    render,
    render_email_text,
    uses_variable,
)

UNSUBSCRIBE = '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>'
OURS = {"unsubscribe_url": "https://outreach.example/u/token/"}


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
    values = {"name": "<script>alert(1)</script>", **OURS}
    html = render("<p>{{ name }}</p>" + UNSUBSCRIBE, values, html=True)
    assert html.startswith("<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>")
    assert render("{{ name }}", values) == "<script>alert(1)</script>"


HOSTILE_URLS = [
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "java&#x09;script:alert(1)",
    "java\tscript:alert(1)",
    " \x01javascript:alert(1)",
    "&#106;avascript:alert(1)",
    "vbscript:msgbox(1)",
    "data:text/html,<script>alert(1)</script>",
    "//evil.example/",  # relative: an email has no base to resolve it against
    "/u/other/",
]


@pytest.mark.parametrize("value", HOSTILE_URLS)
def test_it_fills_a_url_attribute_only_with_http_https_or_mailto(value):
    template = '<a href="{{ site }}">Site</a><img src="{{ logo }}" alt="Logo">' + UNSUBSCRIBE
    html = render(template, {"site": value, "logo": value, **OURS}, html=True)
    assert '<a href="#" rel="noopener noreferrer">Site</a><img src="#" alt="Logo">' in html
    assert 'href="https://outreach.example/u/token/"' in html


@pytest.mark.parametrize(
    "value", ["https://acme.example/a?b=1&c=2", "http://acme.example/", "mailto:desk@acme.example"]
)
def test_it_keeps_a_safe_url_value_intact(value):
    html = render('<a href="{{ site }}">Site</a>' + UNSUBSCRIBE, {"site": value, **OURS}, html=True)
    assert f'<a href="{value.replace("&", "&amp;")}" rel="noopener noreferrer">Site</a>' in html


def test_it_judges_the_whole_url_a_value_helped_write():
    # Past an https:// the template wrote, a value cannot change where the link goes…
    template = '<a href="https://acme.example/?ref={{ ref }}">Site</a>' + UNSUBSCRIBE
    html = render(template, {"ref": "javascript:alert(1)", **OURS}, html=True)
    assert 'href="https://acme.example/?ref=javascript:alert(1)"' in html
    # …but a template that spells a script URL around an empty value gets nothing.
    template = '<a href="java{{ gap }}script:alert(1)">Site</a>' + UNSUBSCRIBE
    assert '<a href="#"' in render(template, OURS, html=True)


def test_it_lets_a_value_in_a_style_attribute_be_a_plain_word_only():
    template = "<p style=\"font-family:'{{ font }}'\">Hi</p>" + UNSUBSCRIBE
    assert "font-family:&quot;Georgia&quot;" in render(template, {"font": "Georgia"}, html=True)
    hostile = {"font": 'x"; background:url(javascript:alert(1))'}
    assert "font-family:&quot;&quot;" in render(template, hostile, html=True)


def test_it_gives_email_saved_without_a_visible_link_one_when_sent():
    # Saved before the form judged the sanitised HTML: the link only in a comment.
    html = render("<p>Hi</p><!-- {{ unsubscribe_url }} -->", OURS, html=True)
    assert html.startswith("<p>Hi</p>")
    assert '<a href="https://outreach.example/u/token/">Unsubscribe</a>' in html
    text = render_email_text("Hi", OURS)
    assert text == "Hi\n\nUnsubscribe: https://outreach.example/u/token/"
    assert render_email_text("Hi, leave: {{ unsubscribe_url }}", OURS).count("https://") == 1


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
