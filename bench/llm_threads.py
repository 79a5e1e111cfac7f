"""Tokens per second of the in-process model at 1 and 2 threads, with the other core busy.

A bot shares its machine (an indexer, an embedder, other services). This
starts ``--load`` busy processes (``yes > /dev/null``, each bounded by
``timeout``) and measures generation speed of the bundled GGUF (or
``--model-path``) at each thread count, a few runs each, median printed.
It is what decided the default of ``CASEBOT_LLM__THREADS``.

    .venv/bin/python bench/llm_threads.py [--threads 1 2] [--load 1] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from index.llm import bundled_gguf  # noqa: E402

PROMPT = ("Beantworte kurz auf Deutsch: Warum hat Twitter die Zusammenarbeit mit der Zuger Firma Mitto beendet? "
          "Auszug [1]: Twitter beendet die Zusammenarbeit mit Mitto, nachdem Berichte über Überwachung "
          "bekannt wurden. Der Mitgründer soll Zugang zu Netzen verkauft haben.")


def measure(model_path: str, threads: int, runs: int, max_tokens: int) -> list[float]:
    from llama_cpp import Llama

    llm = Llama(model_path=model_path, n_ctx=1024, n_threads=threads, n_threads_batch=threads, verbose=False)
    speeds = []
    for _ in range(runs):
        started = time.perf_counter()
        out = llm.create_chat_completion(messages=[{"role": "user", "content": PROMPT}], max_tokens=max_tokens,
                                         temperature=0.0)
        seconds = time.perf_counter() - started
        tokens = out["usage"]["completion_tokens"]  # type: ignore[index]
        speeds.append(tokens / seconds)
        print(f"  threads={threads}: {tokens} tokens in {seconds:.1f}s = {tokens / seconds:.1f} tok/s",
              file=sys.stderr)
    llm.close()
    return speeds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-path", default="")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--load", type=int, default=1, help="busy processes beside the model")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--seconds", type=int, default=600, help="upper bound for the busy processes")
    args = parser.parse_args()
    model_path = args.model_path or str(bundled_gguf())
    busy = [subprocess.Popen(["timeout", str(args.seconds), "yes"], stdout=subprocess.DEVNULL)
            for _ in range(args.load)]
    try:
        rows = [(threads, measure(model_path, threads, args.runs, args.max_tokens)) for threads in args.threads]
    finally:
        for process in busy:
            process.terminate()
            process.wait()
    print(f"| threads | busy processes beside | tokens/s (median of {args.runs}) | min | max |")
    print("|---|---|---|---|---|")
    for threads, speeds in rows:
        print(f"| {threads} | {args.load} | {statistics.median(speeds):.1f} | {min(speeds):.1f} | {max(speeds):.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
