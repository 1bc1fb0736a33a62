"""Message text with {{ variables }}: one parser and one renderer, for previews and sending.

Syntax: ``{{ name }}`` inserts a recipient's value; ``{{ first_name|there }}`` falls back to
"there" when the value is blank. Names are letters, digits and underscores (CSV column names are
normalised to that form on import). Nothing else is a tag: Django's ``{% %}`` and ``{# #}`` are
refused so that an administrator never believes logic will run.

An email's HTML body is rendered knowing where each variable sits in the markup: a value is
escaped, a URL attribute that a value helped write must still be http, https or mailto, and a
value inside a style attribute cannot write CSS of its own.
"""

import html as html_lib
import re
from dataclasses import dataclass
from functools import lru_cache

from campaigns.email_html import (
    URL_ATTRIBUTES,
    find_links,
    is_safe_css_value,
    is_sendable_url,
    sanitize_email_html,
)

UNSUBSCRIBE_VARIABLE = "unsubscribe_url"

# What previews show: a plausible person, so that a template reads as it will arrive.
SAMPLE_RECIPIENT: dict[str, str] = {
    "first_name": "Alex",
    "name": "Alex Morgan",
    "phone_number": "+14155550123",
    "email": "alex.morgan@example.com",
    "timezone": "America/New_York",
    UNSUBSCRIBE_VARIABLE: "https://outreach.example/u/sample/",
}

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_OPENERS = re.compile(r"\{\{|\}\}|\{%|\{#")


class TemplateSyntaxError(ValueError):
    """A template that cannot be parsed, with the spot (1-based line and column) to fix."""

    def __init__(self, problem: str, text: str, offset: int) -> None:
        self.offset = offset
        self.line = text.count("\n", 0, offset) + 1
        self.column = offset - (text.rfind("\n", 0, offset) + 1) + 1
        self.message = f"{problem} (line {self.line}, column {self.column})."
        super().__init__(self.message)


@dataclass(frozen=True)
class Variable:
    name: str
    default: str = ""


@dataclass(frozen=True)
class ParsedTemplate:
    # Alternating literal text and variables, in order.
    parts: tuple[str | Variable, ...]

    @property
    def variables(self) -> frozenset[str]:
        return frozenset(p.name for p in self.parts if isinstance(p, Variable))

    def render(self, values: dict[str, str]) -> str:
        return "".join(p if isinstance(p, str) else _value(p, values) for p in self.parts)


def _value(variable: Variable, values: dict[str, str]) -> str:
    return str(values.get(variable.name) or "").strip() or variable.default


@lru_cache(maxsize=256)
def parse_template(text: str) -> ParsedTemplate:
    """Parses text into literals and variables, or raises TemplateSyntaxError at the first fault."""
    parts: list[str | Variable] = []
    position = 0
    while (match := _OPENERS.search(text, position)) is not None:
        token, start = match.group(), match.start()
        if token == "}}":
            raise TemplateSyntaxError("“}}” without a matching “{{”", text, start)
        if token in ("{%", "{#"):
            raise TemplateSyntaxError(
                f"“{token}” is not supported: only {{{{ variable }}}} and "
                "{{ variable|default }} can be used",
                text,
                start,
            )
        end = text.find("}}", match.end())
        nested = text.find("{{", match.end())
        if end == -1 or (nested != -1 and nested < end):
            raise TemplateSyntaxError("“{{” is never closed with “}}”", text, start)
        parts.append(text[position:start])
        parts.append(_variable(text, start, text[match.end() : end]))
        position = end + 2
    parts.append(text[position:])
    return ParsedTemplate(tuple(p for p in parts if p != ""))


def _variable(text: str, start: int, inner: str) -> Variable:
    name, *defaults = inner.split("|")
    name = name.strip()
    if not name:
        raise TemplateSyntaxError("Empty variable: write a name between “{{” and “}}”", text, start)
    if not _NAME.match(name):
        raise TemplateSyntaxError(
            f"“{name}” is not a variable name (use letters, digits and underscores, "
            "like first_name)",
            text,
            start,
        )
    if len(defaults) > 1:
        raise TemplateSyntaxError(
            f"Only one default is allowed: {{{{ {name}|default }}}}", text, start
        )
    return Variable(name, defaults[0].strip() if defaults else "")


def render(text: str, values: dict[str, str], *, html: bool = False) -> str:
    """Renders text for one recipient; html=True renders an email's HTML body (parse_email_html)."""
    return parse_email_html(text).render(values) if html else parse_template(text).render(values)


def render_email_text(text: str, values: dict[str, str]) -> str:
    """Renders an email's plain-text part; one saved without the unsubscribe URL gets it added."""
    if not uses_variable(text, UNSUBSCRIBE_VARIABLE):
        text = "\n\n".join(filter(None, [text.rstrip(), UNSUBSCRIBE_TEXT_LINE]))
    return render(text, values)


def uses_variable(text: str, name: str) -> bool:
    """Whether text (which must parse) mentions the variable."""
    return name in parse_template(text).variables


# ---------------------------------------------------------------- email HTML

