"""Countermeasures benchmark (issue 10): students distilled from countermeasured teacher outputs.

    .venv/bin/python bench/countermeasures.py --seeds 0 1

Trains a tiny transformer teacher on D-digit addition with step-by-step carry traces, serves
its sampled answers to an attacker (a) raw, (b) with the reasoning summarised by the gate's
extractive summariser, (c) with antidistillation sampling (Savani et al. 2025) at each lambda,
and trains a student from scratch on each served set. Baselines: an untrained student (no
teacher) and an answer-key student (the same prompts with correct answers, no reasoning).
Reports each student's accuracy, the share of the baseline -> raw-student gap it closes, and
the teacher's final-answer accuracy as the user sees it under each measure.
Goals (issue 10): a countermeasured student closes at most half of the gap; the user-visible
final-answer accuracy stays within 1 point of unmodified.
Published: DOGe (Li et al. 2025) up to 5x worse students at no teacher loss; antidistillation
sampling (Savani et al. 2025) trades teacher accuracy against student accuracy with lambda.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from distillguard.countermeasures.experiment import (
    CMExperimentConfig,
    run_countermeasure_experiment,
)


def _table(results: list) -> list[str]:
    lines = [
        "| seed | served to the attacker | lambda | teacher final-answer acc. (user-visible) "
        "| vs unmodified | student acc. | gap closed (vs untrained) | gap closed (vs answer key) "
        "| trace lines correct |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for seed, r in results:
        raw = r.row("raw")
        lines.append(
            f"| {seed} | no teacher (untrained student) | | | | {r.untrained_acc:.3f} | | | |"
        )
        lines.append(f"| {seed} | answer key, no reasoning | | | | {r.answer_key_acc:.3f} | | | |")
        for row in r.rows:
            lam = "" if row.lam is None else f"{row.lam:g}"
            delta = 100 * (row.teacher_visible_acc - raw.teacher_visible_acc)
            lines.append(
                f"| {seed} | {row.measure} | {lam} | {row.teacher_visible_acc:.3f} | "
                f"{delta:+.1f} pt | {row.student_acc:.3f} | {r.gap_closed(row):.2f} | "
                f"{r.gap_closed(row, r.answer_key_acc):.2f} | {row.trace_correct:.3f} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    d = CMExperimentConfig()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--digits", type=int, default=d.digits)
    parser.add_argument("--teacher-examples", type=int, default=d.teacher_examples)
    parser.add_argument("--teacher-epochs", type=float, default=d.teacher_epochs)
    parser.add_argument("--distill-examples", type=int, default=d.distill_examples)
    parser.add_argument("--student-epochs", type=float, default=d.student_epochs)
    parser.add_argument("--lams", type=float, nargs="+", default=list(d.lams))
    parser.add_argument("--min-teacher-prob", type=float, default=d.min_teacher_prob)
    parser.add_argument(
        "--central", action="store_true", help="Central finite difference (Savani et al. Alg. 1)."
    )
    parser.add_argument("--summary-sentences", type=int, default=d.summary_sentences)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-answer-key", action="store_true", help="Skip that baseline student.")
    parser.add_argument(
        "--teacher-cache", default=None, help="Teacher weights file per seed: {seed} is replaced."
    )
    parser.add_argument("--json", dest="json_out", default=None, help="Also write results here.")
    args = parser.parse_args()

    results = []
    for seed in args.seeds:
        cfg = CMExperimentConfig(
            digits=args.digits,
            teacher_examples=args.teacher_examples,
            teacher_epochs=args.teacher_epochs,
            distill_examples=args.distill_examples,
            student_epochs=args.student_epochs,
            lams=tuple(args.lams),
            min_teacher_prob=args.min_teacher_prob,
            central=args.central,
            summary_sentences=args.summary_sentences,
            seed=seed,
            threads=args.threads,
            answer_key=not args.no_answer_key,
            teacher_cache=args.teacher_cache.format(seed=seed) if args.teacher_cache else None,
        )
        r = run_countermeasure_experiment(
            cfg, log=lambda m, s=seed: print(f"[seed {s}] {m}", flush=True)
        )
        results.append((seed, r))
        print("\n".join(_table([(seed, r)])), flush=True)
    print("\n".join(_table(results)))
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump([{"seed": s, **asdict(r)} for s, r in results], fh, indent=2, default=str)


if __name__ == "__main__":
    main()
