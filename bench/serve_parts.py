"""CPU of two pieces of the service's request path, in a quiet loop, for A/B runs of one change.

    .venv/bin/python bench/serve_parts.py [--posts 300]

- `decode_us_per_body`: typed decoding (`serve/typed.py`) of 100-event bodies of simulated
  traffic (as `serve_load.py` makes it), after one pass that fills the IP cache; best of 3
  passes over all bodies.
- `apply_ms_per_slice` and `windows_ms`: the signal deltas of those events, computed once by
  the signal helper's own function (`workers.signal_commits_ipc`, in process), applied to a
  fresh `WindowState` (best of 7), and the windows of 13 of its accounts read 300 times.

Interleave A/B runs (`PYTHONPATH=<other src> .venv/bin/python bench/serve_parts.py`); compare
only runs whose host references (printed beside) agree.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).parent))

from serve_load import encode, host_reference_ms, simulated_events

from distillguard.serve.features import IpInfoCache, request_rows, to_ipc
from distillguard.serve.memstate import WindowState
from distillguard.serve.service import SIGNAL_COMMIT_ROWS, _signal_inputs
from distillguard.serve.store import Deltas
from distillguard.serve.typed import TypedDecoder
from distillguard.serve.validate import EventValidator
from distillguard.serve.workers import signal_commits_ipc


def decode_us_per_body(bodies: list[bytes]) -> tuple[float, pa.Table]:
    """(best us per body, the decoded events)."""
    decoder = TypedDecoder(EventValidator())
    tables = [decoder.decode(b) for b in bodies]  # fills the IP cache
    assert all(isinstance(t, pa.Table) for t in tables), "the typed path must take these"
    best = float("inf")
    for _ in range(3):
        start = time.thread_time()
        for body in bodies:
            decoder.decode(body)
        best = min(best, time.thread_time() - start)
    return best * 1e6 / len(bodies), pa.concat_tables(tables)


def signal_deltas_of(events: pa.Table) -> list[tuple[Deltas, Deltas]]:
    rows, _ = request_rows(events, IpInfoCache())
    keys = rows.select(["request_id", "account_id", "hb"])
    parts = signal_commits_ipc(to_ipc(_signal_inputs(events)), to_ipc(keys), SIGNAL_COMMIT_ROWS)
    return [(Deltas(b), Deltas(k)) for _, _, _, b, k in parts]


def apply_and_windows_ms(deltas: list[tuple[Deltas, Deltas]]) -> tuple[float, float]:
    best, state = float("inf"), WindowState()
    for _ in range(7):
        state = WindowState()
        start = time.thread_time()
        for buckets, keys in deltas:
            state.apply_buckets(buckets)
            state.apply_keys(keys)
        best = min(best, time.thread_time() - start)
    accounts = list(state.accounts)[:13]
    hb = max(max(b["hb"]) for b, _ in deltas)
    start = time.thread_time()
    for _ in range(300):
        state.windows(accounts, hb - 23, hb - 167)
    return best * 1000 / len(deltas), (time.thread_time() - start) * 1000 / 300


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--posts", type=int, default=300)
    args = p.parse_args()
    events = simulated_events(Path(tempfile.mkdtemp(prefix="dg-serve-parts-")), args.posts * 100)
    bodies = [body for body, _ in encode(events, 100)]
    before = host_reference_ms()
    decode_us, decoded = decode_us_per_body(bodies)
    apply_ms, windows_ms = apply_and_windows_ms(signal_deltas_of(decoded))
    out = {
        "decode_us_per_body": round(decode_us, 1),
        "apply_ms_per_slice": round(apply_ms, 3),
        "windows_ms": round(windows_ms, 3),
        "host_reference_ms_before_after": [before, host_reference_ms()],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
