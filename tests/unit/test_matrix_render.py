"""Matrix rendering and event rules: pure functions, no homeserver."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from bot.conversation import Reply
from bot.matrix import rules
from bot.matrix.render import ALLOWED_ATTRIBUTES, ALLOWED_TAGS, link_markers, render_reply, safe_url
from index.answer import Answer, Citation
from index.prompts import PromptLibrary
from index.store import ArticleRecord

PROMPTS = PromptLibrary()
BOT = "@casebot:example.org"


class _Tags(HTMLParser):
    """Collects every tag with its attributes and all text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text += data


def _parse(html: str) -> _Tags:
    parser = _Tags()
    parser.feed(html)
    parser.close()
    return parser


def _citation(n: int, url: str, title: str = "Titel") -> Citation:
    return Citation(n=n, article_id=f"a{n}", url=url, title=title, outlet="Netzwoche",
                    published="2022-02-10", quote="Zitat")


def _answer_reply(text: str, citations: tuple[Citation, ...]) -> Reply:
    answer = Answer(text=text, refused=False, language="de", citations=citations)
    return Reply("answer", text, "de", answer=answer, question="Frage?")


def _assert_allowed(html: str) -> _Tags:
    parsed = _parse(html)
    for tag, attrs in parsed.tags:
        assert tag in ALLOWED_TAGS, tag
        assert set(attrs) <= ALLOWED_ATTRIBUTES.get(tag, frozenset()), (tag, attrs)
        if tag == "a":
            assert safe_url(attrs["href"] or "") is not None
    return parsed


def test_citation_markers_link_to_their_article() -> None:
    reply = _answer_reply(
        "Das steht dazu:\n„Die Finma ermittelt.“ [1]\n„Twitter kappt.“ [2]",
        (_citation(1, "https://www.netzwoche.ch/a"), _citation(2, "https://www.heise.de/b")),
    )
    message = render_reply(reply, PROMPTS)
    parsed = _assert_allowed(message.formatted_body)
    links = [(attrs["href"], tag) for tag, attrs in parsed.tags if tag == "a"]
    assert ("https://www.netzwoche.ch/a", "a") in links
    assert ("https://www.heise.de/b", "a") in links
    assert '<a href="https://www.netzwoche.ch/a">[1]</a>' in message.formatted_body
    assert '<a href="https://www.heise.de/b">[2]</a>' in message.formatted_body
    # The plain body carries the same sources with their URLs for clients without HTML.
    assert "[1]" in message.body and "https://www.netzwoche.ch/a" in message.body
    assert message.content()["format"] == "org.matrix.custom.html"
    assert message.content()["msgtype"] == "m.notice"


def test_text_is_escaped_and_no_foreign_markup_survives() -> None:
    evil = _citation(1, "https://example.org/?a=1&b=\"x\"", title="<script>alert(1)</script>")
    reply = _answer_reply('„<img src=x onerror=alert(1)> & <b>fett</b>“ [1] [7]', (evil,))
    message = render_reply(reply, PROMPTS)
    parsed = _assert_allowed(message.formatted_body)
    assert "<script>" not in message.formatted_body
    assert "<img" not in message.formatted_body
    assert "&lt;img src=x onerror=alert(1)&gt; &amp; &lt;b&gt;fett&lt;/b&gt;" in message.formatted_body
    assert "<script>alert(1)</script>" in parsed.text  # shown as text, not run
    assert 'href="https://example.org/?a=1&amp;b=&quot;x&quot;"' in message.formatted_body
    assert "[7]" in parsed.text  # a marker without a citation stays plain text


@pytest.mark.parametrize("url", ["javascript:alert(1)", "data:text/html,x", "ftp://x/y", "/relative", ""])
def test_unsafe_urls_are_not_linked(url: str) -> None:
    html = link_markers("„Satz.“ [1]", (_citation(1, url),))
    assert "<a" not in html
    assert "[1]" in html


def test_sources_and_notices_render_with_allowed_tags() -> None:
    article = ArticleRecord("a1", "Twitter & Mitto", "heise online", "https://www.heise.de/x", "2022-02",
                            "de", "x.md", "h")
    sources = render_reply(Reply("sources", "Ich kenne 1 Artikel:", "de", articles=(article,)), PROMPTS)
    parsed = _assert_allowed(sources.formatted_body)
    assert ("a", {"href": "https://www.heise.de/x"}) in parsed.tags
    assert "Twitter &amp; Mitto" in sources.formatted_body
    notice = render_reply(Reply("notice", "Zeile 1\nZeile <2>", "de"), PROMPTS)
    assert notice.formatted_body == "<p>Zeile 1<br>Zeile &lt;2&gt;</p>"
    assert notice.body == "Zeile 1\nZeile <2>"


def test_refusal_lists_no_sources() -> None:
    answer = Answer(text="Dazu finde ich nichts.", refused=True, language="de")
    message = render_reply(Reply("answer", answer.text, "de", answer=answer), PROMPTS)
    assert message.formatted_body == "<p>Dazu finde ich nichts.</p>"
    assert message.body == "Dazu finde ich nichts."


# --- rules -----------------------------------------------------------------------


def test_allowed_users_match_full_ids_and_server_patterns() -> None:
    patterns = ["@alice:example.org", "@*:newsroom.ch"]
    assert rules.user_allowed("@alice:example.org", patterns)
    assert rules.user_allowed("@bob:newsroom.ch", patterns)
    assert not rules.user_allowed("@bob:example.org", patterns)
    assert not rules.user_allowed("@eve:evil.newsroom.ch", patterns)
    assert not rules.user_allowed("@eve:newsroom.ch.evil.org", patterns)
    assert not rules.user_allowed("@alice:example.org", [])


