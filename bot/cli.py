"""The ``casebot`` command: index, ask, chat, sources, eval, run, check, feedback.

Exit codes: 0 success, 1 the work failed (e.g. the store is unreachable),
2 bad usage or settings. Errors are one line on stderr.

Settings are checked before anything heavy happens: a malformed value, a
missing adapter secret or an empty articles folder ends the command with
exit code 2 within a second, before the data dir is created, the index
opened or the embedder loaded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from bot.logs import configure_logging
from bot.settings import (
    ADAPTERS,
    Settings,
    SettingsError,
    articles_dir_problem,
    case_name,
    collection_name,
    load_settings,
    require,
    unknown_setting_warnings,
)
from index.errors import CasebotError

# The services (llama-index, Chroma, the embedder) are imported only after the
# settings were checked, so that a bad setting is reported within a second.
if TYPE_CHECKING:
    from bot.app import Services
    from index.pipeline import IndexReport, ProgressCallback


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="casebot",
        description="Answers questions about a news case from its articles, with citations.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
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

    p = sub.add_parser("check", help="check settings and that Telegram/Matrix/Chroma answer; start nothing")
    p.add_argument("platform", nargs="?", choices=["telegram", "matrix", "all"],
                   help="default: every adapter that has settings")

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


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("casebot")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


@contextmanager
def _progress(enabled: bool, console: Console | None = None) -> Iterator[ProgressCallback | None]:
    """A rich progress bar on a terminal; nothing when output is piped.

    ``console`` is the one the log handler writes to, so that log lines are
    printed above the bar instead of through it.
    """
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), transient=True, console=console or Console(stderr=True)) as bar:
        task = bar.add_task("indexing", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _print_index_report(services: Services, args: argparse.Namespace) -> int:
    with _progress(sys.stderr.isatty(), args.console) as progress:
        report = services.case.index(args.paths or None, rebuild=args.rebuild, prune=args.prune,
                                     progress=progress)
    for failure in report.failures:
        print(f"skipped {failure}", file=sys.stderr)
    if report.missing:
        print(f"{report.missing} indexed article(s) no longer found; `casebot index --prune` removes them",
              file=sys.stderr)
    print(report.summary())
    return 0


def _ensure_indexed(services: Services, progress: ProgressCallback | None = None) -> IndexReport | None:
    """Build the index if it is empty; an articles folder with nothing to index is a settings error.

    Without it, an empty index would refuse every question, politely and forever.
    """
    built = services.case.ensure_indexed(progress)
    if built is not None and not built.added:
        problem = articles_dir_problem(services.case.articles_dir)
        if problem:
            raise SettingsError(f"{problem} The index is empty, so every question would be refused.")
    return built


def _ask(services: Services, args: argparse.Namespace) -> int:
    from bot.conversation import normalise_question

    question = normalise_question(args.question)
    limit = services.settings.chat.max_question_chars
    if len(question) > limit:  # the chat's limit: a 100,000-character question takes minutes
        raise SettingsError(f"the question is too long ({len(question)} characters, at most {limit}; "
                            "CASEBOT_CHAT__MAX_QUESTION_CHARS sets the limit)")
    if not question:
        raise SettingsError("the question is empty")
    with _progress(sys.stderr.isatty(), args.console) as progress:
        built = _ensure_indexed(services, progress)
    if built is not None:
        print(f"built the index first: {built.summary()}", file=sys.stderr)
    answer = services.case.ask(question)
    if args.json:
        print(json.dumps(answer.as_dict(), ensure_ascii=False, indent=2))
    else:
        from bot.console import render_plain
        from bot.conversation import Reply

        reply = Reply("answer", answer.text, answer.language, answer=answer)
        print(render_plain(reply, services.prompts))
    return 0


def _sources(services: Services, args: argparse.Namespace) -> int:
    from index.answer import format_attribution

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
    from index.evaluation import load_items, score

    items = load_items(args.file)
    _ensure_indexed(services)
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
    from bot.console import chat_loop

    _ensure_indexed(services)
    asyncio.run(chat_loop(services.conversation, services.prompts))
    return 0


def _run(services: Services, args: argparse.Namespace) -> int:
    from bot.app import Shutdown, run_adapters

    names = list(ADAPTERS) if args.platform == "all" else [args.platform]
    shutdown = Shutdown()
    asyncio.run(run_adapters(services, names, shutdown))
    if shutdown.abandoned_work:
        # Stopped while the index was built or the models loaded: that worker thread may hold the
        # interpreter's exit for seconds. Everything written so far is committed (indexing is
        # crash-safe: the next run redoes the unfinished article), so end the process now.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
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


def _requirements(settings: Settings, args: argparse.Namespace) -> None:
    """What the command needs beyond well-formed settings (raises :class:`SettingsError`)."""
    case_name(settings)  # a broken .case.yaml is a settings error too, found before any work
    collection_name(settings)
    if args.command == "run":
        require(settings, list(ADAPTERS) if args.platform == "all" else [args.platform], articles=True)
    elif args.command == "index" and not args.paths:
        require(settings, articles=True)


COMMANDS = {
    "index": _print_index_report, "ask": _ask, "sources": _sources, "eval": _eval, "chat": _chat,
    "run": _run, "feedback": _feedback,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``casebot`` console script."""
    args = _parser().parse_args(argv)
    # Known before the settings are read, so that even their errors are JSON when asked for.
    json_logs = os.environ.get("CASEBOT_LOG__FORMAT", "").strip().lower() == "json"

    def report(error: object, code: int) -> int:
        """The one line an error ends the command with: on stderr, or as a JSON log record."""
        if json_logs:
            if not logging.getLogger().handlers:
                configure_logging("ERROR", "json")
            logging.getLogger("casebot").error("%s", error)
        else:
            print(f"casebot: {error}", file=sys.stderr)
        return code

    try:
        settings = load_settings()
        args.console = configure_logging(settings.log_level, settings.log.format)
        json_logs = settings.log.format == "json"
        for warning in unknown_setting_warnings(os.environ):
            logging.getLogger("casebot").warning("%s", warning)
        _requirements(settings, args)
    except SettingsError as error:
        return report(error, 2)
    try:
        if args.command == "model":  # needs no index, store or embedder
            return _model(args)
        if args.command == "check":
            from bot.check import run_checks

            return run_checks(settings, args.platform)
        from bot.app import build_services

        services = build_services(settings)
        return COMMANDS[args.command](services, args)
    except SettingsError as error:
        return report(error, 2)
    except CasebotError as error:
        return report(error, 1)
    except KeyboardInterrupt:
        return report("interrupted", 130)
    except BrokenPipeError:  # `casebot sources | head`: the reader has gone, nothing to report
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
