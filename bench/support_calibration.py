"""Fit the per-sentence support check (index/support.py) on pairs built from a parallel corpus.

The xquad-dev corpora (``../shared/eval/xquad-dev/corpus-de`` and
``corpus-en``) are the same Wikipedia paragraphs in German and English, file
for file. From them:

* **supported**: a sentence of a paragraph with some words left out (a model
  shortens), and the parallel sentence of the other language's version
  (a model answers in the reader's language), each against the German
  paragraph;
* **unsupported**: sentences of *other* paragraphs of the same Wikipedia
  article (same topic, other facts: the hard case) and of other articles,
  in both languages, against the paragraph;
* **contradicting**: supported sentences with a negation added or removed,
  and with a number changed; these must fail by the polarity and number
  rules whatever the score.

Articles are split in two halves by title: weights and threshold are fitted
on the first half (grid search, best balanced accuracy), the table reports
both halves. Prints the policy to paste into ``SupportPolicy``.

    .venv/bin/python bench/support_calibration.py [--limit-articles N]
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from index.articles import load_article  # noqa: E402
from index.embeddings import EmbeddingSpec, build_embedding  # noqa: E402
from index.support import Features, SupportChecker, SupportPolicy, negated  # noqa: E402
from index.text import split_sentences  # noqa: E402

XQUAD = REPO.parent / "shared" / "eval" / "xquad-dev"


@dataclass
class Pair:
    sentence: str
    passage: str
    supported: bool
    kind: str
    half: int
    features: Features | None = None


def _sentences(path: Path) -> list[str]:
    article = load_article(path)
    return [s for p in article.paragraphs for s in split_sentences(p) if len(s.split()) >= 5]


def _drop_words(sentence: str, rng: random.Random) -> str:
    """The sentence with about a fifth of its words left out (never a negation or a number)."""
    tokens = sentence.split()
    keep = [t for t in tokens if negated(t) or re.search(r"\d", t) or rng.random() > 0.2]
    return " ".join(keep)


_NEGATE = [(r"\b(ist|war|hat|wurde|wird|sind|waren|kann|konnte)\b", r"\1 nicht"),
           (r"\b(is|was|has|were|are|can|could|did|does)\b", r"\1 not")]


def _flip_negation(sentence: str) -> str | None:
    """The sentence with its negation removed, or one added after the first auxiliary verb."""
    if negated(sentence):
        flipped = re.sub(r"\s*\b(nicht|not|kein|keine|never|nie)\b", "", sentence, count=1, flags=re.IGNORECASE)
        return flipped if not negated(flipped) else None
    for pattern, replacement in _NEGATE:
        flipped, n = re.subn(pattern, replacement, sentence, count=1)
        if n:
            return flipped
    return None


def _change_number(sentence: str) -> str | None:
    match = re.search(r"\d+", sentence)
    if not match:
        return None
    value = str(int(match.group(0)) + 7)
    return sentence[: match.start()] + value + sentence[match.end():]


def build_pairs(limit_articles: int, seed: int = 11) -> list[Pair]:
    rng = random.Random(seed)
    files = sorted((XQUAD / "corpus-de").glob("*.md"))
    by_title: dict[str, list[Path]] = {}
    for path in files:
        by_title.setdefault(re.sub(r"-\d+$", "", path.stem), []).append(path)
    titles = sorted(by_title)
    rng.shuffle(titles)
    if limit_articles:
        titles = titles[:limit_articles]
    halves = {t: i % 2 for i, t in enumerate(titles)}
    pairs: list[Pair] = []
    all_paths = [p for t in titles for p in by_title[t]]
    for title in titles:
        half = halves[title]
        for path in by_title[title]:
            de = _sentences(path)
            en_path = XQUAD / "corpus-en" / path.name
            en = _sentences(en_path) if en_path.is_file() else []
            passage = " ".join(de)
            if not de:
                continue
            for sentence in rng.sample(de, min(3, len(de))):
                pairs.append(Pair(_drop_words(sentence, rng), passage, True, "shortened", half))
                if (flipped := _flip_negation(sentence)) is not None:
                    pairs.append(Pair(flipped, passage, False, "negation flipped", half))
                if (changed := _change_number(sentence)) is not None:
                    pairs.append(Pair(changed, passage, False, "number changed", half))
            if len(en) == len(de):  # sentence-aligned translation
                for i in rng.sample(range(len(en)), min(3, len(en))):
                    pairs.append(Pair(en[i], passage, True, "translated", half))
                    if (flipped := _flip_negation(en[i])) is not None:
                        pairs.append(Pair(flipped, passage, False, "negation flipped", half))
            siblings = [p for p in by_title[title] if p != path]
            for other in rng.sample(siblings, min(2, len(siblings))):
                for language, folder in (("de", "corpus-de"), ("en", "corpus-en")):
                    other_path = XQUAD / folder / other.name
                    sentences = _sentences(other_path) if other_path.is_file() else []
                    if sentences:
                        pairs.append(Pair(rng.choice(sentences), passage, False, f"same article ({language})", half))
            stranger = rng.choice([p for p in all_paths if p not in by_title[title]])
            sentences = _sentences(stranger)
            if sentences:
                pairs.append(Pair(rng.choice(sentences), passage, False, "other article", half))
    return pairs


def _accuracy(pairs: list[Pair], checker: SupportChecker) -> tuple[float, float, float]:
    """Share of supported pairs accepted, share of unsupported rejected, balanced accuracy."""
    accepted = rejected = positives = negatives = 0
    for pair in pairs:
        assert pair.features is not None
        f = pair.features
        ok = f.numbers_found and f.polarity_agrees and checker.score(f) >= checker.policy.threshold
        if pair.supported:
            positives += 1
            accepted += ok
        else:
            negatives += 1
            rejected += not ok
    tpr = accepted / positives if positives else float("nan")
    tnr = rejected / negatives if negatives else float("nan")
    return tpr, tnr, (tpr + tnr) / 2


def fit(pairs: list[Pair], embedding: object) -> SupportPolicy:
    best: tuple[float, SupportPolicy] | None = None
    for word_weight in (0.0, 0.05, 0.1, 0.15, 0.2, 0.3):
        for name_weight in (0.0, 0.05, 0.1, 0.15):
            for step in range(60, 121):
                policy = SupportPolicy(word_weight=word_weight, name_weight=name_weight, threshold=step / 100)
                checker = SupportChecker(embedding, policy)  # type: ignore[arg-type]
                balanced = _accuracy(pairs, checker)[2]
                if best is None or balanced > best[0]:
                    best = (balanced, policy)
    assert best is not None
    return best[1]


def table(pairs: list[Pair], checker: SupportChecker) -> str:
    lines = ["| half | kind | pairs | accepted |", "|---|---|---|---|"]
    for half, label in ((0, "fit"), (1, "held out")):
        kinds = sorted({p.kind for p in pairs if p.half == half})
        for kind in kinds:
            group = [p for p in pairs if p.half == half and p.kind == kind]
            accepted = sum(1 for p in group if p.features is not None and p.features.numbers_found
                           and p.features.polarity_agrees and checker.score(p.features) >= checker.policy.threshold)
            lines.append(f"| {label} | {kind} ({'supported' if group[0].supported else 'unsupported'}) "
                         f"| {len(group)} | {accepted / len(group):.2f} |")
        tpr, tnr, balanced = _accuracy([p for p in pairs if p.half == half], checker)
        lines.append(f"| {label} | **all**: supported accepted {tpr:.2f}, unsupported rejected {tnr:.2f}, "
                     f"balanced {balanced:.2f} | {sum(p.half == half for p in pairs)} | |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit-articles", type=int, default=0, help="use only N Wikipedia articles")
    args = parser.parse_args()
    embedding = build_embedding(EmbeddingSpec())
    checker = SupportChecker(embedding)
    pairs = build_pairs(args.limit_articles)
    print(f"{len(pairs)} pairs", file=sys.stderr)
    for pair in pairs:
        pair.features = checker.features(pair.sentence, [pair.passage])
    print(f"shipped: {checker.policy}")
    print(table(pairs, checker))
    policy = fit([p for p in pairs if p.half == 0], embedding)
    print(f"fitted on half 0: {policy}")
    print(table(pairs, SupportChecker(embedding, policy)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
