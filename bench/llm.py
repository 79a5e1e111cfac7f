"""casebot benchmark: answer quality and time, extractive vs. written by the local model, side by side.

Asks two question sets twice, once with extractive answers and once with
answers written by a GGUF model in-process (default: the bundled
Qwen2.5-Coder-1.5B-Instruct, one thread), and prints for each the quality
table of the extractive benchmark (``index.evaluation.score``: source hit,
citation precision, fact recall, correct and false refusals) plus the median
answer length and p50/p95 time to answer, and which mode answered:

* the dev set ``../shared/eval/dev.jsonl`` over the demo case ``data/articles``;
* the xquad-dev German set ``../shared/eval/xquad-dev/de-de.jsonl`` over
  ``corpus-de`` (``--xquad-sample`` questions drawn with a fixed seed: one
  generation takes seconds, the whole set would take hours on two cores).

``../shared`` is found next to the repository. Progress goes to stderr.

    .venv/bin/python bench/llm.py [--xquad-sample 60] [--limit N] [--model-path FILE] [--threads 1]
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python bench/llm.py` puts bench/, not the repo, on the path
    sys.path.insert(0, str(REPO))

from bot.app import Services, build_services  # noqa: E402
from bot.settings import DEMO_ARTICLES, Settings  # noqa: E402
from index.answer import Answer  # noqa: E402
from index.evaluation import EvalItem, EvalReport, load_items, score  # noqa: E402
from index.llm import bundled_gguf  # noqa: E402

SHARED = REPO.parent / "shared" / "eval"


@dataclass
class Column:
    """One (question set, mode) run: the evaluation report and what the table adds to it."""

    name: str
    report: EvalReport
    seconds: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    modes: Counter[str] = field(default_factory=Counter)


def quality_table(columns: list[Column]) -> str:
    """The quality table, one column per run (kept in one function to merge with bench/quality.py)."""
    rows: list[tuple[str, list[str]]] = [
        ("questions", [str(c.report.questions) for c in columns]),
        ("source hit rate", [f"{c.report.source_hit_rate:.2f}" for c in columns]),
        ("citation precision", [f"{c.report.citation_precision:.2f}" for c in columns]),
        ("fact recall", [f"{c.report.fact_recall:.2f}" for c in columns]),
        ("correct refusals", [f"{c.report.correct_refusals:.2f}" for c in columns]),
        ("false refusals", [f"{c.report.false_refusals:.2f}" for c in columns]),
        ("median answer length (chars)", [f"{statistics.median(c.lengths):.0f}" if c.lengths else "–"
                                          for c in columns]),
        # score() times every answer; its percentiles are the project's one implementation.
        ("p50 time to answer", [f"{c.report.p50_ms / 1000:.2f} s" for c in columns]),
        ("p95 time to answer", [f"{c.report.p95_ms / 1000:.2f} s" for c in columns]),
        ("answered by", [", ".join(f"{m} {n}" for m, n in sorted(c.modes.items())) for c in columns]),
    ]
    lines = ["| | " + " | ".join(c.name for c in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += [f"| {label} | " + " | ".join(values) + " |" for label, values in rows]
    return "\n".join(lines)


def _services(data: Path, articles: Path, **llm: object) -> Services:
    settings = Settings(_env_file=None, data_dir=data, articles_dir=articles, llm=llm)  # type: ignore[call-arg]
    services = build_services(settings)
    services.case.index()
    services.case.warm_up()  # embedder, keyword index and, for the LLM, the GGUF file
    return services


def _run(name: str, services: Services, items: list[EvalItem]) -> Column:
    column = Column(name, EvalReport())

    def ask(item: EvalItem) -> Answer:
        started = time.perf_counter()
        answer = services.case.ask(item.question)
        column.seconds.append(time.perf_counter() - started)
        column.modes[answer.mode.split(":")[0] if answer.mode.startswith("refused") else answer.mode] += 1
        if not answer.refused:
            column.lengths.append(len(answer.text.replace(answer.notice, "").strip()))
        print(f"  {name} {len(column.seconds)}/{len(items)} {column.seconds[-1]:.1f}s {answer.mode}",
              file=sys.stderr)
        return answer

    column.report = score(items, ask)
    return column


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=0, help="ask only the first N dev questions")
    parser.add_argument("--xquad-sample", type=int, default=60, help="xquad-dev German questions (0: skip)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--model-path", default="", help="GGUF file (default: the bundled model)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--context-window", type=int, default=2048)
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    args = parser.parse_args()

    model_path = args.model_path or str(bundled_gguf())
    llm = {"provider": "llamacpp", "model_path": model_path, "threads": args.threads,
           "max_tokens": args.max_tokens, "context_window": args.context_window, "timeout": 300.0}
    dev = load_items(SHARED / "dev.jsonl")[: args.limit or None]
    sets = [("dev", DEMO_ARTICLES, dev)]
    if args.xquad_sample:
        xquad = load_items(SHARED / "xquad-dev" / "de-de.jsonl")
        xquad = random.Random(args.seed).sample(xquad, min(args.xquad_sample, len(xquad)))
        sets.append((f"xquad de-de ({len(xquad)} sampled)", SHARED / "xquad-dev" / "corpus-de", xquad))
    columns: list[Column] = []
    with tempfile.TemporaryDirectory(prefix="casebot-bench-llm-") as tmp:
        for number, (label, source, items) in enumerate(sets):
            root = Path(tmp) / str(number)
            shutil.copytree(source, root / "articles")
            # One index per set, answered both ways (the LLM services open the same store).
            columns.append(_run(f"{label}: extractive", _services(root / "data", root / "articles"), items))
            columns.append(_run(f"{label}: {Path(model_path).name}",
                                _services(root / "data", root / "articles", **llm), items))
            print(quality_table(columns), file=sys.stderr)  # a long run shows each set when done
    table = quality_table(columns)
    print(table)
    if args.out:
        args.out.write_text(table + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
