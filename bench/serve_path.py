"""CPU of the service's request path per POST, in process (no HTTP), beside a host reference.

    .venv/bin/python bench/serve_path.py [--batch 100] [--posts 400]

Simulated traffic (as `serve_load.py` makes it) goes through `Service.ingest_body` (typed
decoding or validation, request rows and counter deltas, windows, decisions, the SQLite group
commit) one POST at a time, after 100 warm-up POSTs; signals are not flushed during the timed
part. The host reference (`serve_load.host_reference_ms`, a fixed JSON/NumPy/Arrow workload) is
taken before and after: the shared test host's speed drifts by up to 2x, so compare runs by
`cpu_ms_per_post` only when their references agree, and interleave A/B runs
(`PYTHONPATH=<other src> .venv/bin/python bench/serve_path.py`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from serve_load import READ_TOKEN, WRITE_TOKEN, encode, host_reference_ms, simulated_events

from distillguard.serve.config import load_config
from distillguard.serve.harness import write_config
from distillguard.serve.service import Service

WARM_POSTS = 100
QUIET = {"analysis.interval_s": "0", "signals.flush_ms": "100000000"}


def _poster(service: Service):
    """`ingest_body`; code from before it (A/B runs) decoded the JSON in the app first."""
    if hasattr(service, "ingest_body"):
        return service.ingest_body
    return lambda body: service.ingest_payload(json.loads(body)["events"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--posts", type=int, default=400)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dg-serve-path-"))
    total = (WARM_POSTS + args.posts) * args.batch
    bodies = [body for body, _ in encode(simulated_events(work, total), args.batch)]
    config = write_config(
        work / "serve.toml", 1, WRITE_TOKEN, READ_TOKEN,
        **QUIET, **{"signals.flush_events": "1000000000"},
    )  # fmt: skip
    service = Service(load_config(config))
    post = _poster(service)
    service.start()
    try:
        for body in bodies[:WARM_POSTS]:
            post(body)
        before = host_reference_ms()
        start = time.process_time()
        for body in bodies[WARM_POSTS:]:
            post(body)
        cpu_ms = (time.process_time() - start) * 1000 / (len(bodies) - WARM_POSTS)
        after = host_reference_ms()
    finally:
        service.stop()
    print(
        json.dumps(
            {
                "batch": args.batch,
                "posts": len(bodies) - WARM_POSTS,
                "cpu_ms_per_post": round(cpu_ms, 2),
                "host_reference_ms_before_after": [before, after],
            }
        )
    )


if __name__ == "__main__":
    main()
