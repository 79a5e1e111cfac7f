"""Checking a language model's citation markers before anything is sent.

Pure functions, no model and no I/O, so that every rule is tested with
handwritten model outputs. A model is told to end every statement with the
number of the passage that supports it (``[2]``). What comes back is not
trusted:

* a marker must name a passage that was supplied (``[0]`` or ``[7]`` with
  four passages is removed), and malformed markers (``[n]``, ``[]``, a
  dangling ``[3`` cut off by the token limit) are removed;
* a statement (sentence) keeps only if at least one valid marker remains and
  ``supports`` accepts it; everything else is dropped, because an uncited
  statement is exactly what an injected instruction or a hallucination looks
  like;
* markers are renumbered to the cited *articles* (several passages may come
  from one article), in order of first use, so that the sources list names
  only cited articles and matches the numbers in the text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from index.text import split_sentences

NO_ANSWER = "NO_ANSWER"

_LABELS = (r"(?:passages?|sources?|quellen?|abschnitte?|artikel|articles?|absatz|docs?|documents?|"
           r"dokumente?|refs?|references?|textstellen?|stellen?|nr\.?|no\.?)")
# [1], [1, 2], [1;2], [1-3], [^1], [Passage 1], [Quelle 2], and the empty or placeholder forms.
_MARKER = re.compile(
    rf"\[\s*\^?\s*(?:{_LABELS}\s*)?#?\s*(?P<body>(?:\d+\s*(?:[,;&/–-]|und|and)?\s*)*|n|x|\?|…|\.\.\.)\s*\]",
    re.IGNORECASE,
)
_FULLWIDTH = str.maketrans({"【": "[", "】": "]", "［": "[", "］": "]"})
_DANGLING = re.compile(r"\[\s*\^?\s*(?:" + _LABELS + r"\s*)?\d*\s*$", re.IGNORECASE)
_PUNCT_THEN_MARKERS = re.compile(r"([.!?…])((?:\s*\[[^\[\]\n]{0,30}\])+)")
_LEADING_MARKERS = re.compile(r"^((?:\s*\[[^\[\]\n]{0,30}\])+)\s*")
_LINE_PREFIX = re.compile(r"^\s*(?:[-*•]\s+|\d{1,2}[.)]\s+)?")
_EMPHASIS = re.compile(r"\*\*|__")
_ANSWER_LABEL = re.compile(r"^\s*(?:antwort|answer)\s*:\s*", re.IGNORECASE)
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,;:!?])")
# The sentinel alone on the first line; a model that echoes the rules also writes it, mid-text.
_NO_ANSWER = re.compile(r"\W*NO[_ ]ANSWER\W*")


@dataclass(frozen=True)
class CheckedText:
    """A model's answer after the citation check.

    ``text`` carries markers ``[1]``..``[k]`` numbering ``articles`` (article
    keys in order of first use); ``passages[i]`` lists the supplied passage
    numbers cited for article ``i + 1``; ``statements`` pairs each kept
    statement (markers removed) with the passage numbers it cites.
    """

    text: str
    articles: tuple[str, ...]
    passages: tuple[tuple[int, ...], ...]
    statements: tuple[tuple[str, tuple[int, ...]], ...]
    removed_markers: int
    removed_statements: int
    no_answer: bool = False

    @property
    def cited(self) -> bool:
        return bool(self.articles)


def marker_numbers(body: str) -> list[int]:
    """Passage numbers in a marker's body: ``1, 2`` -> [1, 2]; ``1-3`` -> [1, 2, 3]."""
    numbers: list[int] = []
    for match in re.finditer(r"(\d+)(?:\s*[–-]\s*(\d+))?", body):
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) else first
        if last < first or last - first > 9:  # not a plausible range: keep the ends only
            numbers += [first, last] if match.group(2) else [first]
        else:
            numbers += list(range(first, last + 1))
    return numbers


def _normalise(text: str) -> str:
    text = text.translate(_FULLWIDTH).replace("[[", "[").replace("]]", "]")
    text = _EMPHASIS.sub("", text.strip().strip("`"))
    # "… SMS. [1] Next" -> "… SMS [1]. Next": markers belong to the sentence before them.
    return _PUNCT_THEN_MARKERS.sub(lambda m: f"{m.group(2)}{m.group(1)}", text)


