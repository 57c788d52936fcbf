"""Request enrichment: the worker-process path gives the same rows as the in-process path."""

from pathlib import Path

import pyarrow.parquet as pq

from distillguard.engines.duckdb import connect
from distillguard.ingest import run_ingest
from distillguard.pipeline import enrich
from distillguard.simulate import simulate


def _enrich(events: Path, out: Path, min_rows: int, monkeypatch) -> int:
    monkeypatch.setattr(enrich, "PROCESS_MIN_ROWS", min_rows)
    return enrich.enrich_events(connect(), events / "*.parquet", out, None, batch_rows=4096)


def test_worker_processes_enrich_the_same_rows_as_threads(tmp_path, monkeypatch):
    simulate("small", seed=21, out=tmp_path / "sim")
    run_ingest(
        events=[tmp_path / "sim" / "events.parquet"],
        accounts=None,
        releases=None,
        ip_intel=None,
        out=tmp_path / "ingest",
        progress=False,
    )
    events = tmp_path / "ingest" / "events"
    n_threads = _enrich(events, tmp_path / "threads.parquet", 10**12, monkeypatch)
    n_procs = _enrich(events, tmp_path / "procs.parquet", 0, monkeypatch)
    threads = pq.read_table(tmp_path / "threads.parquet").sort_by("request_id")
    procs = pq.read_table(tmp_path / "procs.parquet").sort_by("request_id")
    assert n_threads == n_procs == threads.num_rows > 0
    assert procs.equals(threads)
