"""Detection quality on held-out seeds, side by side with three naive baselines.

    .venv/bin/python bench/quality.py [--seeds 101 102] [--scenarios seed-report evasive benign-only]

Seeds used while tuning thresholds and weights: 1, 2, 3 (see docs/benchmarks.md). The default seeds
here were never used for tuning. Prints a Markdown table and writes bench/out/quality.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from distillguard.baselines import BASELINES
from distillguard.evaluate import evaluate
from distillguard.pipeline.detect import DetectConfig, run_detect
from distillguard.simulate import simulate

OUT = Path(__file__).parent / "out" / "quality"
HELD_OUT_SEEDS = (101, 102)


def _sim(scenario: str, seed: int, scale: float | None) -> Path:
    path = OUT / f"{scenario}-{seed}" / "sim"
    if not (path / "labels.parquet").exists():
        kwargs = {"scale": scale} if scale is not None else {}
        simulate(scenario, seed=seed, out=path, **kwargs)
    return path


def _detect(sim: Path) -> tuple[Path, float]:
    pred = sim.parent / "detect"
    start = time.perf_counter()
    run_detect(
        DetectConfig(
            events=[sim / "events.parquet"],
            accounts=[sim / "accounts.parquet"],
            releases=[sim / "releases.parquet"],
            ip_intel=[sim / "ip_intel.csv"],
            out=pred,
        )
    )
    return pred, time.perf_counter() - start


def _row(name: str, scenario: str, seed: int, m: dict) -> dict:
    return {"detector": name, "scenario": scenario, "seed": seed, **m}


def run(scenarios: list[str], seeds: list[int], scale: float | None) -> list[dict]:
    rows = []
    for scenario in scenarios:
        for seed in seeds:
            sim = _sim(scenario, seed, scale)
            pred, secs = _detect(sim)
            rows.append(_row("distillguard", scenario, seed, evaluate(sim, pred)) | {"secs": secs})
            for name, baseline in BASELINES.items():
                out = sim.parent / f"baseline-{name}"
                baseline(sim / "events.parquet", out)
                rows.append(_row(name, scenario, seed, evaluate(sim, out)))
    return rows


def markdown(rows: list[dict]) -> str:
    head = (
        "| scenario | seed | detector | precision | recall | F1 | benign FPR | worst persona FPR "
        "| volume recall | campaigns found (>=95% in one) | max request error |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        acc = r.get("accounts", {})
        per = r.get("benign_fpr_by_persona", {}) or {}
        worst = max(per.values()) if per else 0.0
        camps = r.get("campaigns", {}) or {}
        whole = sum(1 for c in camps.values() if c.get("best_match_share", 0) >= 0.95)
        errs = [abs(c["request_count_rel_error"]) for c in camps.values()
                if c.get("request_count_rel_error") is not None]
        lines.append(
            f"| {r['scenario']} | {r['seed']} | {r['detector']} | {acc.get('precision', 0):.4f} "
            f"| {acc.get('recall', 0):.4f} | {acc.get('f1', 0):.4f} | {r.get('benign_fpr', 0):.5f} "
            f"| {worst:.4f} | {r.get('volume_recall', 0):.4f} | {whole}/{len(camps)} "
            f"| {max(errs) if errs else float('nan'):.3f} |"
        )
    return head + "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--scenarios", nargs="+", default=["seed-report", "evasive", "benign-only"])
    p.add_argument("--seeds", nargs="+", type=int, default=list(HELD_OUT_SEEDS))
    p.add_argument("--scale", type=float, default=None)
    a = p.parse_args()
    rows = run(a.scenarios, a.seeds, a.scale)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "quality.json").write_text(json.dumps(rows, indent=2, default=str))
    print(markdown(rows))


if __name__ == "__main__":
    main()
