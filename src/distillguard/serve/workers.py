"""CPU-heavy work in a helper process, so it does not hold the request path's GIL.

Request signals (regular expressions, MinHash) and the background analysis (ibis compilation,
Leiden) run mostly Python-side; in a thread of the server they would stall the event loop and
the request path for tens to thousands of milliseconds. Each kind gets its own single-process
pool (spawned, so no lock held by a server thread is inherited). Tables cross the process
boundary as Arrow IPC bytes through a pipe: prompt text never touches the disk.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import pyarrow as pa

log = logging.getLogger("distillguard.serve")


def _read(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(data).read_all()


def signal_commits_ipc(
    events: bytes, rows: bytes, slice_rows: int
) -> list[tuple[int, bytes, int, dict[str, list], dict[str, list]]]:
    """Request signals of an events table and, per slice of `slice_rows` requests, what its
    side commit writes: (newest hour, signals IPC, rows, counter delta columns, key delta
    columns). `rows` (request_id, account_id, hb) align with `events` by position. Done here
    rather than in the server so the request path's process only wraps the results."""
    from distillguard.serve.features import signal_deltas, to_ipc
    from distillguard.signals import compute_signals

    table = _read(events).combine_chunks()
    batch = table.to_batches(max_chunksize=table.num_rows)[0]
    signals = pa.Table.from_batches([compute_signals(batch)])
    keys = _read(rows)
    out = []
    for start in range(0, keys.num_rows, slice_rows):
        part, sig = keys.slice(start, slice_rows), signals.slice(start, slice_rows)
        buckets, key_deltas = signal_deltas(part, sig)
        hb = max(part["hb"].to_pylist())
        out.append(
            (
                hb,
                to_ipc(sig),
                sig.num_rows,
                {c: list(v) for c, v in buckets.columns.items()},
                {c: list(v) for c, v in key_deltas.columns.items()},
            )
        )
    return out


def analyse_ipc(data: bytes, flag_threshold: float, at_ms: int) -> bytes:
    """`analysis.analyse` over an enriched table in Arrow IPC; the result as JSON bytes."""
    from distillguard.serve.analysis import analyse

    return analyse(_read(data), flag_threshold, at_ms).to_json()


def analyse_sqlite(
    path: str, since_hb: int, max_events: int, min_accounts: int, flag_threshold: float, at_ms: int
) -> bytes | None:
    """Load the recent window from the SQLite state file and analyse it, all in the helper;
    None when there are too few accounts to link."""
    import pyarrow.compute as pc

    from distillguard.serve.analysis import analyse, recent_enriched
    from distillguard.serve.store import SqliteBlobReader

    reader = SqliteBlobReader(Path(path))
    try:
        enriched = recent_enriched(reader, since_hb, max_events)
    finally:
        reader.close()
    if enriched is None or pc.count_distinct(enriched["account_id"]).as_py() < min_accounts:
        return None
    return analyse(enriched, flag_threshold, at_ms).to_json()


# Helpers run below the request path's CPU priority: their work (a signal flush, an analysis
# run) can wait a few milliseconds, a POST waiting for a core shows in the p99. SCHED_IDLE
# (they run only on an otherwise idle core) on top of the niceness: at nice 10 an analysis run
# still slowed the request path's fsyncs (the kernel's journal work) and its p99 (measured:
# commits over 3 ms 143 -> 34 in a 60 s run). If the request path ever kept both cores busy,
# signals would lag: `distillguard_signal_queue_events` shows it.
HELPER_NICENESS = 10


def _start_helper(parent: int) -> None:
    """Helper-process initialiser: lower priority, and exit with the server."""
    try:
        os.nice(HELPER_NICENESS)
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (OSError, AttributeError):  # not permitted, or not Linux: a higher priority
        log.warning("could not lower the helper process's priority")
    _exit_with_parent(parent)


def _exit_with_parent(parent: int) -> None:
    """Helper-side watchdog: a killed server (kill -9) must not leave its helper behind."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def _warm() -> bool:
    import distillguard.signals  # noqa: F401  (import cost paid before the first batch)

    return True


def warm_signal_flush() -> bool:
    """A one-event signal flush in the fresh helper: the imports and first calls it needs
    (~0.6 s of imports alone) are paid at start, not by the first real flush (which took
    ~1.3 s in a fresh helper against ~0.2 s later, measured)."""
    from distillguard.serve.features import to_ipc
    from distillguard.serve.validate import EVENTS_SCHEMA
    from distillguard.signals import INPUT_COLUMNS

    def value(t: pa.DataType) -> Any:
        return "Explain step by step." if pa.types.is_string(t) else 0

    fields = [EVENTS_SCHEMA.field(name) for name in INPUT_COLUMNS]
    events = pa.table({f.name: pa.array([value(f.type)], f.type) for f in fields})
    rows = pa.table({"request_id": ["w"], "account_id": ["w"], "hb": pa.array([0], pa.int64())})
    signal_commits_ipc(to_ipc(events), to_ipc(rows), 1)
    return True


class Worker:
    """One helper process; recreated if it dies. `enabled=False` runs calls in-thread."""

    def __init__(self, enabled: bool, warm: Callable[[], bool] = _warm) -> None:
        self.enabled = enabled
        self._warm = warm  # run first in each new helper process
        self._pool: ProcessPoolExecutor | None = None

    def _get(self) -> ProcessPoolExecutor:
        if self._pool is None:
            ctx = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=ctx,
                initializer=_start_helper,
                initargs=(os.getpid(),),
            )
            self._pool.submit(self._warm)
        return self._pool

    def start(self) -> None:
        if self.enabled:
            self._get()

    def run(self, fn: Any, *args: Any) -> Any:
        if not self.enabled:
            return fn(*args)
        try:
            return self._get().submit(fn, *args).result()
        except BrokenProcessPool:
            log.warning("helper process died; starting a new one")
            self._pool = None
            return self._get().submit(fn, *args).result()

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
