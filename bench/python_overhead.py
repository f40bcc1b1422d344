"""What the Python front adds per explanation, beside the JSON round trip it replaced (each
result written by serde_json and read back by json.loads): the results of one explain() on
bert-tiny, one long context per pair (max_length tokens each), timed per explanation.

    python bench/python_overhead.py [--pairs 200] [--max-length 384]
"""

import argparse
import json
import platform
import time
from pathlib import Path

import spangrad

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "bert-tiny"


def per_item(fn, items, repeat=5):
    """The best of `repeat` runs of fn over items, in microseconds per item."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, time.perf_counter() - start)
    return best / len(items) * 1e6


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--max-length", type=int, default=384)
    args = parser.parse_args()
    explainer = spangrad.Explainer(str(FIXTURE), max_length=args.max_length)
    context = " ".join(["Jane Austen wrote the novel in 1813 and published it in London."] * 60)
    pairs = [{"id": i, "question": "Who wrote the novel?", "context": context}
             for i in range(args.pairs)]
    start = time.perf_counter()
    results = explainer.explain(pairs)
    explain_us = (time.perf_counter() - start) / len(pairs) * 1e6
    tokens = len(results[0].tokens)
    rows = [
        ("explain(), all of it", explain_us),
        ("JSON round trip (the old results: json.loads(to_json()))",
         per_item(lambda e: json.loads(e.to_json()), results)),
        ("to_dict()", per_item(lambda e: e.to_dict(), results)),
        ("e.answer", per_item(lambda e: e.answer, results)),
        ("e.scores (NumPy)", per_item(lambda e: e.scores, results)),
        ("e.tokens", per_item(lambda e: e.tokens, results)),
    ]
    print(f"{platform.processor() or platform.machine()}, {args.pairs} pairs of {tokens} tokens, "
          f"bert-tiny, spangrad {spangrad.__version__}")
    print("| per explanation | µs |")
    print("|---|---:|")
    for name, us in rows:
        print(f"| {name} | {us:,.1f} |")


if __name__ == "__main__":
    main()
