"""A :class:`Reply` as a Matrix message: a plain ``body`` and a ``formatted_body``.

Pure functions, no I/O. The HTML uses only tags and attributes the Matrix
spec lists for ``org.matrix.custom.html`` (clients strip anything else), every
piece of text is escaped, and links are only made for ``http``/``https``
URLs, so an article's front-matter cannot inject markup or ``javascript:``.

A homeserver refuses events over 64 KiB, so :func:`render_parts` splits a
long answer or ``!sources`` list into several events, each at most
:data:`MAX_CONTENT_BYTES` of JSON; no body is ever empty, and no text keeps
a lone surrogate or control character (see
:func:`~bot.conversation.clean_text`).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from bot.console import render_plain
from bot.conversation import Reply, clean_reply, clean_text, is_blank
from index.answer import Citation, format_attribution
from index.prompts import PromptLibrary
from index.store import ArticleRecord

#: Tags the Matrix client-server spec allows in ``formatted_body`` (v1.x, m.room.message).
ALLOWED_TAGS = frozenset({
    "font", "del", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "p", "a", "ul", "ol", "sup",
    "sub", "li", "b", "i", "u", "strong", "em", "s", "code", "hr", "br", "div", "table", "thead",
    "tbody", "tr", "th", "td", "caption", "pre", "span", "img", "details", "summary",
})
#: Attributes the spec allows per tag (the subset this renderer may emit is ``a[href]``).
ALLOWED_ATTRIBUTES: Mapping[str, frozenset[str]] = {
    "a": frozenset({"href", "target"}),
}
HTML_FORMAT = "org.matrix.custom.html"

_MARKER = re.compile(r"\[(\d{1,3})\]")
_LINK_SCHEMES = ("http", "https")

MAX_CONTENT_BYTES = 40_000
"""Largest event content (UTF-8 JSON) sent in one event.

The spec's limit is 65,536 bytes for the whole event; in an encrypted room
the content travels base64-encoded inside ``m.room.encrypted`` (a third
more), and the adapter adds relations and mentions. 40,000 bytes leaves room
for all of it.
"""
_PIECE_CHARS = MAX_CONTENT_BYTES // 10
"""A line longer than this is cut before packing (a character costs at most ~8 bytes in both bodies)."""


@dataclass(frozen=True)
class MatrixText:
    """The two bodies of an ``m.room.message``."""

    body: str
    formatted_body: str

    def content(self, msgtype: str = "m.notice") -> dict[str, object]:
        """The event content without relations (the adapter adds thread and mentions)."""
        return {"msgtype": msgtype, "body": self.body, "format": HTML_FORMAT,
                "formatted_body": self.formatted_body}


def safe_url(url: str) -> str | None:
    """``url`` if it is an absolute http(s) URL, else None (no link is made)."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme.lower() in _LINK_SCHEMES and parts.netloc:
        return url.strip()
    return None


def link(url: str, label: str) -> str:
    """``<a href>`` around escaped ``label``; the escaped label alone for unsafe URLs."""
    target = safe_url(url)
    text = html.escape(label, quote=False)
    if target is None:
        return text
    return f'<a href="{html.escape(target, quote=True)}">{text}</a>'


def _lines_html(text: str) -> str:
    return "<br>".join(html.escape(line, quote=False) for line in text.split("\n"))


def link_markers(text: str, citations: Sequence[Citation]) -> str:
    """Escape ``text`` and turn each citation marker ``[n]`` into a link to article n."""
    urls = {c.n: c.url for c in citations}
    out: list[str] = []
    position = 0
    for match in _MARKER.finditer(text):
        out.append(html.escape(text[position:match.start()], quote=False))
        n = int(match.group(1))
        out.append(link(urls[n], match.group(0)) if n in urls else html.escape(match.group(0)))
        position = match.end()
    out.append(html.escape(text[position:], quote=False))
    return "".join(out)


def _paragraphs(text: str, citations: Sequence[Citation] = ()) -> str:
    """Blank-line separated paragraphs; single newlines become ``<br>``."""
    blocks = [b for b in re.split(r"\n\s*\n", text.strip("\n")) if b.strip()]
    rendered = []
    for block in blocks:
        lines = [link_markers(line, citations) for line in block.split("\n")]
        rendered.append("<p>" + "<br>".join(lines) + "</p>")
    return "".join(rendered)


def _sources_html(citations: Sequence[Citation], heading: str) -> str:
    items = []
    for c in citations:
        item = link(c.url, f"[{c.n}]") + " " + link(c.url, c.title or c.url)
        attribution = format_attribution(c.outlet, c.published)
        if attribution:
            item += " — " + html.escape(attribution, quote=False)
        items.append(f"<li>{item}</li>")
    return f"<p><strong>{html.escape(heading, quote=False)}</strong></p><ul>{''.join(items)}</ul>"


def _articles_html(articles: Sequence[ArticleRecord]) -> str:
    items = []
    for article in articles:
        item = link(article.url, article.title) if article.url else html.escape(article.title, quote=False)
        attribution = format_attribution(article.outlet, article.published)
        if attribution:
            item += f" ({html.escape(attribution, quote=False)})"
        items.append(f"<li>{item}</li>")
    return f"<ul>{''.join(items)}</ul>"


def render_reply(reply: Reply, prompts: PromptLibrary) -> MatrixText:
    """Render ``reply`` for Matrix.

    The plain ``body`` is exactly what the terminal shows (answer, then the
    numbered sources with their URLs), for clients without HTML. The HTML
    links every citation marker ``[n]`` in the answer to article n and lists
    the cited articles; a sources reply becomes a linked list.
    """
    body = render_plain(reply, prompts)
    if reply.answer is not None:
        citations = reply.answer.citations
        formatted = _paragraphs(reply.text, citations)
        if citations:
            formatted += _sources_html(citations, prompts.text(reply.language, "sources_heading"))
    elif reply.articles:
        formatted = _paragraphs(reply.text) + _articles_html(reply.articles)
    else:
        formatted = _paragraphs(reply.text)
    return MatrixText(body=body, formatted_body=formatted)


