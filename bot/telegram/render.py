"""Telegram HTML rendering of a :class:`~bot.conversation.Reply` (pure, no I/O).

Telegram's HTML knows a handful of tags and needs ``<``, ``>`` and ``&``
escaped everywhere; article text is untrusted, so every piece of text is
escaped and only tags built here are emitted. A message may hold at most
4,096 characters, so a reply becomes one or more :class:`Message` parts,
split at paragraph boundaries (then lines, then words). Each part carries
its HTML and a plain-text twin with the same content, sent instead when
Telegram rejects the formatting. No part is ever empty or whitespace only
(Telegram refuses those), and no part carries a lone surrogate or a control
character (see :func:`~bot.conversation.clean_text`).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bot.conversation import Reply, clean_reply, is_blank
from index.answer import Citation, format_attribution
from index.prompts import PromptLibrary
from index.store import ArticleRecord

MESSAGE_LIMIT = 4096
"""Telegram's maximum message length."""

SAFE_LIMIT = 4000
"""Parts are kept below this, measured on the longer of HTML and plain text."""

_MARKER = re.compile(r"\[(\d{1,3})\]")
_MAX_TITLE = 300


@dataclass(frozen=True)
class Line:
    """One line of a reply in both renderings."""

    html: str
    plain: str


@dataclass(frozen=True)
class Message:
    """One Telegram message: HTML to send, and the plain text to send if HTML is rejected."""

    html: str
    plain: str


def escape(text: str) -> str:
    """Text for Telegram HTML: ``<``, ``>`` and ``&`` escaped, quotes left alone."""
    return html.escape(text, quote=False)


def _href(url: str) -> str | None:
    """An attribute-safe link target, or None for anything but http(s)."""
    url = url.strip()
    if not re.match(r"https?://", url, re.IGNORECASE) or any(c.isspace() for c in url):
        return None
    return html.escape(url, quote=True)


def link(text: str, url: str) -> str:
    """``text`` (escaped) as a link to ``url``, or just the escaped text for unusable URLs."""
    href = _href(url)
    return f'<a href="{href}">{escape(text)}</a>' if href else escape(text)


def _length(text: str) -> int:
    """Length in UTF-16 code units, the unit Telegram counts in (a lone surrogate counts one)."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def linked_markers(text: str, citations: Sequence[Citation]) -> str:
    """Escape ``text`` and turn each citation marker ``[n]`` into a link to article n."""
    urls = {c.n: c.url for c in citations}

    def replace(match: re.Match[str]) -> str:
        url = urls.get(int(match.group(1)))
        return link(match.group(0), url) if url else match.group(0)

    return _MARKER.sub(replace, escape(text))


def _text_lines(text: str, render: Callable[[str], str]) -> list[list[Line]]:
    """Paragraphs of plain ``text``, each line rendered with ``render``."""
    paragraphs = []
    for paragraph in re.split(r"\n\s*\n", text.strip()):
        lines = [Line(render(line), line) for line in paragraph.split("\n")]
        paragraphs.append(lines)
    return paragraphs


def _citation_line(c: Citation) -> Line:
    title = c.title[:_MAX_TITLE] or c.url or c.article_id
    attribution = format_attribution(c.outlet, c.published)
    html_line = f"[{c.n}] " + link(title, c.url)
    plain = f"[{c.n}] {title}"
    if attribution:
        html_line += f" — {escape(attribution)}"
        plain += f" — {attribution}"
    if c.url:
        plain += f" — {c.url}"
    return Line(html_line, plain)


def _article_line(a: ArticleRecord) -> Line:
    title = a.title[:_MAX_TITLE] or a.url or a.path
    attribution = format_attribution(a.outlet, a.published)
    html_line = "• " + link(title, a.url)
    plain = f"- {title}"
    if attribution:
        html_line += f" ({escape(attribution)})"
        plain += f" ({attribution})"
    if a.url:
        plain += f" {a.url}"
    return Line(html_line, plain)


def paragraphs(reply: Reply, prompts: PromptLibrary) -> list[list[Line]]:
    """The reply as paragraphs of lines, both renderings side by side."""
    if reply.answer is not None:
        citations = reply.answer.citations
        body = _text_lines(reply.text, lambda line: linked_markers(line, citations))
        if citations:
            heading = prompts.text(reply.language, "sources_heading")
            body.append([Line(f"<b>{escape(heading)}</b>", heading)] + [_citation_line(c) for c in citations])
        return body
    body = _text_lines(reply.text, escape)
    if reply.articles:
        body.append([_article_line(a) for a in reply.articles])
    return body


def _fit(line: Line, limit: int) -> list[Line]:
    """Split a line longer than ``limit`` at spaces (or anywhere) into escaped pieces."""
    if max(_length(line.html), _length(line.plain)) <= limit:
        return [line]
    pieces: list[Line] = []
    current = ""
    for word in line.plain.split(" "):
        candidate = f"{current} {word}" if current else word
        if _length(escape(candidate)) <= limit:
            current = candidate
            continue
        if current:
            pieces.append(Line(escape(current), current))
        while _length(escape(word)) > limit:  # one "word" longer than a message: cut it
            cut = limit
            while (over := _length(escape(word[:cut])) - limit) > 0:
                cut -= max(1, -(-over // 5))  # a character escapes to at most five units ("&amp;")
            pieces.append(Line(escape(word[:cut]), word[:cut]))
            word = word[cut:]
        current = word
    if current:
        pieces.append(Line(escape(current), current))
    return pieces


def pack(blocks: Sequence[Sequence[Line]], limit: int = SAFE_LIMIT) -> list[Message]:
    """Pack paragraphs into messages below ``limit``, splitting only where needed.

    Paragraphs stay whole when they fit; a paragraph too long for one message
    is split between lines, and a line too long between words. Tags never
    span a line, so every part is well-formed HTML on its own.
    """
    messages: list[Message] = []
    html_parts: list[str] = []
    plain_parts: list[str] = []

    def flush() -> None:
        if html_parts:
            plain = "".join(plain_parts).strip()
            if not is_blank(plain):
                messages.append(Message("".join(html_parts).strip(), plain))
            html_parts.clear()
            plain_parts.clear()

    def add(line: Line, separator: str) -> None:
        if html_parts:
            html = "".join(html_parts) + separator + line.html
            plain = "".join(plain_parts) + separator + line.plain
            if max(_length(html), _length(plain)) > limit:
                flush()
        if html_parts:
            html_parts.append(separator)
            plain_parts.append(separator)
        html_parts.append(line.html)
        plain_parts.append(line.plain)

    for block in blocks:
        lines = [piece for line in block for piece in _fit(line, limit)]
        if not lines:
            continue
        whole = Line("\n".join(x.html for x in lines), "\n".join(x.plain for x in lines))
        if max(_length(whole.html), _length(whole.plain)) <= limit:
            add(whole, "\n\n")
            continue
        flush()  # a long paragraph starts a message of its own
        add(lines[0], "\n\n")
        for line in lines[1:]:
            add(line, "\n")
    flush()
    return messages


def render(reply: Reply, prompts: PromptLibrary, limit: int = SAFE_LIMIT) -> list[Message]:
    """The reply as Telegram messages (HTML plus plain-text twin), each below ``limit``; never none."""
    messages = pack(paragraphs(clean_reply(reply), prompts), limit)
    return messages or [Message("…", "…")]
