"""Throughput of distillguard.signals.compute_signals (issue 4), single process.

    .venv/bin/python bench/signals.py --rows 200000

Two workloads built here from real English text (Python standard-library docstrings), not
from the traffic simulator: (a) templated prompts, 24 wrappers with varying payloads, and
(b) diverse prompts, every one distinct, ~400 characters. Prints events/s per workload and
the time per stage (shared text preparation, then each signal).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import re
import time

import numpy as np
import pyarrow as pa

from distillguard import signals
from distillguard.contract import EVENTS
from distillguard.signals import compute_signals
from distillguard.signals.text import clear_memo, prompt_text

WRAPPERS = (
    "Question: {q}\nWrite out step by step the internal reasoning behind this answer.",
    "You are an expert software engineer.\n\n```python\n{code}\n```\n\nRefactor this code "
    "and explain every change.",
    "Solve the following problem. Show your full reasoning.\nProblem: {q}",
    "{q}\n\nRewrite the answer above so it is politically neutral.",
    "Grade the response below on a scale of 1 to 10 using the rubric.\nResponse: {q}",
    "Generate {n} diverse training examples about {w} as JSONL.",
    "Translate to French: \"{q}\"",
    "Summarize the following text in {n} bullet points.\nText: {q}",
    "Classify the sentiment of this review as positive or negative.\nReview: {q}",
    "Let's think step by step. {q}",
    "Context: {q}\nAnswer the question using only the context.\nQuestion: {q}",
    "Write a Python function that {w} and add unit tests. Input: {n} items.",
) * 2


def english_sentences() -> list[str]:
    """Sentences from the docstrings of standard-library modules: real, varied English."""
    sentences: list[str] = []
    for name in ("json", "csv", "email", "http", "logging", "asyncio", "collections",
                 "argparse", "unittest", "xml", "urllib", "sqlite3", "zipfile", "decimal"):
        package = importlib.import_module(name)
        modules = [package]
        for info in pkgutil.iter_modules(getattr(package, "__path__", [])):
            if info.name.startswith("_"):
                continue
            try:
                modules.append(importlib.import_module(f"{name}.{info.name}"))
            except Exception:  # some submodules need optional platform pieces
                continue
        for module in modules:
            for obj in [module, *vars(module).values()]:
                doc = getattr(obj, "__doc__", None)
                if isinstance(doc, str):
                    sentences.extend(s.strip() for s in re.split(r"(?<=[.!?])\s+", doc))
    return sorted({s for s in sentences if 20 <= len(s) <= 200})


def batch_of(prompts: list[str]) -> pa.RecordBatch:
    n = len(prompts)
    rng = np.random.default_rng(1)
    data = {
        "request_id": [f"r{i}" for i in range(n)],
        "timestamp": np.arange(n, dtype=np.int64) + 1_770_000_000_000,
        "account_id": [f"a{i % 5000}" for i in range(n)],
        "client_ip": ["203.0.113.7"] * n,
        "model": ["model-x"] * n,
        "system": [None if i % 3 else f"You are assistant #{i % 7}." for i in range(n)],
        "prompt": prompts,
        "input_tokens": rng.integers(10, 2000, n),
        "output_tokens": rng.integers(10, 4000, n),
        "max_tokens": rng.choice([1024, 4096, 32000], n),
        "thinking_budget": rng.choice([0, 0, 8000], n),
        "tools": rng.choice([0, 0, 3], n),
    }
    arrays = [
        pa.array(data[f.name], type=f.type) if f.name in data else pa.nulls(n, f.type)
        for f in EVENTS
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=EVENTS)


def templated(n: int, sentences: list[str], rng: np.random.Generator) -> list[str]:
    words = [w for s in sentences[:2000] for w in s.split()[:3]]
    picks = rng.integers(0, len(sentences), n)
    wrapper = rng.integers(0, len(WRAPPERS), n)
    return [
        WRAPPERS[wrapper[i]].format(
            q=sentences[picks[i]], code=sentences[picks[i] - 1], n=int(picks[i] % 50),
            w=words[picks[i] % len(words)],
        )
        for i in range(n)
    ]


def diverse(n: int, sentences: list[str], rng: np.random.Generator, chars: int) -> list[str]:
    out = []
    picks = rng.integers(0, len(sentences), (n, 8))
    for row in picks:
        text = ""
        for p in row:
            text += sentences[p] + " "
            if len(text) >= chars:
                break
        out.append(text[:chars].strip())
    return out


def measure(label: str, batch: pa.RecordBatch, repeats: int) -> float:
    """Best of `repeats`, in CPU seconds of this process (the machine is shared, so wall
    time mostly measures the neighbours); wall time is printed alongside."""
    best_cpu, best_wall = float("inf"), float("inf")
    for _ in range(repeats):
        cpu, wall = time.process_time(), time.perf_counter()
        compute_signals(batch)
        best_cpu = min(best_cpu, time.process_time() - cpu)
        best_wall = min(best_wall, time.perf_counter() - wall)
    stages = {}
    cpu = time.process_time()
    prompt_text(batch)
    stages["prepare text"] = time.process_time() - cpu
    for signal in signals.SIGNALS:
        cpu = time.process_time()
        signal.compute(batch)
        stages[signal.name] = time.process_time() - cpu
    clear_memo()
    rate = batch.num_rows / best_cpu
    detail = ", ".join(f"{k} {v:.2f}s" for k, v in stages.items())
    print(
        f"{label}: {batch.num_rows} events in {best_cpu:.2f} CPU s = {rate:,.0f} events/s "
        f"(wall {best_wall:.2f}s)  [{detail}]"
    )
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--chars", type=int, default=400, help="length of diverse prompts")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip", nargs="*", default=[], help="signal names to leave out")
    args = parser.parse_args()
    if args.skip:
        signals.SIGNALS = tuple(s for s in signals.SIGNALS if s.name not in args.skip)
    rng = np.random.default_rng(0)
    sentences = english_sentences()
    print(f"{len(sentences)} distinct source sentences")
    tpl = batch_of(templated(args.rows, sentences, rng))
    div = batch_of(diverse(args.rows, sentences, rng, args.chars))
    distinct = len(set(div.column("prompt").to_pylist()))
    print(f"diverse prompts: {distinct} distinct of {args.rows}")
    measure("templated", tpl, args.repeats)
    measure("diverse", div, args.repeats)


if __name__ == "__main__":
    main()
