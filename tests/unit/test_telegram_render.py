"""Telegram HTML rendering: escaping, citation links, splitting, plain-text twins.

Every HTML part is checked with the Bot API peer's parser, a port of
Telegram's own, so "well-formed" means what Telegram would accept.
"""

from __future__ import annotations

import pytest

from bot.conversation import Reply
from bot.telegram.render import SAFE_LIMIT, Line, Message, escape, linked_markers, pack, render
from index.answer import Answer, Citation
from index.prompts import PromptLibrary
from index.store import ArticleRecord
from tests.integration.botapi_peer import parse_html, utf16_len

PROMPTS = PromptLibrary()

HOSTILE = 'Mitto <b>nicht</b> & "Partner" <script>alert(1)</script> &amp; a<b'
CITATIONS = (
    Citation(1, "netzwoche", "https://www.netzwoche.ch/news/a?x=1&y=2", "Twitter <kappt> & Co", "Netzwoche",
             "2022-02-10", "q"),
    Citation(2, "heise", "https://www.heise.de/news/b.html", "Spionage", "heise online", "2022-02", "q"),
)


def answer_reply(text: str, citations: tuple[Citation, ...] = CITATIONS) -> Reply:
    answer = Answer(text=text, refused=False, language="de", citations=citations)
    return Reply("answer", text, "de", answer=answer, question="Frage?")


def links(part: Message) -> list[tuple[str, str]]:
    plain, entities = parse_html(part.html)
    encoded = plain.encode("utf-16-le")
    return [
        (encoded[2 * e["offset"]: 2 * (e["offset"] + e["length"])].decode("utf-16-le"), e["url"])
        for e in entities if e["type"] == "text_link"
    ]


def test_escape_leaves_no_markup() -> None:
    assert escape("a < b & c > d") == "a &lt; b &amp; c &gt; d"
    assert escape('"quoted"') == '"quoted"'


def test_untrusted_article_text_is_escaped_and_markers_link() -> None:
    text = f"Das steht in den Artikeln dazu:\n„{HOSTILE}“ [1]\n„Zweites Zitat.“ [2]"
    [part] = render(answer_reply(text), PROMPTS)
    plain, _ = parse_html(part.html)  # Telegram would accept it
    assert HOSTILE in plain  # shown literally, not interpreted
    assert "<script>" not in part.html and "&lt;script&gt;" in part.html
    assert links(part) == [
        ("[1]", "https://www.netzwoche.ch/news/a?x=1&y=2"),
        ("[2]", "https://www.heise.de/news/b.html"),
        ("Twitter <kappt> & Co", "https://www.netzwoche.ch/news/a?x=1&y=2"),
        ("Spionage", "https://www.heise.de/news/b.html"),
    ]
    assert "<b>Quellen:</b>" in part.html
    assert "[1] Twitter <kappt> & Co — Netzwoche, 2022-02-10" in plain


def test_plain_fallback_has_same_content_with_urls() -> None:
    text = f"Das steht in den Artikeln dazu:\n„{HOSTILE}“ [1]"
    [part] = render(answer_reply(text, CITATIONS[:1]), PROMPTS)
    assert part.plain == (
        f"Das steht in den Artikeln dazu:\n„{HOSTILE}“ [1]\n\nQuellen:\n"
        "[1] Twitter <kappt> & Co — Netzwoche, 2022-02-10 — https://www.netzwoche.ch/news/a?x=1&y=2"
    )


def test_unknown_markers_and_unsafe_urls_are_not_linked() -> None:
    bad = Citation(1, "x", "javascript:alert(1)", "Böse", "", "", "q")
    [part] = render(answer_reply("„Zitat“ [1] und [7]", (bad,)), PROMPTS)
    assert "<a " not in part.html
    assert linked_markers("[3] <x>", ()) == "[3] &lt;x&gt;"


def test_sources_reply_lists_articles_with_links() -> None:
    article = ArticleRecord("id", "Titel & <Mehr>", "Netzwoche", "https://n.example/a", "2022-02-10", "de",
                            "a.md", "h")
    [part] = render(Reply("sources", "Ich kenne 1 Artikel zu diesem Fall:", "de", articles=(article,)), PROMPTS)
    assert links(part) == [("Titel & <Mehr>", "https://n.example/a")]
    assert part.plain.endswith("- Titel & <Mehr> (Netzwoche, 2022-02-10) https://n.example/a")


def test_long_reply_splits_at_paragraph_boundaries() -> None:
    paragraphs = [f"Absatz {i}: " + " ".join(["Wort & Wort < Wort."] * 60) for i in range(8)]  # ~1,200 chars
    parts = render(Reply("about", "\n\n".join(paragraphs), "de"), PROMPTS)
    assert len(parts) > 1
    for part in parts:
        assert utf16_len(part.html) <= SAFE_LIMIT < 4096
        plain, _ = parse_html(part.html)
        assert plain == part.plain
        for paragraph in part.plain.split("\n\n"):  # whole paragraphs only
            assert paragraph in paragraphs
    assert "\n\n".join(p.plain for p in parts) == "\n\n".join(paragraphs)


def test_a_paragraph_longer_than_a_message_splits_at_lines_then_words() -> None:
    line = "„" + "lang & länger " * 200 + "“ [1]"  # ~2,800 chars per line
    text = "\n".join([line, line, line])
    parts = render(answer_reply(text), PROMPTS)
    assert len(parts) >= 3
    for part in parts:
        assert max(utf16_len(part.html), utf16_len(part.plain)) <= SAFE_LIMIT
        parse_html(part.html)
    huge_word = "x" * 9000
    pieces = pack([[Line(huge_word, huge_word)]], limit=1000)
    assert "".join(p.plain for p in pieces) == huge_word
    assert all(len(p.html) <= 1000 for p in pieces)
    escaped = pack([[Line(escape("&" * 3000), "&" * 3000)]], limit=1000)
    assert all(len(p.html) <= 1000 for p in escaped)
    assert "".join(p.plain for p in escaped) == "&" * 3000


def test_only_the_limit_decides_splitting() -> None:
    emoji = "🙂" * 1500  # 3,000 UTF-16 units
    parts = pack([[Line(emoji, emoji)], [Line(emoji, emoji)]], limit=4000)
    assert [p.plain for p in parts] == [emoji, emoji]


@pytest.mark.parametrize("kind", ["help", "notice", "error", "stats"])
def test_plain_texts_are_escaped(kind: str) -> None:
    [part] = render(Reply(kind, "/ask FRAGE – <eine> Frage & mehr", "de"), PROMPTS)
    assert part.html == "/ask FRAGE – &lt;eine&gt; Frage &amp; mehr"
    assert part.plain == "/ask FRAGE – <eine> Frage & mehr"
