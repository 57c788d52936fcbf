"""Provenance benchmark (issue 8): radioactivity of students distilled from watermarked answers.

    .venv/bin/python bench/provenance.py --seeds 0 1 2

Trains a tiny teacher LM on the synthetic corpus, samples answers with and without the
green-list watermark, distils students from scratch with 100%, 5% and 1% of their answers
watermarked (the rest unwatermarked teacher answers) and a control student (0%), and tests
each: open weights (top-1 reading mode as Sander et al., and the soft reading mode on the
full next-token distribution) and closed API (the student's own samples). Also reports
KS p-values of the control's p-values under unrelated keys (uniform => valid test).
Published reference: Sander et al. 2024 report p < 1e-5 with 5% of fine-tuning text
watermarked (open-model reading mode).
"""

from __future__ import annotations

import argparse
import json
import time

from distillguard.provenance.experiment import ExperimentConfig, run_experiment
from distillguard.provenance.watermark import WatermarkConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--fractions", type=float, nargs="+", default=[1.0, 0.05, 0.01, 0.0])
    parser.add_argument("--corpus-docs", type=int, default=4000)
    parser.add_argument("--student-docs", type=int, default=10000)
    parser.add_argument("--student-epochs", type=float, default=6.0)
    parser.add_argument("--d-model", type=int, default=96)
    parser.add_argument("--context-width", type=int, default=1)
    parser.add_argument("--delta", type=float, default=3.0)
    parser.add_argument("--gamma", type=float, default=0.25)
    parser.add_argument("--student-d-model", type=int, default=None)
    parser.add_argument("--untied-students", action="store_true",
                        help="Students get a separate output layer (more memorisation).")
    parser.add_argument("--teacher-path", default=None, help="Reuse a saved teacher (.pt).")
    parser.add_argument("--save-dir", default=None, help="Keep the trained models here.")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", dest="json_out", default=None, help="Also write results here.")
    args = parser.parse_args()

    rows = []
    for seed in args.seeds:
        cfg = ExperimentConfig(
            fractions=tuple(args.fractions),
            corpus_docs=args.corpus_docs,
            student_docs=args.student_docs,
            student_epochs=args.student_epochs,
            d_model=args.d_model,
            student_d_model=args.student_d_model,
            student_tied=not args.untied_students,
            teacher_path=args.teacher_path,
            save_dir=args.save_dir,
            watermark=WatermarkConfig(args.gamma, args.delta, args.context_width),
            seed=seed,
            threads=args.threads,
            null_keys=100,
        )
        start = time.perf_counter()
        result = run_experiment(cfg, log=lambda msg: print(msg, flush=True))
        print(
            f"seed {seed}: control KS p (open/closed/soft) = {result.control_null_ks_open:.3f} / "
            f"{result.control_null_ks_closed:.3f} / {result.control_null_ks_soft:.3f}; "
            f"{time.perf_counter() - start:.0f}s"
        )
        for s in result.students:
            rows.append({"seed": seed, **s.__dict__,
                         "ks_open": result.control_null_ks_open,
                         "ks_closed": result.control_null_ks_closed,
                         "ks_soft": result.control_null_ks_soft})

    print("\n| watermarked share | seed | open top-1 p | open soft p | closed p |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['fraction']:.0%} | {r['seed']} | {r['open_p']:.1e} (z={r['open_z']:.1f}) | "
              f"{r['soft_p']:.1e} (z={r['soft_z']:.1f}) | {r['closed_p']:.1e} "
              f"(z={r['closed_z']:.1f}) |")
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
