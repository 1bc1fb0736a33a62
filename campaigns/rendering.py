"""Message text with {{ variables }}: one parser and one renderer, for previews and sending.

Syntax: ``{{ name }}`` inserts a recipient's value; ``{{ first_name|there }}`` falls back to
"there" when the value is blank. Names are letters, digits and underscores (CSV column names are
normalised to that form on import). Nothing else is a tag: Django's ``{% %}`` and ``{# #}`` are
refused so that an administrator never believes logic will run.
"""

import html as html_lib
import re
from dataclasses import dataclass
from functools import lru_cache

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

    def render(self, values: dict[str, str], *, html: bool = False) -> str:
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = str(values.get(part.name) or "").strip() or part.default
            out.append(html_lib.escape(value) if html else value)
        return "".join(out)


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
    """Renders text for one recipient; html=True escapes the values for an HTML body."""
    return parse_template(text).render(values, html=html)


def uses_variable(text: str, name: str) -> bool:
    """Whether text (which must parse) mentions the variable."""
    return name in parse_template(text).variables
