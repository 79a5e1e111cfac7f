"""casebot benchmark: time to answer, extractive vs. LLM-written with a local model.

Asks the dev questions (``/work/shared/eval/dev.jsonl``, or ``--questions``)
on the demo case twice: extractive, and written by a GGUF model in-process
through llama-cpp-python (default: the bundled gemma3-270m). Prints a
Markdown table: p50/p95 time to answer, prompt tokens, completion tokens and
tokens per second, and how many answers the model's text survived the
citation check. Progress goes to stderr.

    .venv/bin/python bench/llm.py
    .venv/bin/python bench/llm.py --model-path /models/qwen2.5-3b-instruct-q4_k_m.gguf --threads 2
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python bench/llm.py` puts bench/, not the repo, on the path
    sys.path.insert(0, str(REPO))

from bot.app import Services, build_services  # noqa: E402
from bot.settings import DEMO_ARTICLES, Settings  # noqa: E402
from index.grounded import GroundedAnswerer  # noqa: E402
from index.llm import bundled_gguf  # noqa: E402

DEV_QUESTIONS = Path("/work/shared/eval/dev.jsonl")


@dataclass
class Row:
    mode: str
    seconds: list[float] = field(default_factory=list)
    prompt_tokens: list[int] = field(default_factory=list)
    completion_tokens: list[int] = field(default_factory=list)
    generation_seconds: list[float] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)
    load_seconds: float = 0.0


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _services(root: Path, **llm: object) -> Services:
    articles = root / "articles"
    shutil.copytree(DEMO_ARTICLES, articles)
    settings = Settings(_env_file=None, data_dir=root / "data", articles_dir=articles,  # type: ignore[call-arg]
                        llm=llm)
    services = build_services(settings)
    services.case.index()
    return services


def _run(mode: str, services: Services, questions: list[str]) -> Row:
    row = Row(mode)
    started = time.perf_counter()
    services.case.warm_up()  # embedder, keyword index and, for the LLM, the GGUF file
    row.load_seconds = time.perf_counter() - started
    answerer = services.case.answerer
    for number, question in enumerate(questions, start=1):
        started = time.perf_counter()
        if isinstance(answerer, GroundedAnswerer):
            answer, trace = answerer.answer_with_trace(question)
            if trace.generation is not None:
                row.prompt_tokens.append(trace.generation.prompt_tokens)
                row.completion_tokens.append(trace.generation.completion_tokens)
                row.generation_seconds.append(trace.generation.seconds)
        else:
            answer = services.case.ask(question)
        row.seconds.append(time.perf_counter() - started)
        row.outcomes[answer.mode.split(":")[0]] = row.outcomes.get(answer.mode.split(":")[0], 0) + 1
        print(f"  {mode} {number}/{len(questions)} {row.seconds[-1]:.2f}s {answer.mode}", file=sys.stderr)
    return row


def _table(rows: list[Row]) -> str:
    lines = [
        "| mode | questions | load s | p50 time to answer | p95 | prompt tokens (mean) "
        "| completion tokens (mean) | completion tokens/s | answers |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        generated = row.generation_seconds
        tps = f"{sum(row.completion_tokens) / sum(generated):.1f}" if generated else "–"
        prompt = f"{statistics.mean(row.prompt_tokens):.0f}" if row.prompt_tokens else "–"
        completion = f"{statistics.mean(row.completion_tokens):.0f}" if row.completion_tokens else "–"
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(row.outcomes.items()))
        lines.append(
            f"| {row.mode} | {len(row.seconds)} | {row.load_seconds:.1f} | {_percentile(row.seconds, 0.5):.2f} s "
            f"| {_percentile(row.seconds, 0.95):.2f} s | {prompt} | {completion} | {tps} | {outcomes} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=Path, default=DEV_QUESTIONS, help="question file (shared/eval format)")
    parser.add_argument("--limit", type=int, default=0, help="ask only the first N questions")
    parser.add_argument("--model-path", default="", help="GGUF file (default: the bundled gemma3-270m)")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--context-window", type=int, default=4096)
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    args = parser.parse_args()

    questions = [json.loads(line)["question"] for line in args.questions.read_text("utf-8").splitlines()
                 if line.strip()]
    if args.limit:
        questions = questions[: args.limit]
    model_path = args.model_path or str(bundled_gguf())
    with tempfile.TemporaryDirectory(prefix="casebot-bench-llm-") as tmp:
        root = Path(tmp)
        (root / "extractive").mkdir()
        (root / "llm").mkdir()
        rows = [_run("extractive", _services(root / "extractive"), questions)]
        llm = _services(root / "llm", provider="llamacpp", model_path=model_path, threads=args.threads,
                        max_tokens=args.max_tokens, context_window=args.context_window)
        rows.append(_run(f"llm: {Path(model_path).name}", llm, questions))
    table = _table(rows)
    print(table)
    if args.out:
        args.out.write_text(table + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
