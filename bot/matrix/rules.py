"""Pure decisions about Matrix events: who may invite, what addresses the bot.

No I/O and no nio types: everything works on the event ``content`` dicts
the spec defines, so it is unit-testable and the adapter stays wiring.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote

THREAD = "m.thread"
_REACTION_UP = frozenset({"👍", "+1", ":+1:", ":thumbsup:"})
_REACTION_DOWN = frozenset({"👎", "-1", ":-1:", ":thumbsdown:"})
# Variation selectors and skin-tone modifiers do not change what a reaction means.
_EMOJI_MODIFIERS = re.compile("[\ufe0e\ufe0f\U0001f3fb-\U0001f3ff]")
_REPLY_FALLBACK = re.compile(r"\A(?:>[^\n]*\n)+\n?")


def user_allowed(user_id: str, patterns: Iterable[str]) -> bool:
    """Whether ``user_id`` matches a full MXID or an ``@*:server`` pattern."""
    for pattern in patterns:
        pattern = pattern.strip()
        if not pattern:
            continue
        if pattern.startswith("@*:"):
            if user_id.startswith("@") and ":" in user_id and user_id.split(":", 1)[1] == pattern[3:]:
                return True
        elif pattern == user_id:
            return True
    return False


def relation(content: Mapping[str, Any]) -> Mapping[str, Any]:
    rel = content.get("m.relates_to")
    return rel if isinstance(rel, Mapping) else {}


def thread_root(content: Mapping[str, Any], event_id: str) -> str:
    """The thread an event belongs to: its thread root, or the event itself."""
    rel = relation(content)
    if rel.get("rel_type") == THREAD and isinstance(rel.get("event_id"), str):
        return str(rel["event_id"])
    return event_id


def in_thread(content: Mapping[str, Any]) -> bool:
    return relation(content).get("rel_type") == THREAD


def reply_target(content: Mapping[str, Any]) -> str | None:
    """The event a message really replies to (a thread's fallback reply is not one)."""
    rel = relation(content)
    if rel.get("rel_type") == THREAD and rel.get("is_falling_back", False):
        return None
    reply = rel.get("m.in_reply_to")
    if isinstance(reply, Mapping) and isinstance(reply.get("event_id"), str):
        return str(reply["event_id"])
    return None


def is_edit(content: Mapping[str, Any]) -> bool:
    return relation(content).get("rel_type") == "m.replace"


def _pill_pattern(user_id: str) -> re.Pattern[str]:
    return re.compile(r"matrix\.to/#/" + re.escape(user_id) + r"(?![\w.:-])")


def mentions(content: Mapping[str, Any], user_id: str, names: Iterable[str]) -> bool:
    """Whether a message mentions the bot.

    ``m.mentions`` decides when present (the spec's intentional mentions:
    a client that sets it lists everyone it means). Older clients are
    matched by a pill (``matrix.to`` link) or the bot's name as a word.
    """
    declared = content.get("m.mentions")
    if isinstance(declared, Mapping):
        user_ids = declared.get("user_ids")
        return isinstance(user_ids, list) and user_id in user_ids
    formatted = content.get("formatted_body")
    if isinstance(formatted, str) and _pill_pattern(user_id).search(unquote(formatted)):
        return True
    body = content.get("body")
    if not isinstance(body, str):
        return False
    body = strip_reply_fallback(body)
    for name in _names(user_id, names):
        if re.search(r"(?<![\w@])" + re.escape(name) + r"(?![\w])", body, re.IGNORECASE):
            return True
    return False


def _names(user_id: str, names: Iterable[str]) -> list[str]:
    localpart = user_id[1:].split(":", 1)[0] if user_id.startswith("@") else user_id
    found = {n.strip() for n in (*names, localpart, user_id) if n and n.strip()}
    return sorted(found, key=len, reverse=True)


def strip_reply_fallback(body: str) -> str:
    """Remove the quoted ``> <@user> ...`` lines older clients put before a reply."""
    return _REPLY_FALLBACK.sub("", body, count=1)


def question_text(body: str, user_id: str, names: Iterable[str]) -> str:
    """The question in a message: without reply fallback and a leading address.

    ``casebot: wer …``, ``@casebot:server wer …`` and ``Casebot, wer …`` all
    become ``wer …``; the bot's name elsewhere in the sentence is kept.
    """
    text = strip_reply_fallback(body).strip()
    for name in _names(user_id, names):
        match = re.match(r"@?" + re.escape(name.lstrip("@")) + r"(?![\w])[\s:,]*", text, re.IGNORECASE)
        if match:
            return text[match.end():].strip()
    return text


def reaction_rating(key: str) -> int | None:
    """+1 for 👍, -1 for 👎 (any skin tone), None for every other reaction."""
    plain = _EMOJI_MODIFIERS.sub("", key.strip())
    if plain in _REACTION_UP:
        return 1
    if plain in _REACTION_DOWN:
        return -1
    return None


def command_name(text: str) -> str | None:
    """``help`` for ``!help …``; None when ``text`` is not a ``!`` command."""
    match = re.match(r"^!([A-Za-z_]+)\b", text.strip())
    return match.group(1).lower() if match else None
