"""Incremental `detect --state --since` against a full re-run, as a ratio within one run.

    .venv/bin/python bench/incremental.py --scale 0.01 [--seed 5] [--out bench/out/incremental]

Simulates seed-report at the given scale, builds the state from every day but the last
(`--state`, no `--since`), then runs `--since LAST_DAY` over all events and a full run over
all events. Prints the wall time and stage timings of the update and of the full run, and
whether their outputs are identical (tests/engines/outputs.py).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from distillguard.pipeline.detect import DetectConfig, run_detect
from distillguard.simulate import simulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.engines.outputs import assert_same_detection

MS_PER_DAY = 86_400_000


def _last_day(events: Path) -> int:
    ms = duckdb.sql(f"SELECT max(epoch_ms(timestamp)) FROM '{events}'").fetchall()[0][0]
    return ms // MS_PER_DAY


def _before(sim: Path, out: Path, day: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in ("accounts.parquet", "releases.parquet", "ip_intel.csv"):
        shutil.copy(sim / name, out / name)
    duckdb.sql(
        f"COPY (SELECT * FROM '{sim / 'events.parquet'}' WHERE epoch_ms(timestamp) < "
        f"{day * MS_PER_DAY}) TO '{out / 'events.parquet'}' (FORMAT parquet)"
    )


def _timed(cfg: DetectConfig) -> tuple[float, dict]:
    start = time.perf_counter()
    result = run_detect(cfg)
    return round(time.perf_counter() - start, 1), result.summary["timings_s"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("bench/out/incremental"))
    args = ap.parse_args()
    base = args.out / str(args.scale)
    shutil.rmtree(base, ignore_errors=True)
    sim = base / "sim"
    simulate("seed-report", scale=args.scale, seed=args.seed, out=sim)
    last = _last_day(sim / "events.parquet")
    _before(sim, base / "sim-before", last)
    since = datetime.fromtimestamp(last * 86_400, UTC).date().isoformat()

    first = DetectConfig.for_simulation(base / "sim-before", base / "first")
    first.state = base / "state"
    t_first, _ = _timed(first)
    update = DetectConfig.for_simulation(sim, base / "update")
    update.state, update.since = base / "state", since
    t_update, s_update = _timed(update)
    t_full, s_full = _timed(DetectConfig.for_simulation(sim, base / "full"))
    assert_same_detection(base / "full", base / "update")
    days = json.loads((base / "state" / "manifest.json").read_text())["days"]
    print(f"days {len(days)}, since {since}; state build {t_first} s")
    print("| run | wall s | " + " | ".join(s_full) + " |")
    print("|---|---|" + "---|" * len(s_full))
    for name, wall, stages in (("full", t_full, s_full), ("--since last day", t_update, s_update)):
        print(f"| {name} | {wall} | " + " | ".join(str(stages.get(k, "")) for k in s_full) + " |")
    print(f"ratio update/full {t_update / t_full:.2f}; outputs identical")


if __name__ == "__main__":
    main()
