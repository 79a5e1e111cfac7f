"""Replay the refusal decision on stored scores: what each calibration parameter trades.

For every suite of :mod:`bench.quality`, indexes its corpus into a temporary
data dir and records, per question, the refusal evidence (topic score,
reference score, focus unknown/support) and whether the answer given with
refusal switched off has every gold fact and a correct citation; and the
scores of the collection's pseudo-questions. A grid of (same-language
quantile, cross-language offset, missing-fact margin) is then replayed with
:meth:`index.refusal.RefusalDecider.judge` on these scores: the answers stay
the same, only the refusals change. Each suite is also split into two halves
by Wikipedia title (XQuAD), so a value can be chosen on one half and read on
the other. This is how the README's parameters were chosen.

    .venv/bin/python bench/refusal_replay.py --suites de-de,en-en,en-de
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.quality import Suite, log, merged_articles, suites  # noqa: E402
from bot.app import build_services  # noqa: E402
from bot.settings import Settings  # noqa: E402
from index.answer import ExtractiveAnswerer  # noqa: E402
from index.evaluation import load_items, score  # noqa: E402
from index.refusal import (  # noqa: E402
    Calibration,
    Evidence,
    RefusalDecider,
    RefusalPolicy,
    pseudo_question_scores,
    thresholds,
)
from index.text import detect_language  # noqa: E402


@dataclass
class Question:
    title: str
    answerable: bool
    evidence: Evidence | None  # None: nothing retrieved
    open_refused: bool  # refused even with the thresholds off (nothing found, or an off-topic request)
    joint: bool  # every fact and a correct citation, with the thresholds off
    cited: int
    correct: int


@dataclass
class Recorded:
    name: str
    questions: list[Question]
    pseudo: list[tuple[float, float]]  # (passage, sentence) cosines of each pseudo-question
    sentences: int


def record(suite: Suite, work: Path, policy: RefusalPolicy) -> Recorded:
    """Index ``suite`` and record its evidence, open answers and pseudo-question scores."""
    articles = merged_articles(suite.corpora, work / "articles")
    services = build_services(Settings(_env_file=None, data_dir=work / "data",
                                       articles_dir=articles, default_language=suite.default_language))
    services.case.index()
    answerer = services.case.answerer
    assert isinstance(answerer, ExtractiveAnswerer)
    # Analysis only: the answerer's parts, to score the same answers under other thresholds.
    retriever, store, decider = answerer._retriever, answerer._store, answerer._decider
    assert store is not None
    pseudo, sentences = pseudo_question_scores(store, retriever.embed_queries, policy,
                                               retriever.keyword_index().chunks, answerer._sentence_vectors)
    open_answerer = ExtractiveAnswerer(retriever, answerer._embedding, answerer._prompts, answerer._policy,
                                       suite.default_language, store=store,
                                       refusal_policy=RefusalPolicy(focus_unknown=2.0))
    open_answerer._calibration = Calibration(-1.0, -1.0, 0, generation=retriever.generation())
    open_answerer._calibration_generation = retriever.generation()
    items = load_items(suite.questions)
    titles = {row["id"]: row.get("title", "") for row in map(json.loads, suite.questions.open(encoding="utf-8"))}
    report = score(items, lambda item: open_answerer.answer(item.question))
    recorded = []
    for item, result in zip(items, report.items):
        language = detect_language(item.question, suite.default_language)
        evidence = decider.evidence(item.question, answerer.retrieve(item.question, language), None)
        joint = result.correct_citations > 0 and not result.refused and result.facts_found == result.facts_total
        recorded.append(Question(titles.get(item.id, ""), item.answerable, evidence, result.refused, joint,
                                 len(result.cited), result.correct_citations))
    return Recorded(suite.name, recorded, pseudo, sentences)


def replay(questions: Sequence[Question], decider: RefusalDecider, same: float, cross: float) -> tuple[float, ...]:
    """(fact+source, correct refusals, false refusals, citation precision) under these thresholds."""
    def refused(q: Question) -> bool:
        if q.open_refused or q.evidence is None:
            return True
        threshold = same if q.evidence.same_language else cross
        return decider.judge(dataclasses.replace(q.evidence, threshold=threshold)) is not None

    answerable = [q for q in questions if q.answerable]
    unanswerable = [q for q in questions if not q.answerable]
    answered = [q for q in questions if not refused(q)]
    cited = sum(q.cited for q in answered)
    return (sum(q.joint and not refused(q) for q in answerable) / max(len(answerable), 1),
            sum(refused(q) for q in unanswerable) / max(len(unanswerable), 1),
            sum(refused(q) for q in answerable) / max(len(answerable), 1),
            sum(q.correct for q in answered if q.answerable) / max(cited, 1))


def halves(questions: Sequence[Question]) -> tuple[list[Question], list[Question]]:
    titles = sorted({q.title for q in questions})
    first = set(titles[0::2])
    return [q for q in questions if q.title in first], [q for q in questions if q.title not in first]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    parser.add_argument("--suites", default="de-de,en-en,en-de")
    parser.add_argument("--rates", default="0.03,0.04,0.05,0.06")
    parser.add_argument("--offsets", default="-0.05,-0.045,-0.04")
    parser.add_argument("--margins", default="0.04")
    parser.add_argument("--weights", default="0,0.25,0.5,0.75", help="sentence weights of the topic score")
    args = parser.parse_args(argv)
    base = RefusalPolicy()
    chosen = [s for s in suites(args.shared) if s.name in args.suites.split(",")]
    if not chosen:
        parser.error(f"no suite named {args.suites!r}")
    recorded = []
    for suite in chosen:
        with tempfile.TemporaryDirectory(prefix=f"casebot-replay-{suite.name}-") as tmp:
            log(f"{suite.name}: indexing and recording")
            recorded.append(record(suite, Path(tmp), base))
    grid = itertools.product(*(map(float, value.split(","))
                               for value in (args.weights, args.rates, args.offsets, args.margins)))
    print("| sentence weight | quantile | cross offset | missing-fact margin | set "
          "| all: f+s / refusals / FR / precision | title half A | title half B |")
    print("|---|---|---|---|---|---|---|---|")
    for weight, rate, offset, margin in grid:
        policy = dataclasses.replace(base, focus_margin=margin, sentence_weight=weight, false_refusal_rate=rate,
                                     cross_language_offset=offset)
        decider = RefusalDecider(policy)
        for r in recorded:
            same, cross = thresholds(r.pseudo, r.sentences, policy)
            parts = [r.questions, *halves(r.questions)]
            text = [" / ".join(f"{v:.3f}" for v in replay(part, decider, same, cross)) if part else "—"
                    for part in parts]
            print(f"| {weight} | {rate} | {offset} | {margin} | {r.name} | {text[0]} | {text[1]} | {text[2]} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