def render_text(text: str) -> MatrixText:
    """A plain notice (e.g. an upload result) with line breaks kept; never empty."""
    text = clean_text(text)
    if is_blank(text):
        return MatrixText(body="…", formatted_body="…")
    return MatrixText(body=text, formatted_body=_paragraphs(text) or _lines_html(text))


def content_bytes(text: MatrixText) -> int:
    """Size of the event content as the homeserver stores it (UTF-8 JSON)."""
    return len(json.dumps(text.content(), ensure_ascii=False).encode("utf-8"))


@dataclass(frozen=True)
class _Unit:
    """One paragraph or list item, in both bodies; ``item`` units are grouped into a list."""

    body: str
    html: str
    item: bool = False


def render_parts(reply: Reply, prompts: PromptLibrary, limit: int = MAX_CONTENT_BYTES) -> list[MatrixText]:
    """Render ``reply`` as one or more events, each at most ``limit`` bytes of content.

    One event, exactly :func:`render_reply`, when it fits; otherwise the
    answer's paragraphs and its sources (or the articles of a sources
    reply) are packed into as few events as fit, in order, a list item
    never split. Every part has a visible body.
    """
    reply = clean_reply(reply)
    whole = render_reply(reply, prompts)
    if is_blank(whole.body):
        return [render_text("")]
    if content_bytes(whole) <= limit:
        return [whole]
    return _pack(_units(reply, prompts, limit), limit)


def _units(reply: Reply, prompts: PromptLibrary, limit: int) -> list[_Unit]:
    citations = reply.answer.citations if reply.answer is not None else ()
    units: list[_Unit] = []
    for block in re.split(r"\n\s*\n", clean_text(reply.text).strip()):
        for piece in _cut(block.strip()):
            units.extend(_paragraph_units(piece, citations, limit))
    units = [u for u in units if not is_blank(u.body)]
    if citations:
        heading = prompts.text(reply.language, "sources_heading")
        units.append(_Unit(heading, f"<p><strong>{html.escape(heading, quote=False)}</strong></p>"))
        for c in citations:
            attribution = format_attribution(c.outlet, c.published)
            body = f"[{c.n}] {c.title}" + (f" — {attribution}" if attribution else "") + (
                f" — {c.url}" if c.url else "")
            item = _sources_html([c], heading).split("<ul>", 1)[1].removesuffix("</ul>")
            units.append(_Unit(clean_text(body)[:_PIECE_CHARS], clean_text(item), item=True))
    for article in reply.articles:
        attribution = format_attribution(article.outlet, article.published)
        body = f"- {article.title}" + (f" ({attribution})" if attribution else "") + (
            f" {article.url}" if article.url else "")
        item = _articles_html([article]).removeprefix("<ul>").removesuffix("</ul>")
        units.append(_Unit(clean_text(body)[:_PIECE_CHARS], clean_text(item), item=True))
    return units


def _paragraph_units(text: str, citations: Sequence[Citation], limit: int) -> list[_Unit]:
    """``text`` as paragraph units that each fit ``limit`` (halved until they do: links can be long)."""
    if is_blank(text):
        return []
    unit = _Unit(text, _paragraphs(text, citations))
    if len(text) <= 1 or content_bytes(_assemble([unit])) <= limit:
        return [unit]
    middle = len(text) // 2
    space = text.rfind(" ", 0, middle)
    cut = space if space > middle // 2 else middle
    return _paragraph_units(text[:cut], citations, limit) + _paragraph_units(text[cut:].lstrip(" "), citations,
                                                                            limit)


def _cut(block: str) -> list[str]:
    """A paragraph as pieces of at most :data:`_PIECE_CHARS`: whole lines, else at spaces, else anywhere."""
    if len(block) <= _PIECE_CHARS:
        return [block]
    pieces: list[str] = []
    for line in block.split("\n"):
        while len(line) > _PIECE_CHARS:
            cut = line.rfind(" ", 0, _PIECE_CHARS)
            cut = cut if cut > _PIECE_CHARS // 2 else _PIECE_CHARS
            pieces.append(line[:cut])
            line = line[cut:].lstrip(" ")
        if pieces and len(pieces[-1]) + 1 + len(line) <= _PIECE_CHARS:
            pieces[-1] += "\n" + line
        else:
            pieces.append(line)
    return pieces


def _assemble(units: Sequence[_Unit]) -> MatrixText:
    body_parts: list[str] = []
    html_parts: list[str] = []
    for i, unit in enumerate(units):
        previous_item = i > 0 and units[i - 1].item
        if body_parts:
            body_parts.append("\n" if unit.item and (previous_item or i > 0) else "\n\n")
        if unit.item and not previous_item:
            html_parts.append("<ul>")
        if not unit.item and previous_item:
            html_parts.append("</ul>")
        html_parts.append(unit.html)
        body_parts.append(unit.body)
    if units and units[-1].item:
        html_parts.append("</ul>")
    return MatrixText("".join(body_parts), "".join(html_parts))


def _pack(units: Sequence[_Unit], limit: int) -> list[MatrixText]:
    parts: list[MatrixText] = []
    current: list[_Unit] = []
    for unit in units:
        if current and content_bytes(_assemble([*current, unit])) > limit:
            parts.append(_assemble(current))
            current = []
        current.append(unit)
    if current:
        parts.append(_assemble(current))
    return [part for part in parts if not is_blank(part.body)] or [render_text("")]
