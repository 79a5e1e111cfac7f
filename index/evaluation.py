"""Scoring answers against a question file in the ``shared/eval`` format.

Each line: ``id``, ``language``, ``question``, ``answerable``, ``sources``
(URLs that support the answer) and ``facts`` (groups of alternatives, each
group must appear in the answer, case-insensitive). Pure functions: the
caller supplies the answers.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from index.answer import Answer
from index.errors import CasebotError


@dataclass(frozen=True)
class EvalItem:
    id: str
    question: str
    answerable: bool
    language: str = ""
    sources: tuple[str, ...] = ()
    facts: tuple[tuple[str, ...], ...] = ()


@dataclass
class ItemResult:
    id: str
    question: str
    answerable: bool
    refused: bool
    cited: list[str]
    correct_citations: int
    facts_found: int
    facts_total: int
    answer: str
    seconds: float = 0.0
    mode: str = ""


@dataclass
class EvalReport:
    """The five numbers the issue asks for, plus per-question detail."""

    questions: int = 0
    source_hit_rate: float = 0.0
    citation_precision: float = 0.0
    fact_recall: float = 0.0
    correct_refusals: float = 0.0
    false_refusals: float = 0.0
    fact_and_source: float = 0.0  # answerable questions with every fact *and* a correct citation
    median_answer_chars: float = 0.0  # over answers that did not refuse
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    items: list[ItemResult] = field(default_factory=list)

    def as_dict(self, details: bool = True) -> dict[str, object]:
        data = asdict(self)
        if not details:
            data.pop("items")
        return data


def load_items(path: Path) -> list[EvalItem]:
    """Read a question file; a bad line is an error naming its number."""
    items = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise CasebotError(f"Cannot read {path}: {exc.strerror or exc}") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            items.append(EvalItem(
                id=str(raw.get("id", number)), question=str(raw["question"]),
                answerable=bool(raw["answerable"]), language=str(raw.get("language", "")),
                sources=tuple(raw.get("sources", [])),
                facts=tuple(tuple(group) for group in raw.get("facts", [])),
            ))
        except (ValueError, KeyError, TypeError) as exc:
            raise CasebotError(f"{path.name} line {number}: not a question object ({exc})") from exc
    return items


def score(items: Sequence[EvalItem], ask: Callable[[EvalItem], Answer]) -> EvalReport:
    """Ask every question and compute the metrics.

    * source hit rate: answerable questions whose answer cites a listed source;
    * citation precision: cited articles that are listed sources, over all
      citations of all answers (a citation on an unanswerable question is wrong);
    * fact recall: fact groups found in answers to answerable questions;
    * correct refusals: unanswerable questions refused;
    * false refusals: answerable questions refused;
    * fact and source: answerable questions answered with every fact group
      and at least one correct citation (the strictest of the numbers);
    * median answer length (characters) and p50/p95 answer time.
    """
    report = EvalReport(questions=len(items))
    hits = cited_total = cited_ok = facts_found = facts_total = 0
    answerable = unanswerable = refused_ok = refused_wrong = joint = 0
    lengths: list[int] = []
    for item in items:
        started = time.perf_counter()
        answer = ask(item)
        seconds = time.perf_counter() - started
        cited = [c.url or c.article_id for c in answer.citations]
        ok = sum(1 for url in cited if url in item.sources)
        text = answer.text.lower()
        found = sum(1 for group in item.facts if any(alt.lower() in text for alt in group))
        if answer.refused:
            found = 0
        cited_total += len(cited)
        cited_ok += ok
        if item.answerable:
            answerable += 1
            hits += 1 if ok and not answer.refused else 0
            facts_found += found
            facts_total += len(item.facts)
            refused_wrong += 1 if answer.refused else 0
            joint += 1 if ok and not answer.refused and found == len(item.facts) else 0
        else:
            unanswerable += 1
            refused_ok += 1 if answer.refused else 0
        if not answer.refused:
            lengths.append(len(answer.text))
        report.items.append(ItemResult(item.id, item.question, item.answerable, answer.refused,
                                       cited, ok, found, len(item.facts), answer.text, seconds, answer.mode))
    report.source_hit_rate = hits / answerable if answerable else 1.0
    report.citation_precision = cited_ok / cited_total if cited_total else 1.0
    report.fact_recall = facts_found / facts_total if facts_total else 1.0
    report.correct_refusals = refused_ok / unanswerable if unanswerable else 1.0
    report.false_refusals = refused_wrong / answerable if answerable else 0.0
    report.fact_and_source = joint / answerable if answerable else 1.0
    report.median_answer_chars = float(statistics.median(lengths)) if lengths else 0.0
    times = [r.seconds * 1000 for r in report.items]
    report.p50_ms = percentile(times, 50)
    report.p95_ms = percentile(times, 95)
    return report


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default); 0 for no values."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)
