"""Email HTML: sanitised with a real sanitiser (nh3), checked for a link the reader can see, and
its derived plain-text part."""

import re
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser

import nh3

ALLOWED_TAGS = {
    *nh3.ALLOWED_TAGS,
    "table", "thead", "tbody", "tfoot", "tr", "td", "th", "caption", "colgroup", "col",
    "div", "span", "p", "br", "hr", "img", "center", "font", "u", "s", "small", "sup", "sub",
    "h1", "h2", "h3", "h4", "h5", "h6",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "*": {"style", "class", "align", "dir", "lang", "title", "width", "height"},
    "a": {"href", "name", "target"},
    "img": {"src", "alt", "border"},
    "table": {"border", "cellpadding", "cellspacing", "bgcolor", "role"},
    "td": {"colspan", "rowspan", "valign", "bgcolor"},
    "th": {"colspan", "rowspan", "valign", "bgcolor", "scope"},
    "font": {"color", "face", "size"},
}
# Inline styles are how email HTML is written; only presentational properties survive. Those
# that can hide (a preheader is hidden text) are kept so that the link check sees them.
ALLOWED_STYLE_PROPERTIES = {
    "visibility", "opacity", "overflow", "max-height",
    "color", "background", "background-color", "font", "font-family", "font-size",
    "font-weight", "font-style", "line-height", "text-align", "text-decoration",
    "text-transform", "letter-spacing", "vertical-align", "padding", "padding-top",
    "padding-right", "padding-bottom", "padding-left", "margin", "margin-top", "margin-right",
    "margin-bottom", "margin-left", "border", "border-top", "border-right", "border-bottom",
    "border-left", "border-collapse", "border-radius", "border-color", "width", "max-width",
    "min-width", "height", "display",
}  # fmt: skip
# Attributes whose value a mail client follows or loads; rendering checks them again once a
# recipient's values are filled in.
URL_ATTRIBUTES = frozenset(
    {"href", "src", "background", "cite", "action", "formaction", "poster", "longdesc"}
)
# What a sent link or image may point at. Relative URLs are refused: an email has no base.
SENDABLE_URL_SCHEMES = frozenset({"http", "https", "mailto"})

_CLEAN_OPTIONS = {
    "tags": ALLOWED_TAGS,
    "attributes": ALLOWED_ATTRIBUTES,
    "url_schemes": {"http", "https", "mailto", "tel"},
    "filter_style_properties": ALLOWED_STYLE_PROPERTIES,
    "link_rel": "noopener noreferrer",
}


def sanitize_email_html(html: str) -> str:
    """The HTML with scripts, event handlers, frames, comments and unsafe URLs and CSS removed."""
    cleaned = nh3.clean(html, **_CLEAN_OPTIONS)
    # nh3 keeps an allowed property whatever its value (`width: expression(…)` survives). The
    # second pass judges the values as nh3 wrote them: escapes resolved, comments gone.
    return nh3.clean(cleaned, **_CLEAN_OPTIONS, attribute_filter=_drop_unsafe_css)


# Values that run code or fetch a behaviour in some mail client: IE's expression() and
# behaviors, Firefox's XBL bindings, script URLs, imports; a backslash is an escape nh3 left.
_UNSAFE_CSS = re.compile(
    r"expression\s*\(|behaviou?r\s*:|-moz-binding|(?:java|vb|live)script\s*:|@import|\\", re.I
)
_CSS_URL = re.compile(r"url\(\s*[\"']?([^\"')]*)", re.I)
_DECLARATION = re.compile(r"(?:[^;\"']|\"[^\"]*\"|'[^']*')+")


def _drop_unsafe_css(tag: str, attribute: str, value: str) -> str | None:
    if attribute != "style":
        return value
    kept = [
        declaration.strip()
        for declaration in _DECLARATION.findall(value)
        if declaration.strip()
        and not _UNSAFE_CSS.search(declaration)
        and all(is_sendable_url(url) for url in _CSS_URL.findall(declaration))
    ]
    return ";".join(kept) or None


# Browsers drop leading and trailing controls and spaces, and tabs and newlines anywhere.
_URL_EDGES = "".join(chr(c) for c in range(0x21))
_URL_INSIDE = re.compile(r"[\t\n\r]")
_URL_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")


def is_sendable_url(url: str) -> bool:
    """Whether a URL (entities already decoded) is http, https or mailto as a browser reads it."""
    match = _URL_SCHEME.match(_URL_INSIDE.sub("", url.strip(_URL_EDGES)))
    return match is not None and match.group(1).lower() in SENDABLE_URL_SCHEMES


# Inside a style attribute a filled-in value may be a word, a number, a colour or a path: quotes,
# brackets, semicolons and backslashes would let it write CSS of its own.
_CSS_VALUE = re.compile(r"[^\"'()\\;{}<>&\x00-\x1f]*")


def is_safe_css_value(value: str) -> bool:
    """Whether a value filled into a style attribute can add nothing but itself."""
    return _CSS_VALUE.fullmatch(value) is not None


# ---------------------------------------------------------------- can the reader see it?

_VOID_TAGS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "source", "track", "wbr"}
_ZERO = re.compile(r"[+-]?(?:0+\.?0*|\.0+)(?:[a-z]+|%)?")
_NAMED_COLOURS = {"white": "#ffffff", "black": "#000000", "red": "#ff0000", "blue": "#0000ff"}
# Most clients show an email on white unless it sets a background.
_PAGE_BACKGROUND = "#ffffff"


