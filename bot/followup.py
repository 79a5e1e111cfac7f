"""Is a question a follow-up to the previous one? Decided from the question itself.

A follow-up ("Und wann war das?", "Arbeitet er noch dort?", "What about
the senator?") cannot be searched on its own: its subject is in the previous
question. A new full question ("What is Mitto accused of?") can, however
short it is, and gluing the previous question onto it would retrieve the
previous topic instead. So the signal is never a word count but what points
back:

* an opening that continues ("und", "aber", "what about", "and when" …);
* a pronoun or adverb that refers back to someone or something named before
  ("er", "ihm", "dort", "damals", "dazu"; "he", "her", "them", "there") —
  words with no referent in the question itself;
* a weaker pronoun ("es", "das", "it", "this", "that") when the question
  names nothing of its own (no name, number or acronym after its first word),
  since these words also open ordinary questions ("Is it true that Mitto…");
* an elliptical question with no content word at all ("Warum?", "Seit wann?",
  "Who else?").

Pure functions, no state: :class:`~bot.conversation.Conversation` decides
what context to add (only the previous question, never a chain).
"""

from __future__ import annotations

import re

from index.text import is_stopword

_CONTINUING = re.compile(
    r"^\W*(und|aber|also|sondern|oder|dann|und zwar|was ist mit|wie ist es mit|wie steht es mit|"
    r"and|but|or|so|then|what about|how about|and what|and when|and who|and why|and how|what else)\b",
    re.IGNORECASE,
)
_STRONG_DE = frozenset({
    "er", "ihm", "ihn", "sein", "seine", "seinem", "seinen", "seiner", "seines", "ihnen",
    "dort", "dorthin", "dortige", "damals", "dazu", "darüber", "daran", "davon", "dabei", "dafür",
    "dagegen", "danach", "davor", "deswegen", "deshalb", "daraufhin", "ebenda", "derselbe", "dieselbe",
    "jener", "jene", "jenes", "denen",
})
_STRONG_EN = frozenset({
    "he", "him", "his", "himself", "she", "her", "hers", "herself", "they", "them", "their", "theirs",
    "themselves", "then", "those", "former", "latter",
})
# Also open ordinary questions: a follow-up only when the question names nothing itself.
_WEAK = frozenset({
    "es", "sie", "ihr", "ihre", "ihren", "ihrem", "ihrer", "das", "dies", "dieses", "diese", "dieser",
    "deren", "dessen", "it", "its", "this", "that", "these", "same", "there",
})
_ELLIPTIC = frozenset({
    "wann", "warum", "wieso", "weshalb", "wer", "wen", "wem", "wo", "wie", "was", "woher", "wohin",
    "noch", "sonst", "genau", "seit", "bis", "when", "why", "who", "whom", "where", "how", "what",
    "else", "exactly", "since", "until", "really",
})
_TOKEN = re.compile(r"[^\W_]+(?:[-'’][^\W_]+)*")
_NOT_NAMES = frozenset({"I", "Sie", "Ihnen", "Ihr", "Ihre", "Ihren", "Ihrem", "Ihrer"})


def names_something(question: str) -> bool:
    """True if the question carries its own subject: a capitalised word after the first, or a number.

    German capitalises every noun, so in German any noun counts: "Wann hat
    die Behörde es erfahren?" names the authority.
    """
    tokens = _TOKEN.findall(question)
    return any(t[0].isdigit() or (t[0].isupper() and t not in _NOT_NAMES) for t in tokens[1:])


def is_follow_up(question: str) -> bool:
    """True if ``question`` refers back to the previous one (see the module docstring)."""
    text = question.strip()
    if not text:
        return False
    if _CONTINUING.match(text):
        return True
    raw = _TOKEN.findall(text)
    tokens = [t.lower() for t in raw]
    if not tokens:
        return False
    if any(t in _STRONG_DE or t in _STRONG_EN for t in tokens):
        return True
    # "Sie" after the first word is the polite "you", not "she"/"they".
    weak = [t for i, (t, r) in enumerate(zip(tokens, raw, strict=True))
            if t in _WEAK and not (t == "sie" and r == "Sie" and i > 0)]
    if weak and not names_something(text):
        return True
    return all(is_stopword(t) or t in _ELLIPTIC for t in tokens) and not names_something(text)