UNSUBSCRIBE_PLACEHOLDER = "{{ " + UNSUBSCRIBE_VARIABLE + " }}"
UNSUBSCRIBE_MISSING = (
    f"Add the unsubscribe link placeholder {UNSUBSCRIBE_PLACEHOLDER} to the HTML body, for "
    f'example <a href="{UNSUBSCRIBE_PLACEHOLDER}">Unsubscribe</a>: every campaign email must '
    "let its recipients opt out."
)
# Added when sending a template saved before the link had to be visible.
UNSUBSCRIBE_FOOTER = (
    f'<p style="font-size:12px"><a href="{UNSUBSCRIBE_PLACEHOLDER}">Unsubscribe</a></p>'
)
UNSUBSCRIBE_TEXT_LINE = f"Unsubscribe: {UNSUBSCRIBE_PLACEHOLDER}"


def _is_unsubscribe_href(href: str) -> bool:
    try:
        parts = parse_template(href.strip()).parts
    except TemplateSyntaxError:
        return False
    return parts == (Variable(UNSUBSCRIBE_VARIABLE),)


def unsubscribe_link_problem(html: str) -> str | None:
    """Why sanitised email HTML shows its reader no unsubscribe link (None when it does)."""
    links = find_links(html, is_target=_is_unsubscribe_href)
    if not links:
        return UNSUBSCRIBE_MISSING
    if any(link.hidden_by is None for link in links):
        return None
    return (
        f'The unsubscribe link <a href="{UNSUBSCRIBE_PLACEHOLDER}"> must be visible, but '
        f"{links[0].hidden_by}: every campaign email must let its recipients opt out."
    )


@dataclass(frozen=True)
class UrlValue:
    """A URL attribute's value written with variables: judged whole once they are filled in."""

    parts: tuple[str | Variable, ...]


@dataclass(frozen=True)
class StyleVariable:
    """A variable inside a style attribute."""

    variable: Variable


@dataclass(frozen=True)
class EmailHtml:
    # Literal markup, variables in text or plain attributes, URL values and style variables.
    parts: tuple[str | Variable | UrlValue | StyleVariable, ...]

    def render(self, values: dict[str, str]) -> str:
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, Variable):
                out.append(html_lib.escape(_value(part, values)))
            elif isinstance(part, StyleVariable):
                value = _value(part.variable, values)
                out.append(html_lib.escape(value) if is_safe_css_value(value) else "")
            else:
                url = "".join(
                    p if isinstance(p, str) else html_lib.escape(_value(p, values))
                    for p in part.parts
                )
                # What a recipient's client will follow, once its entities are decoded.
                out.append(url if is_sendable_url(html_lib.unescape(url)) else "#")
        return "".join(out)


@lru_cache(maxsize=256)
def parse_email_html(text: str) -> EmailHtml:
    """An email's HTML body as sent: sanitised again, with a visible unsubscribe link, each
    variable's place in the markup known. Raises TemplateSyntaxError like parse_template."""
    html = sanitize_email_html(text)
    if unsubscribe_link_problem(html) is not None:
        # Saved before the link had to be visible (the form refuses such HTML now).
        html += UNSUBSCRIBE_FOOTER
    return EmailHtml(_place_variables(parse_template(html).parts))


# nh3's output is regular: every "<" that is not markup is written &lt;, every attribute is
# name="value" with '"' written &quot;, and there are no comments or raw-text elements. So
# these two patterns are all it takes to know where a variable sits.
_TAG_START = re.compile(r"<(?=[A-Za-z/])")
_IN_TAG = re.compile(r'([^\s"\'<>/=]+)="|>')


def _place_variables(
    parts: tuple[str | Variable, ...],
) -> tuple[str | Variable | UrlValue | StyleVariable, ...]:
    out: list[str | Variable | UrlValue | StyleVariable] = []
    # In "text", in a "tag" between attributes, or in an attribute's "value" (url collects one
    # URL attribute's value).
    state, attribute, url = "text", "", None
    for part in parts:
        if isinstance(part, Variable):
            if state == "text":
                out.append(part)
            elif state == "value" and url is not None:
                url.append(part)
            elif state == "value":
                out.append(StyleVariable(part) if attribute == "style" else part)
            # Between a tag's attributes a value could only add markup: it is left out.
            continue
        position = 0
        while position < len(part):
            if state == "text":
                match = _TAG_START.search(part, position)
                end = match.end() if match else len(part)
                out.append(part[position:end])
                state = "tag" if match else "text"
            elif state == "tag":
                match = _IN_TAG.search(part, position)
                end = match.end() if match else len(part)
                out.append(part[position:end])
                if match and match.group() == ">":
                    state = "text"
                elif match:
                    state, attribute = "value", match.group(1).lower()
                    url = [] if attribute in URL_ATTRIBUTES else None
            else:
                close = part.find('"', position)
                end = len(part) if close == -1 else close
                (out if url is None else url).append(part[position:end])
                if close != -1:
                    if url is not None and any(isinstance(p, Variable) for p in url):
                        out.append(UrlValue(tuple(p for p in url if p != "")))
                    elif url is not None:
                        out.extend(url)  # written by the template's author, checked on save
                    state, url = "tag", None
            position = end
    if url:
        out.append(UrlValue(tuple(url)))
    merged: list[str | Variable | UrlValue | StyleVariable] = []
    for part in out:
        if isinstance(part, str) and merged and isinstance(merged[-1], str):
            merged[-1] += part
        elif part != "":
            merged.append(part)
    return tuple(merged)