def _declarations(style: str) -> dict[str, str]:
    found = {}
    for declaration in _DECLARATION.findall(style):
        name, _, value = declaration.partition(":")
        value = re.sub(r"!\s*important", "", value).strip().lower()
        if value:
            found[name.strip().lower()] = value
    return found


def _hidden_by(tag: str, attrs: dict[str, str], style: dict[str, str]) -> str | None:
    """What, on this element, keeps its content from being seen (the rule, written once)."""
    where = f"<{tag}>"
    if "hidden" in attrs:
        return f"its {where} has the hidden attribute"
    if style.get("display") == "none":
        return f"its {where} has display:none"
    if style.get("visibility") in ("hidden", "collapse"):
        return f"its {where} has visibility:{style['visibility']}"
    opacity = style.get("opacity", "1").rstrip("%")
    if _ZERO.fullmatch(opacity) or opacity.startswith("-"):
        return f"its {where} has opacity:0"
    for prop in ("font-size", "width", "height", "max-width", "max-height"):
        if _ZERO.fullmatch(style.get(prop, "")):
            return f"its {where} has {prop}:0"
    for prop in ("width", "height"):
        if _ZERO.fullmatch(attrs.get(prop, "").strip()):
            return f'its {where} has {prop}="0"'
    return None


def _colour(value: str) -> str | None:
    """A colour in one spelling (#rrggbb where we can), or None when the value names none."""
    value = value.strip().lower()
    if match := re.fullmatch(r"#([0-9a-f])([0-9a-f])([0-9a-f])", value):
        return "#" + "".join(c * 2 for c in match.groups())
    if match := re.fullmatch(r"rgb\(\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\)", value):
        return "#" + "".join(f"{min(int(c), 255):02x}" for c in match.groups())
    if value in ("", "transparent", "inherit", "initial", "currentcolor"):
        return None
    return _NAMED_COLOURS.get(value, value)


def _background(attrs: dict[str, str], style: dict[str, str]) -> str | None:
    if "background-color" in style:
        return _colour(style["background-color"])
    # The shorthand's colour is whichever of its words is one.
    for word in re.findall(r"rgb\([^)]*\)|#[0-9a-f]+|[a-z]+", style.get("background", "")):
        if word.startswith(("#", "rgb")) or word in _NAMED_COLOURS:
            return _colour(word)
    return _colour(attrs["bgcolor"]) if "bgcolor" in attrs else None


@dataclass(frozen=True)
class Link:
    href: str
    # Why its reader cannot see it, or None when they can.
    hidden_by: str | None


@dataclass
class _Element:
    tag: str
    hidden_by: str | None
    colour: str | None
    background: str | None


class _LinkFinder(HTMLParser):
    def __init__(self, is_target: Callable[[str], bool]) -> None:
        super().__init__(convert_charrefs=True)
        self.is_target = is_target
        self.links: list[Link] = []
        self._open: list[_Element] = []
        # The target link being read: its href, where it sits in _open, and what its text showed.
        self._link: tuple[str, int] | None = None
        self._seen = False
        self._why: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        style = _declarations(values.get("style", ""))
        colour = style.get("color") or values.get("color")
        element = _Element(
            tag,
            _hidden_by(tag, values, style),
            _colour(colour) if colour else None,
            _background(values, style),
        )
        if tag in _VOID_TAGS:
            return
        self._open.append(element)
        if tag == "a" and self._link is None and self.is_target(values.get("href", "")):
            self._link, self._seen, self._why = (values["href"], len(self._open) - 1), False, None

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID_TAGS:
            return
        while self._open:
            closed = self._open.pop()
            if self._link is not None and len(self._open) == self._link[1]:
                why = None if self._seen else self._why or "it has no text to click"
                self.links.append(Link(self._link[0], why))
                self._link = None
            if closed.tag == tag:
                break

    def handle_data(self, data: str) -> None:
        if self._link is None or self._seen or not data.strip():
            return
        why = next((e.hidden_by for e in self._open if e.hidden_by), None)
        # A link has the client's own link colour unless it (or something in it) sets one.
        colour = next((e.colour for e in reversed(self._open[self._link[1] :]) if e.colour), None)
        background = next(
            (e.background for e in reversed(self._open) if e.background), _PAGE_BACKGROUND
        )
        if why is None and colour == background:
            why = f"its text is the same colour as its background ({colour})"
        if why is None:
            self._seen = True
        elif self._why is None:
            self._why = why


def find_links(html: str, *, is_target: Callable[[str], bool]) -> list[Link]:
    """The links of sanitised email HTML whose href is_target accepts, each saying if hidden."""
    finder = _LinkFinder(is_target)
    finder.feed(html)
    finder.close()
    return finder.links


# ---------------------------------------------------------------- the plain-text part

_BLOCK_TAGS = {"p", "div", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6", "li", "ul", "ol"}


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._href: str | None = None
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "script", "head", "title"):
            self._skip += 1
        elif tag == "br":
            self.parts.append("\n")
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n\n")
        elif tag == "a":
            self._href = dict(attrs).get("href")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script", "head", "title"):
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n\n")
        elif tag == "a" and self._href:
            # Plain-text readers still need the link target.
            self.parts.append(f" ({self._href})")
            self._href = None

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(" ".join(data.split()) if data.strip() else " ")


def html_to_text(html: str) -> str:
    """A readable plain-text version of email HTML: paragraphs kept, links written out."""
    extractor = _TextExtractor()
    extractor.feed(html)
    text = "".join(extractor.parts)
    lines = [" ".join(line.split()) for line in text.splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()
