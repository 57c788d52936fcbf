"""`make demo`: simulate a built-in scenario, detect campaigns, evaluate, print where things are."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from distillguard.cli import main as cli_main

console = Console()


def _run(args: list[str]) -> None:
    console.rule(f"distillguard {' '.join(args[:1])}")
    sys.argv = ["distillguard", *args]
    try:
        cli_main()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("demo-out"))
    parser.add_argument("--scenario", default="small")
    parser.add_argument("--seed", default="7")
    a = parser.parse_args()
    sim, det = a.out / "sim", a.out / "detect"
    _run(["simulate", "--scenario", a.scenario, "--seed", a.seed, "--out", str(sim)])
    _run(
        [
            "detect",
            "--events",
            str(sim / "events.parquet"),
            "--accounts",
            str(sim / "accounts.parquet"),
            "--releases",
            str(sim / "releases.parquet"),
            "--ip-intel",
            str(sim / "ip_intel.csv"),
            "--out",
            str(det),
        ]
    )
    _run(["evaluate", "--truth", str(sim), "--pred", str(det), "--json", str(det / "eval.json")])
    console.rule("outputs")
    console.print(f"simulated traffic : {sim}")
    console.print(f"detections        : {det / 'accounts.parquet'}, {det / 'campaigns.parquet'}")
    console.print(f"run summary       : {det / 'summary.json'}")
    report = det / "report.html"
    if report.exists():
        console.print(f"report            : {report.resolve()}")


if __name__ == "__main__":
    main()
