"""A :class:`Reply` as a Matrix message: a plain ``body`` and a ``formatted_body``.

Pure functions, no I/O. The HTML uses only tags and attributes the Matrix
spec lists for ``org.matrix.custom.html`` (clients strip anything else), every
piece of text is escaped, and links are only made for ``http``/``https``
URLs, so an article's front-matter cannot inject markup or ``javascript:``.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from bot.console import render_plain
from bot.conversation import Reply
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
    """A plain notice (e.g. an upload result) with line breaks kept."""
    return MatrixText(body=text, formatted_body=_paragraphs(text) or _lines_html(text))
