"""Detection quality with each Leiden implementation and number of passes, side by side.

    .venv/bin/python bench/leiden_iterations.py --seeds 701 702 [--variants leidenalg:-1 igraph:-1]

`leidenalg:-1` is leidenalg run until stable, `igraph:2` igraph's own Leiden with 2 passes
(clusters.leiden.LEIDENALG and ITERATIONS). Checks, on seeds never used for tuning, whether a
faster setting changes what `detect` finds. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from distillguard.clusters import leiden
from distillguard.evaluate import evaluate
from distillguard.pipeline.detect import DetectConfig, run_detect
from distillguard.simulate import simulate

OUT = Path(__file__).parent / "out" / "leiden"


def _sim(scenario: str, seed: int, scale: float | None) -> Path:
    path = OUT / f"{scenario}-{seed}" / "sim"
    if not (path / "labels.parquet").exists():
        simulate(scenario, seed=seed, out=path, **({"scale": scale} if scale else {}))
    return path


def _detect(sim: Path, variant: str) -> tuple[dict, float]:
    implementation, passes = variant.split(":")
    leiden.LEIDENALG, leiden.ITERATIONS = implementation == "leidenalg", int(passes)
    pred = sim.parent / f"detect-{implementation}{passes}"
    start = time.perf_counter()
    run_detect(DetectConfig.for_simulation(sim, pred))
    return evaluate(sim, pred), time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--scenarios", nargs="+", default=["seed-report", "evasive", "benign-only"])
    p.add_argument("--seeds", nargs="+", type=int, required=True)
    p.add_argument("--scale", type=float, default=None)
    p.add_argument("--variants", nargs="+", default=["leidenalg:-1", "igraph:-1"])
    a = p.parse_args()
    defaults = leiden.LEIDENALG, leiden.ITERATIONS
    print("| scenario | seed | Leiden | precision | recall | F1 | benign FPR | ARI | detect s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for scenario in a.scenarios:
        for seed in a.seeds:
            sim = _sim(scenario, seed, a.scale)
            for variant in a.variants:
                m, secs = _detect(sim, variant)
                print(
                    f"| {scenario} | {seed} | {variant} | {m['precision']:.4f} "
                    f"| {m['recall']:.4f} | {m['f1']:.4f} | {m['false_positive_rate']:.5f} "
                    f"| {m.get('adjusted_rand_index') or 0:.3f} | {secs:.1f} |",
                    flush=True,
                )
    leiden.LEIDENALG, leiden.ITERATIONS = defaults


if __name__ == "__main__":
    main()