def _statements(text: str) -> list[tuple[int, str, str]]:
    """``(line, bullet, sentence)`` for every sentence; a sentence's leading markers move back.

    Markers that open a line whose sentences carry no others apply to each of them.
    """
    result: list[tuple[int, str, str]] = []
    for number, raw_line in enumerate(text.split("\n")):
        line = _ANSWER_LABEL.sub("", raw_line)
        prefix = _LINE_PREFIX.match(line)
        bullet = prefix.group(0).strip() if prefix else ""
        body = line[prefix.end() if prefix else 0:].strip()
        sentences = split_sentences(body)
        lead = _LEADING_MARKERS.match(body)
        if lead and len(sentences) > 1 and not _MARKER.search(body[lead.end():]):
            # "[1] First sentence. Second sentence." cites passage 1 for the whole line; each
            # sentence still has to pass ``supports`` on its own.
            markers = lead.group(1).strip()
            sentences = [f"{s} {markers}" for s in split_sentences(body[lead.end():])]
        for sentence in sentences:
            lead = _LEADING_MARKERS.match(sentence)
            if lead and result and result[-1][0] == number:
                previous = result[-1]
                result[-1] = (number, previous[1], previous[2] + " " + lead.group(1).strip())
                sentence = sentence[lead.end():]
            if sentence.strip():
                result.append((number, bullet, sentence.strip()))
    return result


def check_citations(
    text: str,
    sources: Sequence[str],
    supports: Callable[[str, Sequence[int]], bool] | None = None,
) -> CheckedText:
    """Verify and renumber the markers of a model's ``text``.

    ``sources[i]`` is the article key of supplied passage ``i + 1``.
    ``supports(statement, passage_numbers)`` may reject a statement whose
    cited passages do not back it (default: accept). A text that contains
    starts with :data:`NO_ANSWER` on a line of its own is the model saying
    the passages do not answer.
    """
    first = next((line for line in text.strip().splitlines() if line.strip()), "")
    if _NO_ANSWER.fullmatch(first.strip()):
        return CheckedText("", (), (), (), 0, 0, no_answer=True)
    text = _DANGLING.sub("", _normalise(text))
    article_numbers: dict[str, int] = {}
    article_passages: dict[str, list[int]] = {}
    kept: list[tuple[str, tuple[int, ...]]] = []
    lines: dict[int, tuple[str, list[str]]] = {}
    removed_markers = removed_statements = 0
    for line, bullet, sentence in _statements(text):
        cited: list[int] = []
        for match in _MARKER.finditer(sentence):
            numbers = marker_numbers(match.group("body"))
            valid = [n for n in numbers if 1 <= n <= len(sources)]
            removed_markers += (len(numbers) - len(valid)) if numbers else 1
            cited += [n for n in valid if n not in cited]
        plain = _SPACE_BEFORE_PUNCT.sub(r"\1", _MARKER.sub("", sentence)).strip()
        plain = re.sub(r"\s{2,}", " ", plain)
        if not cited or not re.search(r"\w", plain) or (supports is not None and not supports(plain, cited)):
            removed_statements += 1
            continue
        for n in cited:
            key = sources[n - 1]
            article_numbers.setdefault(key, len(article_numbers) + 1)
            passages = article_passages.setdefault(key, [])
            if n not in passages:
                passages.append(n)
        numbers = sorted({article_numbers[sources[n - 1]] for n in cited})
        markers = "".join(f"[{k}]" for k in numbers)
        end = re.search(r"[.!?…]+[\"'»«“”)]*$", plain)
        body = plain[: end.start()] if end else plain
        written = f"{body.rstrip()} {markers}{end.group(0) if end else ''}"
        kept.append((plain, tuple(cited)))
        lines.setdefault(line, (bullet, []))[1].append(written)
    rendered = "\n".join((f"{bullet} " if bullet else "") + " ".join(parts) for bullet, parts in lines.values())
    keys = tuple(article_numbers)
    return CheckedText(
        text=rendered, articles=keys, passages=tuple(tuple(article_passages[k]) for k in keys),
        statements=tuple(kept), removed_markers=removed_markers, removed_statements=removed_statements,
    )
