"""CPU of an idle `distillguard serve` (with its helper processes) after a burst of traffic.

    .venv/bin/python bench/serve_idle.py [--events 30000] [--interval 5] [--idle 30]

A real server process gets --events simulated events (as `serve_load.py` makes them) in POSTs
of 100, one after another; then, after three analysis intervals and a few seconds for the last
runs, nothing. The figure is the CPU time the server and its helpers use over --idle seconds
of that silence: what a service costs its host between bursts (the background analysis runs
every `analysis.interval_s`, set to --interval here).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from serve_load import (
    READ_TOKEN,
    WRITE_TOKEN,
    cpu_seconds,
    encode,
    free_port,
    post_all,
    simulated_events,
)

from distillguard.serve.harness import ServerProcess, write_config

SETTLE_S = 5.0  # after three intervals: the last two runs over the burst have finished


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=30_000)
    p.add_argument("--interval", type=float, default=5.0, help="analysis.interval_s")
    p.add_argument("--idle", type=float, default=30.0, help="seconds of silence measured")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dg-serve-idle-"))
    try:
        bodies = encode(simulated_events(work, args.events), 100)
        port = free_port()
        config = write_config(
            work / "serve.toml", port, WRITE_TOKEN, READ_TOKEN,
            **{"analysis.interval_s": str(args.interval)},
        )  # fmt: skip
        server = ServerProcess(config, port, work / "server.log")
        server.start()
        try:
            if post_all(port, bodies) != args.events:
                raise RuntimeError("the server did not accept every event")
            time.sleep(3 * args.interval + SETTLE_S)
            assert server.proc is not None
            before = cpu_seconds(server.proc.pid)
            time.sleep(args.idle)
            idle_cpu = cpu_seconds(server.proc.pid) - before
        finally:
            server.stop()
        print(
            json.dumps(
                {
                    "events": args.events,
                    "analysis_interval_s": args.interval,
                    "idle_s": args.idle,
                    "idle_cpu_s": round(idle_cpu, 2),
                    "idle_cpu_share_of_one_core": round(idle_cpu / args.idle, 3),
                }
            )
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
