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
    """Whether a message is addressed to the bot.

    * ``m.mentions`` listing the bot (a pill picked in the composer) is a mention.
    * A message that *starts* by addressing the bot (``casebot: …``,
      ``Casebot, …``, ``@casebot …``) is one too, even when ``m.mentions``
      is present without the bot: Element sends ``"m.mentions": {}`` whenever
      no pill was picked, so the typed address is all there is.
    * Otherwise a client that sets ``m.mentions`` decides alone (the spec's
      intentional mentions): the bot's name mid-sentence is talk *about* it.
    * Older clients without ``m.mentions`` are matched by a pill
      (``matrix.to`` link) or the bot's name as a word anywhere.
    """
    declared = content.get("m.mentions")
    if isinstance(declared, Mapping):
        user_ids = declared.get("user_ids")
        if isinstance(user_ids, list) and user_id in user_ids:
            return True
    body = content.get("body")
    body = strip_reply_fallback(body) if isinstance(body, str) else ""
    if leading_address(body, user_id, names) is not None:
        return True
    if isinstance(declared, Mapping):
        return False
    formatted = content.get("formatted_body")
    if isinstance(formatted, str) and _pill_pattern(user_id).search(unquote(formatted)):
        return True
    for name in _names(user_id, names):
        if re.search(r"(?<![\w@])" + re.escape(name) + r"(?![\w])", body, re.IGNORECASE):
            return True
    return False


def leading_address(text: str, user_id: str, names: Iterable[str]) -> int | None:
    """Where the question starts after a leading address of the bot; None without one.

    An address is the bot's display name, localpart or MXID at the very start,
    followed by ``:`` or ``,`` (``casebot: …``, ``Casebot, …``), or written
    with ``@`` (``@casebot …``, ``@casebot:server …``). ``casebot weiss das``
    is not one: a bare name followed by a space starts a sentence about it.
    """
    stripped = text.lstrip()
    offset = len(text) - len(stripped)
    for name in _names(user_id, names):
        bare = re.escape(name.lstrip("@"))
        # "@casebot", "@casebot:" or "@casebot:server", but not "@casebotanik" or "@casebot.fan"
        match = re.match(r"@" + bare + r"(?![\w.-]|:\w)[\s:,]*", stripped, re.IGNORECASE)
        match = match or re.match(bare + r"\s*[:,]\s*", stripped, re.IGNORECASE)
        if match:
            return offset + match.end()
    return None


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
    start = leading_address(text, user_id, names)
    if start is not None:
        return text[start:].strip()
    for name in _names(user_id, names):  # an old client's "casebot wer …" (no m.mentions)
        match = re.match(re.escape(name.lstrip("@")) + r"(?![\w])[\s:,]*", text, re.IGNORECASE)
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
