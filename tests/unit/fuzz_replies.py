"""A seeded generator of hostile replies for the renderer fuzz tests (Telegram and Matrix).

Answers quote untrusted article text; titles and URLs come from front-matter;
echoed file names come from uploads. The pieces below are what broke the
renderers before (``AT&T … 5 % > 3 %``, whitespace-only replies, lone
surrogates, 252 sources) plus markup, entities, emoji (two UTF-16 units),
zero-width and control characters, very long words and very long replies.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from html.parser import HTMLParser

from bot.conversation import Reply
from index.answer import Answer, Citation
from index.store import ArticleRecord

PIECES = (
    "AT&T … 5 % > 3 %", "<b>", "</b>", "</i>", "<i>fett", "&amp;", "&lt;", "&#x;", "&#0;", "&#xD800;", "&nbsp;",
    "<a href=\"javascript:alert(1)\">x</a>", "<script>alert(1)</script>", "<tg-spoiler>", "<br>", "<p>",
    "\"quoted\"", "'single'", "[1]", "[2]", "[99]", "[", "]", "\ud800", "\udfff", "\x00", "\x1b[31m", "\u200b",
    "\u2028", "\u202e", "🙂", "👍🏽", "e\u0301", "ß", "Zürich", "\t", " ", "  ", "\n", "\n\n", " \n \n ",
    "\u00a0", "\u3000", "Mitto", "EDÖB", "x" * 5000, "&" * 900, "<" * 700, "🙂" * 2100, "Wort " * 400,
)
URLS = (
    "https://www.netzwoche.ch/news/a?x=1&y=2", "https://example.org/\"><script>", "javascript:alert(1)",
    "http://a.example/" + "p" * 3000, "", "ftp://x.example/", "https://ü.example/ä?q=<>", "https://x.example/\ud800",
)


def _text(rng: random.Random, max_pieces: int) -> str:
    return "".join(rng.choice(PIECES) for _ in range(rng.randint(0, max_pieces)))


def _citation(rng: random.Random, n: int) -> Citation:
    return Citation(n, f"id{n}", rng.choice(URLS), _text(rng, 4), _text(rng, 2), rng.choice(["", "2022-02-10"]),
                    _text(rng, 3))


def _article(rng: random.Random, n: int) -> ArticleRecord:
    return ArticleRecord(f"id{n}", _text(rng, 4) or f"Artikel {n}", _text(rng, 1), rng.choice(URLS),
                         rng.choice(["", "2022-02-10"]), "de", f"a{n}.md", "h")


def replies(count: int, seed: int = 12) -> Iterator[Reply]:
    """``count`` replies of every kind: answers with citations, source lists, notices."""
    rng = random.Random(seed)
    for i in range(count):
        language = rng.choice(["de", "en"])
        shape = i % 4
        if shape == 0:
            citations = tuple(_citation(rng, n) for n in range(1, rng.randint(0, 12) + 1))
            text = _text(rng, 40)
            answer = Answer(text=text, refused=False, language=language, citations=citations)
            yield Reply("answer", text, language, answer=answer, question="Frage?")
        elif shape == 1:
            articles = tuple(_article(rng, n) for n in range(rng.choice([0, 3, 40, 252])))
            yield Reply("sources", _text(rng, 3), language, articles=articles)
        elif shape == 2:
            yield Reply(rng.choice(["notice", "error", "help", "about"]), _text(rng, 60), language)
        else:  # whitespace and invisible characters only
            yield Reply("notice", "".join(rng.choice([" ", "\n", "\t", "\u200b", "\u00a0", "\x00"])
                                          for _ in range(rng.randint(0, 30))), language)


class TagCheck(HTMLParser):
    """Records every tag ``allowed(tag, attributes)`` refuses and every unbalanced end tag."""

    def __init__(self, allowed: Callable[[str, dict[str, str | None]], bool],
                 void: frozenset[str] = frozenset()) -> None:
        super().__init__(convert_charrefs=True)
        self._allowed = allowed
        self._void = void
        self.problems: list[str] = []
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if not self._allowed(tag, dict(attrs)):
            self.problems.append(f"{tag} {attrs}")
        if tag not in self._void:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open.pop() != tag:
            self.problems.append(f"unbalanced </{tag}>")

    def check(self, html: str) -> list[str]:
        """Feed ``html``; the problems found, unclosed tags included."""
        self.feed(html)
        self.close()
        return self.problems + [f"unclosed <{t}>" for t in self.open]
