"""Language-aware text primitives shared by ingestion, retrieval and answering.

Everything here is pure and deterministic: normalisation, sentence splitting,
language guessing and the stemmed tokenizer that BM25 and the extractive
answerer both use (so that a term matches the same way in both places).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache

import Stemmer

LANGUAGES = ("de", "en")

# Format/invisible characters that survive NFC and break matching or hide text:
# zero-width spaces and joiners, bidi controls, soft hyphen, word joiner, BOM.
_INVISIBLE = re.compile(
    "[\u00ad\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufeff\uffa0\U000e0000-\U000e007f]"
)
# C0/C1 controls except tab and newline.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]+")


def normalize_text(text: str) -> str:
    """Return ``text`` in NFC with invisible and control characters removed.

    Line structure is kept (``\\r\\n`` becomes ``\\n``); runs of horizontal
    white space collapse to one space. Article text and chat messages are
    untrusted, and invisible characters are a classic way to hide words from a
    reader while a machine still sees them.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = unicodedata.normalize("NFC", text)
    text = _INVISIBLE.sub("", text)
    text = _CONTROL.sub("", text)
    text = _SPACES.sub(" ", text)
    return "\n".join(line.strip() for line in text.split("\n")).strip()


# --- sentences ---------------------------------------------------------------

# Abbreviations after which a period does not end a sentence (lower-cased, no dot).
_ABBREVIATIONS = frozenset(
    """
    abs bzw ca co corp dr etc evtl ggf hr fr inc jr jh ltd max min mio mr mrs ms
    mrd nr prof sen sr st str tel usw vgl vs z.b u.a d.h s.o o.ä u.s a.m p.m
    dipl ing mag bspw inkl exkl zb dh ua gen rep sog geb jan feb mär apr jun jul
    aug sep sept okt oct nov dez dec al abb bd hrsg vol fig approx dept univ ft mt
    """.split()
)
_WORD_WINDOW = 40  # longer than any abbreviation, ordinal or initials run
_SENTENCE_END = re.compile(r"""([.!?…]+["'»«“”)\]]*)\s+(?=["'»«„“(\[]?[A-ZÄÖÜ0-9])""")


def split_sentences(paragraph: str) -> list[str]:
    """Split one paragraph into sentences, keeping every character.

    A boundary is sentence punctuation followed by white space and an
    upper-case letter or digit, unless the word before the period is a known
    abbreviation, a single letter or an ordinal number ("10. Februar").
    """
    sentences: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(paragraph):
        end = match.end(1)
        # Only the last word matters; a bounded window keeps a paragraph of many
        # "a. B" non-boundaries linear instead of re-reading it from ``start`` each time.
        before = paragraph[max(start, match.start(1) - _WORD_WINDOW) : match.start(1)]
        last_word = before.rsplit(None, 1)[-1] if before.split() else ""
        token = last_word.lower().strip("(\"'„“")
        if match.group(1) == "." and (
            token in _ABBREVIATIONS
            or len(token) == 1
            or token.isdigit()
            or re.fullmatch(r"(?:[a-zäöü]\.)+[a-zäöü]", token)
        ):
            continue
        sentence = paragraph[start:end].strip()
        if sentence:
            sentences.append(sentence)
        start = match.end()
    tail = paragraph[start:].strip()
    if tail:
        sentences.append(tail)
    return sentences


# --- language ----------------------------------------------------------------

_STOPWORDS: dict[str, frozenset[str]] = {
    "de": frozenset(
        """
        aber alle als also am an auch auf aus bei bin bis bist da damit dann das
        dass dem den denn der des dich die dies diese dieser dir doch dort du durch
        ein eine einem einen einer eines er es für gegen hat hatte hätte habe haben
        hier ich ihr ihre im in ist ja jetzt kann kein keine können man mehr mein
        mich mir mit muss nach nicht noch nun nur ob oder ohne sehr sein seine sich
        sie sind so soll sollen über um und uns unter vom von vor war waren warum
        was weil welche welcher welches wenn wer werden wie wieder wir wird wo woher
        wofür womit worden wurde wurden zu zum zur zwischen wann wieviel wieso weshalb
        gibt gab worüber wozu welchem welchen einem dieses jene diesem diesen sei
        """.split()
    ),
    "en": frozenset(
        """
        a about above after again against all am an and any are as at be because
        been before being below between both but by can could did do does doing down
        during each few for from further had has have having he her here hers him his
        how i if in into is it its itself just me more most my no nor not now of off
        on once only or other our out over own same she should so some such than that
        the their them then there these they this those through to too under until
        up very was we were what when where which while who whom why will with would
        you your yours whose tell told did does many much please
        """.split()
    ),
}

