"""Simulator speed benchmark: events per minute and peak memory for one scenario run.

    .venv/bin/python bench/simulate.py [--scenario seed-report] [--scale 0.05] [--out DIR]

Runs the simulation in a child process so that its peak RSS (ru_maxrss of the child) is the
simulator's own, then prints one JSON line: events, seconds, events/min, peak RSS, output size,
and the extrapolation to scale 1.0 (time scales linearly with events; memory does not, because
events are generated and written chunk by chunk).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import json, sys
from distillguard.simulate import simulate
r = simulate(sys.argv[1], scale=float(sys.argv[2]), seed=int(sys.argv[3]), out=sys.argv[4])
print(json.dumps({"events": r.events, "accounts": r.accounts, "seconds": r.seconds}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description="simulator speed benchmark")
    ap.add_argument("--scenario", default="seed-report")
    ap.add_argument("--scale", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="keep the output here (default: temp)")
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="dg-sim-bench-"))
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, args.scenario, str(args.scale), str(args.seed), str(out)],
        check=True,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    size_mb = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**20
    rate = child["events"] / child["seconds"] * 60
    full_events = child["events"] / args.scale
    result = {
        "scenario": args.scenario,
        "scale": args.scale,
        "events": child["events"],
        "accounts": child["accounts"],
        "seconds": round(child["seconds"], 2),
        "wall_seconds_with_startup": round(wall, 2),
        "events_per_min": round(rate),
        "peak_rss_mb": round(peak_mb),
        "output_mb": round(size_mb, 1),
        "cpus": os.cpu_count(),
        "loadavg_1min": round(os.getloadavg()[0], 2),
        "extrapolated_full_scale_minutes": round(full_events / rate, 1),
        "extrapolated_full_scale_output_gb": round(size_mb / args.scale / 1024, 1),
    }
    print(json.dumps(result))
    if args.out is None:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
