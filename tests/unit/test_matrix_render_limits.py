"""Matrix renderer fuzzing and size limits: every event a homeserver takes, none empty.

Thousands of generated replies (tests/unit/fuzz_replies.py); each rendered
part must have a visible body, HTML with only the spec's tags (balanced),
and a content that, with the adapter's relations and mentions added, is far
below Matrix's 64 KiB event limit as serialized JSON.
"""

from __future__ import annotations

import json

from bot.conversation import Reply, is_blank
from bot.matrix.render import (
    ALLOWED_ATTRIBUTES,
    ALLOWED_TAGS,
    MAX_CONTENT_BYTES,
    content_bytes,
    render_parts,
    render_reply,
    safe_url,
)
from index.prompts import PromptLibrary
from index.store import ArticleRecord
from tests.unit.fuzz_replies import TagCheck, replies

PROMPTS = PromptLibrary()
EVENT_LIMIT = 65_536
_VOID = frozenset({"br", "hr", "img"})


def _allowed(tag: str, attrs: dict[str, str | None]) -> bool:
    if tag not in ALLOWED_TAGS or set(attrs) - ALLOWED_ATTRIBUTES.get(tag, frozenset()):
        return False
    return tag != "a" or safe_url(attrs.get("href") or "") is not None


def _event_bytes(content: dict[str, object]) -> int:
    """The event as a client sends it, with the adapter's thread relation and mentions."""
    event = dict(content)
    event["m.relates_to"] = {"rel_type": "m.thread", "event_id": "$" + "e" * 43, "is_falling_back": True,
                             "m.in_reply_to": {"event_id": "$" + "e" * 43}}
    event["m.mentions"] = {}
    return len(json.dumps(event, ensure_ascii=False).encode("utf-8"))


def test_thousands_of_generated_replies_fit_matrix_events() -> None:
    parts_seen = split = 0
    for reply in replies(2000, seed=21):
        parts = render_parts(reply, PROMPTS)
        assert parts
        split += len(parts) > 1
        for part in parts:
            content = part.content()
            json.dumps(content).encode("utf-8")  # no lone surrogates
            assert not is_blank(part.body) and part.formatted_body.strip(), reply
            assert content_bytes(part) <= MAX_CONTENT_BYTES
            # Encrypted: the content is base64 inside m.room.encrypted (4/3), plus the envelope.
            assert _event_bytes(content) * 4 // 3 + 2_000 < EVENT_LIMIT
            problems = TagCheck(_allowed, _VOID).check(part.formatted_body)
            assert not problems, (problems, part.formatted_body[:300])
            parts_seen += 1
    assert split > 50  # long answers and long source lists were split, not just short ones rendered


def test_sources_of_252_articles_are_paged_over_events_keeping_every_article() -> None:
    articles = tuple(
        ArticleRecord(f"a{i}", f"Mitto-Artikel Nummer {i} mit einem langen Titel über SMS-Überwachung " * 3,
                      "Netzwoche", f"https://www.netzwoche.ch/news/{i}-" + "x" * 150, "2022-02-10", "de",
                      f"a{i}.md", "h")
        for i in range(252))
    reply = Reply("sources", "Ich kenne 252 Artikel zu diesem Fall:", "de", articles=articles)
    assert content_bytes(render_reply(reply, PROMPTS)) > EVENT_LIMIT  # what the homeserver refused
    parts = render_parts(reply, PROMPTS)
    assert len(parts) > 1
    assert all(content_bytes(p) <= MAX_CONTENT_BYTES for p in parts)
    body = "\n".join(p.body for p in parts)
    assert all(f"https://www.netzwoche.ch/news/{i}-" in body for i in range(252))
    assert all(p.formatted_body.startswith(("<p>", "<ul>")) for p in parts)


def test_a_short_reply_is_one_event_exactly_as_before() -> None:
    reply = Reply("about", "Ich bin casebot.", "de")
    assert render_parts(reply, PROMPTS) == [render_reply(reply, PROMPTS)]


def test_whitespace_only_and_surrogates_never_reach_the_wire() -> None:
    [part] = render_parts(Reply("notice", " \n \u200b\t", "de"), PROMPTS)
    assert part.body == "…"
    [part] = render_parts(Reply("notice", "Datei ab\ud800c.md", "de"), PROMPTS)
    assert part.body == "Datei ab\ufffdc.md"
