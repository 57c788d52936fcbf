"""End-to-end `detect` speed and memory, as a ratio to a bare DuckDB scan of the same events.

    .venv/bin/python bench/detect_speed.py --scale 0.1 [--seed 5] [--out bench/out/speed]
    .venv/bin/python bench/detect_speed.py --scale 1.0 --sim DIR --memory-limit 8GB --evaluate

Simulates seed-report at the given scale (once; reused if present, or taken from `--sim`),
then runs `detect` in a child process (so its peak RSS is measured alone) and a bare DuckDB
scan (`SELECT count(*), sum(length(prompt))`) of the same Parquet file in the same run. Prints
Markdown tables of stage timings and stage peak memory, with `--evaluate` also the quality
against the simulator's truth, and writes bench/out/speed/<scale>.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import duckdb


def _simulate(scale: float, seed: int, sim: Path) -> None:
    if (sim / "labels.parquet").exists():
        return
    from distillguard.simulate import simulate

    simulate("seed-report", scale=scale, seed=seed, out=sim)


def _bare_scan(events: Path) -> float:
    start = time.perf_counter()
    duckdb.sql(f"SELECT count(*), sum(length(prompt)) FROM read_parquet('{events}')").fetchall()
    return time.perf_counter() - start


def _detect(sim: Path, out: Path, memory_limit: str) -> tuple[float, float]:
    cmd = [
        sys.executable, "-m", "distillguard", "detect",
        "--events", str(sim / "events.parquet"), "--accounts", str(sim / "accounts.parquet"),
        "--releases", str(sim / "releases.parquet"), "--ip-intel", str(sim / "ip_intel.csv"),
        "--out", str(out), "--no-report", "--memory-limit", memory_limit,
    ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    secs = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return secs, peak_kb / 1024 / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--scale", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--out", type=Path, default=Path("bench/out/speed"))
    p.add_argument("--sim", type=Path, default=None, help="an existing simulation to detect")
    p.add_argument("--memory-limit", default="4GB", help="detect's DuckDB memory limit")
    p.add_argument("--evaluate", action="store_true", help="also score against the truth")
    a = p.parse_args()
    sim = a.sim or a.out / f"sim-{a.scale}"
    if a.sim is None:
        _simulate(a.scale, a.seed, sim)
    events = sim / "events.parquet"
    scan = _bare_scan(events)
    pred = a.out / f"detect-{a.scale}"
    secs, peak_gb = _detect(sim, pred, a.memory_limit)
    summary = json.loads((pred / "summary.json").read_text())
    n = summary["ingest"]["sections"]["events"]["accepted"]
    result = {
        "scale": a.scale, "events": n, "detect_s": round(secs, 1), "bare_scan_s": round(scan, 2),
        "ratio_to_scan": round(secs / scan, 1), "peak_rss_gb": round(peak_gb, 2),
        "events_per_s": round(n / secs), "stages_s": summary["timings_s"],
        "stage_peak_rss_gb": summary.get("stage_peak_rss_gb", {}),
        "memory_limit": a.memory_limit,
    }  # fmt: skip
    if a.evaluate:
        from distillguard.evaluate import evaluate

        result["quality"] = _quality(evaluate(sim, pred))
    (a.out / f"{a.scale}.json").write_text(json.dumps(result, indent=2))
    print("| scale | events | detect (s) | bare scan (s) | ratio | peak RSS (GB) | events/s |")
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {a.scale} | {n:,} | {secs:.1f} | {scan:.2f} | {secs / scan:.0f}x | {peak_gb:.2f} "
        f"| {n / secs:,.0f} |"
    )
    print()
    print("| stage | seconds | peak RSS (GB) |")
    print("|---|---|---|")
    peaks = result["stage_peak_rss_gb"]
    for stage, s in summary["timings_s"].items():
        print(f"| {stage} | {s} | {peaks.get(stage, '')} |")
    if "quality" in result:
        print()
        print(json.dumps(result["quality"], indent=2))


def _quality(m: dict) -> dict:
    """The figures the issue's quality goals name."""
    keep = ("precision", "recall", "f1", "false_positive_rate", "flagged")
    campaigns = {
        name: {
            k: c[k]
            for k in ("accounts", "recall", "best_match_share", "requests_relative_error",
                      "capability_in_top3")
        }
        for name, c in m.get("campaigns", {}).items()
    }  # fmt: skip
    return {
        **{k: m[k] for k in keep},
        "worst_persona_fpr": max(m.get("fpr_by_persona", {"-": 0.0}).values()),
        "campaigns": campaigns,
    }


if __name__ == "__main__":
    main()