_WORD = re.compile(r"[^\W_]+(?:[-'’][^\W_]+)*", re.UNICODE)


def words(text: str) -> list[str]:
    """Lower-cased word tokens; a hyphenated compound also yields its parts.

    "US-Senator" gives ``us-senator``, ``us`` and ``senator``, so that both
    the compound and "senator" alone match.
    """
    result = []
    for word in _WORD.findall(text):
        word = word.lower()
        result.append(word)
        if "-" in word:
            result.extend(part for part in word.split("-") if part)
    return result


def detect_language(text: str, default: str = "de") -> str:
    """Guess whether ``text`` is German or English from function words.

    Questions are short, so this counts stop words and German-only letters;
    ties fall back to ``default``. Only ``de`` and ``en`` are distinguished
    because those are the languages the bot answers in.
    """
    tokens = words(text)
    de = sum(1 for t in tokens if t in _STOPWORDS["de"])
    en = sum(1 for t in tokens if t in _STOPWORDS["en"])
    de += 2 * sum(1 for ch in text if ch in "äöüÄÖÜß")
    if de > en:
        return "de"
    if en > de:
        return "en"
    return default if default in LANGUAGES else "de"


def is_stopword(token: str) -> bool:
    """True for a German or English function word."""
    return token in _STOPWORDS["de"] or token in _STOPWORDS["en"]


# --- stemming ----------------------------------------------------------------

_STEMMER_NAMES = {"de": "german", "en": "english"}


@lru_cache(maxsize=4)
def _stemmer(language: str) -> Stemmer.Stemmer:
    return Stemmer.Stemmer(_STEMMER_NAMES.get(language, "english"))


def _fold(token: str) -> str:
    """Fold umlauts and ß so that "Behörde" and "Behoerde" meet."""
    return (
        token.replace("ä", "a")
        .replace("ö", "o")
        .replace("ü", "u")
        .replace("ß", "ss")
    )


def stems(text: str, language: str) -> list[str]:
    """Content-word stems of ``text`` for one language (stop words dropped).

    Used for passages, whose language is known from the article.
    """
    tokens = [t for t in words(text) if not is_stopword(t)]
    return [_fold(s) for s in _stemmer(language).stemWords(tokens)]


def query_stems(text: str, languages: Iterable[str] = LANGUAGES) -> list[str]:
    """Stems of a question in every supported language, de-duplicated.

    A question's language says little about its articles' language, so a
    German question is stemmed the English way too, and vice versa; the
    extra stems cost nothing when they match nothing.
    """
    seen: dict[str, None] = {}
    tokens = [t for t in words(text) if not is_stopword(t)]
    for language in languages:
        for stem in _stemmer(language).stemWords(tokens):
            seen.setdefault(_fold(stem), None)
    return list(seen)


def word_stems(word: str) -> set[str]:
    """The stems of one lower-cased word in every supported language.

    A German past participle also gives its stem without the ``ge-``
    ("gegründet" -> ``grund``, as in "gründete" and "Mitgründer").
    """
    by_language = {language: _fold(_stemmer(language).stemWord(word)) for language in LANGUAGES}
    result = set(by_language.values())
    german = by_language.get("de", "")
    if german.startswith("ge") and len(german) >= 6:
        result.add(german[2:])
    return result


COMPOUND_HEAD = 5  # shortest stem that counts when it ends a longer German word
COMPOUNDING = frozenset({"de"})  # languages that write compounds as one word


def supports(variants: set[str], text_stems: set[str] | frozenset[str], language: str) -> bool:
    """True if a text in ``language`` with ``text_stems`` contains the word whose stems are ``variants``.

    Beside an exact stem, in German a compound that ends in the word counts:
    German writes "Jahresumsatz" for the revenue asked about as "Umsatz", and
    "Mitgründer" for who "gegründet" the firm. Only stems of at least
    ``COMPOUND_HEAD`` letters count as a head, so short stems do not match
    inside unrelated words; English is matched exactly ("found" is not in
    "profound").
    """
    if variants & text_stems:
        return True
    if language not in COMPOUNDING:
        return False
    heads = [v for v in variants if len(v) >= COMPOUND_HEAD]
    return any(len(s) > len(h) and s.endswith(h) for h in heads for s in text_stems)
