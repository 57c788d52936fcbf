"""Supervised mode next to the unsupervised scores, on seeds the model never saw.

    .venv/bin/python bench/supervised.py [--train-seed 1] [--seeds 501 502] [--scale 0.01]

Trains `distillguard train` on seed-report and evasive at the training seed (their labels), then
applies the model to held-out seeds of seed-report, evasive and benign-only. Every run is
simulated at the same scale and detected once (cached under bench/out/supervised/). Prints a
Markdown table (precision, recall, benign false-positive rate, worst benign persona) and writes
bench/out/supervised/supervised.json. A second model trained on the fingerprint alone (no
unsupervised risk, no cluster evidence) shows what the labels add by themselves.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from distillguard.pipeline.detect import DetectConfig, run_detect
from distillguard.scoring import supervised as sv
from distillguard.simulate import simulate

OUT = Path(__file__).parent / "out" / "supervised"
TRAIN_SCENARIOS = ("seed-report", "evasive")
EVAL_SCENARIOS = ("seed-report", "evasive", "benign-only")
CONTEXT = ("unsup_", "cluster_")  # feature prefixes left out of the fingerprint-only model
SCORERS = ("unsupervised", "supervised", "fingerprint-only")


def prepared(scenario: str, seed: int, scale: float) -> tuple[Path, Path]:
    """Simulator output and detect output of one run (made once, then reused)."""
    base = OUT / f"{scenario}-{seed}"
    sim, detect = base / "sim", base / "detect"
    if not (sim / "labels.parquet").exists():
        simulate(scenario, seed=seed, out=sim, scale=scale)
    if not (detect / "work" / "scores.parquet").exists():
        run_detect(DetectConfig.for_simulation(sim, detect))
    return sim, detect


def metrics(flagged: np.ndarray, attacker: np.ndarray, persona: np.ndarray) -> dict:
    benign = ~attacker
    tp = int((flagged & attacker).sum())
    fp = int((flagged & benign).sum())
    worst = max(
        (float(flagged[persona == p].mean()) for p in np.unique(persona[benign])), default=0.0
    )
    return {
        "flagged": int(flagged.sum()),
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / int(attacker.sum()) if attacker.any() else None,
        "benign_fpr": fp / int(benign.sum()) if benign.any() else None,
        "worst_persona_fpr": worst,
    }


def evaluate_run(bundles: dict[str, sv.Bundle], sim: Path, detect: Path) -> dict:
    """Account metrics of the unsupervised flags and of each supervised model on one run."""
    tables = {name: sv.apply_model(b, detect) for name, b in bundles.items()}
    first = next(iter(tables.values()))
    labels = pq.read_table(sim / "labels.parquet")
    at = pc.index_in(first["account_id"], value_set=labels["account_id"])
    attacker = pc.is_valid(pc.take(labels["campaign_id"], at)).to_numpy(zero_copy_only=False)
    persona = np.asarray(pc.take(labels["persona"], at).to_pylist(), dtype=object)

    def flags(table, column: str) -> np.ndarray:
        return table[column].to_numpy(zero_copy_only=False)

    out = {"unsupervised": metrics(flags(first, "flagged"), attacker, persona)}
    for name, table in tables.items():
        out[name] = metrics(flags(table, "supervised_flagged"), attacker, persona)
    return {**out, "accounts": first.num_rows, "attackers": int(attacker.sum())}


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.4f}"


def markdown(rows: list[dict], cvs: dict[str, dict]) -> str:
    lines = [
        f"Cross-validation of the {name} model on the training runs ({cv.get('folds')} folds, "
        f"whole clusters held out): AUC {cv.get('auc')}, precision {cv.get('precision')}, "
        f"recall {cv.get('recall')}."
        for name, cv in cvs.items()
    ]
    lines += [
        "",
        "| scenario | seed | accounts | attackers | scorer | flagged | precision | recall "
        "| benign FPR | worst persona FPR |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for scorer in SCORERS:
            m = r[scorer]
            lines.append(
                f"| {r['scenario']} | {r['seed']} | {r['accounts']} | {r['attackers']} | {scorer} "
                f"| {m['flagged']} | {_fmt(m['precision'])} | {_fmt(m['recall'])} "
                f"| {_fmt(m['benign_fpr'])} | {_fmt(m['worst_persona_fpr'])} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-seed", type=int, default=1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[501, 502])
    parser.add_argument("--scale", type=float, default=0.01)
    args = parser.parse_args()

    train_runs = [prepared(s, args.train_seed, args.scale) for s in TRAIN_SCENARIOS]
    dirs, label_files = [d for _, d in train_runs], [s / "labels.parquet" for s, _ in train_runs]
    bundles, cvs, train_s = {}, {}, {}
    for name, exclude in (("supervised", ()), ("fingerprint-only", CONTEXT)):
        start = time.perf_counter()
        ts = sv.training_set(dirs, label_files, exclude)
        cvs[name] = sv.cross_validate(ts)
        bundles[name] = sv.fit_bundle(ts, cvs[name])
        train_s[name] = round(time.perf_counter() - start, 1)
    sv.save_bundle(bundles["supervised"], OUT / "model.joblib")

    rows, apply_s = [], 0.0
    for scenario in EVAL_SCENARIOS:
        for seed in args.seeds:
            sim, detect = prepared(scenario, seed, args.scale)
            start = time.perf_counter()
            rows.append({"scenario": scenario, "seed": seed, **evaluate_run(bundles, sim, detect)})
            apply_s += time.perf_counter() - start
    top = {
        name: [
            [n, round(float(v), 3)]
            for v, n in sorted(zip(b.importance, b.features, strict=True), reverse=True)[:6]
        ]
        for name, b in bundles.items()
    }
    result = {
        "train": {"scenarios": TRAIN_SCENARIOS, "seed": args.train_seed, "scale": args.scale},
        "cv": cvs,
        "top_features": top,
        "train_s": train_s,
        "apply_s_total": round(apply_s, 1),
        "rows": rows,
    }
    (OUT / "supervised.json").write_text(json.dumps(result, indent=2))
    print(markdown(rows, cvs))
    print()
    for name, feats in top.items():
        print(f"top features ({name}): " + ", ".join(f"{n} ({v})" for n, v in feats))
    print(f"train (CV + fit) {train_s} s; apply, all runs and models {result['apply_s_total']} s")


if __name__ == "__main__":
    main()
