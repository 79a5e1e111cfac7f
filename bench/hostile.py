"""Parse + chunk time of 2 MB hostile articles (the time bound behind tests/unit/test_articles.py).

Each input is written as a real file and goes through ``load_article`` and
``chunk_article``, exactly as ``casebot index`` reads it. Prints a Markdown
table; exits 1 if any input takes longer than ``--limit`` seconds (the unit
tests check what comes out; this checks how long it takes, which a unit test
on a shared machine cannot do reliably).

    .venv/bin/python bench/hostile.py            # 2 MB each, limit 10 s
    .venv/bin/python bench/hostile.py --mb 0.2   # quick
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from index.articles import load_article  # noqa: E402
from index.chunking import chunk_article  # noqa: E402
from index.errors import ArticleError  # noqa: E402

FRONT = '---\ntitle: "Hostile"\nurl: https://example.org/hostile\n---\n'
PROSE = "Die Mitto AG aus Zug hat laut [Netzwoche](https://n.example) SMS verschickt, sagt *sie*. "


def _repeat(unit: str, size: int) -> str:
    return unit * max(1, size // len(unit))


# name -> (suffix, builder(size) -> file text)
CASES: dict[str, tuple[str, Callable[[int], str]]] = {
    "md: <div hidden> openers": (".md", lambda n: FRONT + _repeat("<div hidden>", n)),
    "md: <a  openers": (".md", lambda n: FRONT + _repeat("<a ", n)),
    "md: [ openers": (".md", lambda n: FRONT + _repeat("[", n)),
    "md: ![ openers": (".md", lambda n: FRONT + _repeat("![", n)),
    "md: [^ footnote openers": (".md", lambda n: FRONT + _repeat("[^", n)),
    "md: [a]( openers": (".md", lambda n: FRONT + _repeat("[a](", n)),
    "md: *a emphasis openers": (".md", lambda n: FRONT + _repeat("*a", n)),
    "md: _a emphasis openers": (".md", lambda n: FRONT + _repeat("_a", n)),
    "md: < alone": (".md", lambda n: FRONT + _repeat("<", n)),
    "md: > quote nesting (one line)": (".md", lambda n: FRONT + _repeat(">", n) + " x"),
    "md: - list nesting": (".md", lambda n: FRONT + _repeat("- ", n) + "x"),
    "md: 1 MB line, no spaces": (".md", lambda n: FRONT + "x" * (n // 2)),
    "md: 'a. B ' non-boundaries": (".md", lambda n: FRONT + _repeat("a. B ", n)),
    "md: ordinary prose": (".md", lambda n: FRONT + _repeat(PROSE, n)),
    "txt: <div hidden> openers": (".txt", lambda n: "Titel\n" + _repeat("<div hidden>", n)),
    "txt: one line, no spaces": (".txt", lambda n: "Titel\n" + "x" * n),
    "html: <div hidden> openers": (".html", lambda n: "<html><body>" + _repeat("<div hidden>", n)),
    "html: nested <div>": (".html", lambda n: "<html><body>" + _repeat("<div>", n) + "text"),
    "html: ordinary prose": (".html", lambda n: "<html><body><article>" + _repeat(f"<p>{PROSE}</p>", n)),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=2.0, help="size of each input in MB")
    parser.add_argument("--limit", type=float, default=10.0, help="seconds allowed per input")
    args = parser.parse_args(argv)
    size = int(args.mb * 1_000_000)
    slow = []
    print(f"| input ({args.mb:g} MB) | parse s | chunk s | total s | text chars | chunks | outcome |")
    print("|---|---:|---:|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (suffix, build) in CASES.items():
            path = Path(tmp) / f"hostile{suffix}"
            path.write_text(build(size), encoding="utf-8")
            started = time.perf_counter()
            outcome, chars, chunks = "ok", 0, 0
            try:
                article = load_article(path)
            except ArticleError as error:
                parsed = time.perf_counter()
                outcome = f"skipped: {error.reason}"
                chunked = parsed
            else:
                parsed = time.perf_counter()
                chars = len(article.text)
                chunks = len(chunk_article(article))
                chunked = time.perf_counter()
            total = chunked - started
            if total > args.limit:
                slow.append(name)
            print(f"| {name} | {parsed - started:.2f} | {chunked - parsed:.2f} | {total:.2f} | {chars} | "
                  f"{chunks} | {outcome} |", flush=True)
    if slow:
        print(f"\nover {args.limit:g} s: {', '.join(slow)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
