"""Telegram renderer fuzzing: thousands of hostile replies, every part one Telegram accepts.

Accepted means: the Bot API peer's port of Telegram's HTML parser takes it,
Python's ``html.parser`` finds only the tags this renderer may emit (``b``
and ``a href`` with an http(s) URL), the text is not empty or whitespace
only, at most 4,096 UTF-16 units, and encodable (no lone surrogates).
"""

from __future__ import annotations

from bot.conversation import is_blank
from bot.telegram.render import MESSAGE_LIMIT, render
from index.prompts import PromptLibrary
from tests.integration.botapi_peer import parse_html, utf16_len
from tests.unit.fuzz_replies import TagCheck, replies

PROMPTS = PromptLibrary()
ALLOWED = {"b": set(), "a": {"href"}}


def _allowed(tag: str, attrs: dict[str, str | None]) -> bool:
    if tag not in ALLOWED or set(attrs) - ALLOWED[tag]:
        return False
    return all((v or "").lower().startswith(("http://", "https://")) for k, v in attrs.items() if k == "href")


def test_thousands_of_generated_replies_render_to_messages_telegram_accepts() -> None:
    checked = 0
    for reply in replies(2000):
        parts = render(reply, PROMPTS)
        assert parts, reply
        for part in parts:
            part.html.encode("utf-8")  # no lone surrogates: raises otherwise
            part.plain.encode("utf-8")
            text, _ = parse_html(part.html)  # raises EntityParseError where Telegram would refuse
            assert not is_blank(text) and text.strip(), repr(part)
            assert not is_blank(part.plain)
            assert utf16_len(text) <= MESSAGE_LIMIT and utf16_len(part.plain) <= MESSAGE_LIMIT
            assert utf16_len(part.html) <= MESSAGE_LIMIT
            problems = TagCheck(_allowed).check(part.html)
            assert not problems, (problems, part.html[:300])
            checked += 1
    assert checked > 2000


def test_quoted_ampersands_and_comparisons_stay_literal() -> None:
    from bot.conversation import Reply
    from index.answer import Answer

    text = "„AT&T … 5 % > 3 % und <Holding> & &amp;“"
    reply = Reply("answer", text, "de", answer=Answer(text=text, refused=False, language="de", citations=()))
    [part] = render(reply, PROMPTS)
    assert parse_html(part.html)[0] == text == part.plain


def test_whitespace_only_and_surrogate_replies_become_a_visible_character() -> None:
    from bot.conversation import Reply

    assert [p.plain for p in render(Reply("notice", " \n\t\u200b ", "de"), PROMPTS)] == ["…"]
    [part] = render(Reply("notice", "Datei „ab\ud800c.md“", "de"), PROMPTS)
    assert part.plain == "Datei „ab\ufffdc.md“"
