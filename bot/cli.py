"""The ``casebot`` command: index, ask, chat, sources, eval.

Exit codes: 0 success, 1 the work failed (e.g. the store is unreachable),
2 bad usage or settings. Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from bot.app import ADAPTERS, Services, build_services, configure_logging, run_adapters
from bot.console import chat_loop, render_plain
from bot.conversation import Reply
from bot.settings import load_settings
from index.answer import format_attribution
from index.errors import CasebotError
from index.evaluation import load_items, score
from index.pipeline import ProgressCallback


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="casebot",
        description="Answers questions about a news case from its articles, with citations.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("index", help="index the articles (incrementally)")
    p.add_argument("paths", nargs="*", type=Path, help="files or folders (default: CASEBOT_ARTICLES_DIR)")
    p.add_argument("--rebuild", action="store_true", help="drop the index and build it anew")
    p.add_argument("--prune", action="store_true", help="remove indexed articles whose files are gone")

    p = sub.add_parser("ask", help="answer one question")
    p.add_argument("question")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    sub.add_parser("chat", help="interactive chat in the terminal")

    p = sub.add_parser("sources", help="list the indexed articles")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("run", help="run the chat bot(s)")
    p.add_argument("platform", choices=["telegram", "matrix", "all"])

    p = sub.add_parser("feedback", help="list readers' 👍/👎 feedback")
    p.add_argument("--json", action="store_true")
    p.add_argument("--limit", type=int, default=50)

    p = sub.add_parser("model", help="assemble and verify the bundled language model (GGUF)")
    p.add_argument("action", choices=["assemble"])
    p.add_argument("--out", type=Path, help="cache folder (default: ~/.cache/casebot/models)")

    p = sub.add_parser("eval", help="score answers against a question file (shared/eval format)")
    p.add_argument("file", type=Path)
    p.add_argument("--json", action="store_true")
    return parser


@contextmanager
def _progress(enabled: bool) -> Iterator[ProgressCallback | None]:
    """A rich progress bar on a terminal; nothing when output is piped."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task("indexing", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _print_index_report(services: Services, args: argparse.Namespace) -> int:
    with _progress(sys.stderr.isatty()) as progress:
        report = services.case.index(args.paths or None, rebuild=args.rebuild, prune=args.prune,
                                     progress=progress)
    for failure in report.failures:
        print(f"skipped {failure}", file=sys.stderr)
    if report.missing:
        print(f"{report.missing} indexed article(s) no longer found; `casebot index --prune` removes them",
              file=sys.stderr)
    print(report.summary())
    return 0


def _ask(services: Services, args: argparse.Namespace) -> int:
    with _progress(sys.stderr.isatty()) as progress:
        built = services.case.ensure_indexed(progress)
    if built is not None:
        print(f"built the index first: {built.summary()}", file=sys.stderr)
    answer = services.case.ask(args.question)
    if args.json:
        print(json.dumps(answer.as_dict(), ensure_ascii=False, indent=2))
    else:
        reply = Reply("answer", answer.text, answer.language, answer=answer)
        print(render_plain(reply, services.prompts))
    return 0


def _sources(services: Services, args: argparse.Namespace) -> int:
    records = services.case.sources()
    if args.json:
        print(json.dumps([r.__dict__ for r in records], ensure_ascii=False, indent=2))
        return 0
    if not records:
        print("The index is empty; run `casebot index` first.")
    for r in records:
        attribution = format_attribution(r.outlet, r.published)
        print(f"{r.title} ({attribution}) {r.url or r.path}")
    return 0


def _eval(services: Services, args: argparse.Namespace) -> int:
    items = load_items(args.file)
    services.case.ensure_indexed()
    report = score(items, lambda item: services.case.ask(item.question))
    if args.json:
        print(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
        return 0
    for item in report.items:
        verdict = "refused" if item.refused else f"cited {item.correct_citations}/{len(item.cited)}"
        facts = f"facts {item.facts_found}/{item.facts_total}" if item.answerable else "unanswerable"
        print(f"{item.id:>8}  {verdict:<12} {facts:<14} {item.question}")
    print()
    print(f"questions            {report.questions}")
    print(f"source hit rate      {report.source_hit_rate:.2f}")
    print(f"citation precision   {report.citation_precision:.2f}")
    print(f"fact recall          {report.fact_recall:.2f}")
    print(f"correct refusals     {report.correct_refusals:.2f}")
    print(f"false refusals       {report.false_refusals:.2f}")
    return 0


def _model(args: argparse.Namespace) -> int:
    """Print the path of the verified bundled GGUF, for CASEBOT_LLM__MODEL_PATH."""
    from index.models import assemble

    print(assemble(cache_dir=args.out))
    return 0


def _chat(services: Services, _args: argparse.Namespace) -> int:
    services.case.ensure_indexed()
    asyncio.run(chat_loop(services.conversation, services.prompts))
    return 0


def _run(services: Services, args: argparse.Namespace) -> int:
    names = list(ADAPTERS) if args.platform == "all" else [args.platform]
    asyncio.run(run_adapters(services, names))
    return 0


def _feedback(services: Services, args: argparse.Namespace) -> int:
    entries = services.feedback.entries(limit=args.limit)
    if args.json:
        print(json.dumps([e.__dict__ for e in entries], ensure_ascii=False, indent=2))
        return 0
    up, down = services.feedback.counts()
    print(f"👍 {up}  👎 {down}")
    for e in entries:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.created))
        mark = "👍" if e.rating > 0 else "👎"
        print(f"{when} {mark} [{e.platform}] {e.question}")
    return 0


COMMANDS = {
    "index": _print_index_report, "ask": _ask, "sources": _sources, "eval": _eval, "chat": _chat,
    "run": _run, "feedback": _feedback,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``casebot`` console script."""
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except CasebotError as error:
        print(f"casebot: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    try:
        if args.command == "model":  # needs no index, store or embedder
            return _model(args)
        services = build_services(settings)
        return COMMANDS[args.command](services, args)
    except CasebotError as error:
        print(f"casebot: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("casebot: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `casebot sources | head`: the reader has gone, nothing to report
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