def test_mentions_follow_intentional_mentions_then_pills_and_names() -> None:
    assert rules.mentions({"body": "x", "m.mentions": {"user_ids": [BOT]}}, BOT, [])
    # A client that sets m.mentions decides, except for a typed address at the start (below).
    assert not rules.mentions({"body": "casebot weiss das", "m.mentions": {}}, BOT, [])
    pill = f'<a href="https://matrix.to/#/{BOT}">Casebot</a>: Frage'
    assert rules.mentions({"body": "Casebot: Frage", "formatted_body": pill}, BOT, [])
    assert rules.mentions({"body": "Redaktionsbot, wer ermittelt?"}, BOT, ["Redaktionsbot"])
    assert rules.mentions({"body": "hey CASEBOT wer ermittelt?"}, BOT, [])
    assert not rules.mentions({"body": "casebotanik ist kein Wort"}, BOT, [])
    assert not rules.mentions({"body": "Guten Morgen zusammen"}, BOT, ["Redaktionsbot"])


# Element sends "m.mentions": {} whenever no pill was picked; None means an old client without it.
@pytest.mark.parametrize(("body", "declared", "names", "addressed"), [
    ("casebot: Wer ermittelt?", {}, [], True),
    ("casebot, wer ermittelt?", {}, [], True),
    ("Casebot : wer ermittelt?", {}, [], True),
    ("@casebot wer ermittelt?", {}, [], True),
    ("@casebot: wer ermittelt?", {}, [], True),
    (f"{BOT} wer ermittelt?", {}, [], True),
    ("Redaktionsbot: wer ermittelt?", {}, ["Redaktionsbot"], True),
    ("  casebot: wer?", {"user_ids": ["@alice:example.org"]}, [], True),
    ("> <@a:b> alte Antwort\n\ncasebot: und wann?", {}, [], True),
    ("Ich frage mal casebot: wer ermittelt?", {}, [], False),  # mid-sentence
    ("hat jemand casebot, gefragt?", {}, [], False),
    ("casebot weiss das", {}, [], False),  # a sentence about the bot, not an address
    ("casebotanik: ein Wort", {}, [], False),
    ("@casebotanik wer?", {}, [], False),
    ("@casebot.fan wer?", {}, [], False),
    ("@casebot:evil.org wer?", {}, [], False),  # someone else's account with the same localpart
    ("Guten Morgen", {"user_ids": [BOT]}, [], True),  # a pill decides
    ("hey casebot wer ermittelt?", None, [], True),  # old client: the name anywhere
    ("hey casebot wer ermittelt?", {}, [], False),
])
def test_leading_address_counts_even_with_empty_intentional_mentions(
    body: str, declared: dict[str, list[str]] | None, names: list[str], addressed: bool,
) -> None:
    content: dict[str, object] = {"msgtype": "m.text", "body": body}
    if declared is not None:
        content["m.mentions"] = declared
    assert rules.mentions(content, BOT, names) is addressed


def test_question_text_drops_address_and_reply_fallback() -> None:
    assert rules.question_text("casebot: Wer ermittelt?", BOT, []) == "Wer ermittelt?"
    assert rules.question_text(f"{BOT} Wer ermittelt?", BOT, []) == "Wer ermittelt?"
    assert rules.question_text("Redaktionsbot, Wer?", BOT, ["Redaktionsbot"]) == "Wer?"
    assert rules.question_text("> <@a:b> alte Antwort\n\nund wann?", BOT, []) == "und wann?"
    assert rules.question_text("Was weiss casebot?", BOT, []) == "Was weiss casebot?"
    assert rules.question_text("@casebot: Wer?", BOT, []) == "Wer?"
    assert rules.question_text("casebot , Wer?", BOT, []) == "Wer?"


def test_threads_and_replies() -> None:
    in_thread = {"m.relates_to": {"rel_type": "m.thread", "event_id": "$root", "is_falling_back": True,
                                  "m.in_reply_to": {"event_id": "$last"}}}
    assert rules.thread_root(in_thread, "$me") == "$root"
    assert rules.reply_target(in_thread) is None  # the thread's fallback is not a reply
    real = {"m.relates_to": {"rel_type": "m.thread", "event_id": "$root", "is_falling_back": False,
                             "m.in_reply_to": {"event_id": "$answer"}}}
    assert rules.reply_target(real) == "$answer"
    plain_reply = {"m.relates_to": {"m.in_reply_to": {"event_id": "$answer"}}}
    assert rules.thread_root(plain_reply, "$me") == "$me"
    assert rules.reply_target(plain_reply) == "$answer"
    assert rules.is_edit({"m.relates_to": {"rel_type": "m.replace", "event_id": "$x"}})


def test_reactions_and_commands() -> None:
    assert rules.reaction_rating("👍") == 1
    assert rules.reaction_rating("👍️") == 1
    assert rules.reaction_rating("👍🏽") == 1
    assert rules.reaction_rating("👎") == -1
    assert rules.reaction_rating("❤️") is None
    assert rules.command_name("!ask Wer?") == "ask"
    assert rules.command_name("!HELP") == "help"
    assert rules.command_name("Hilfe!") is None
