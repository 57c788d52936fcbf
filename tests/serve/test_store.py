from __future__ import annotations

import subprocess
import sys

from distillguard.serve.store import Commit, SqliteStore


def test_analysis_reads_only_the_newest_hours_up_to_the_row_budget(tmp_path):
    store = SqliteStore(tmp_path / "s.db")
    for hb, rows in [(100, 50), (101, 50), (102, 50), (103, 50)]:
        store.commit(Commit(blobs=[(hb, "events", b"x", rows), (hb, "signals", b"y", rows)]))
    assert store.event_rows_by_hour(101) == [(103, 50), (102, 50), (101, 50)]
    assert store.cutoff_hour(100, max_rows=120) == 101  # 103 + 102 + 101 cover 120 rows
    assert store.cutoff_hour(100, max_rows=10_000) == 100
    assert [len(v) for v in store.blobs(store.cutoff_hour(100, 60)).values()] == [2, 2]
    store.prune(before_hb=102)
    assert store.event_rows_by_hour(0) == [(103, 50), (102, 50)]
    store.close()


def test_serve_refuses_to_start_without_tokens(tmp_path):
    cfg = tmp_path / "serve.toml"
    cfg.write_text('[state]\npath = "s.db"\n')
    r = subprocess.run(
        [sys.executable, "-m", "distillguard.serve", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2
    assert "no [auth] tokens" in r.stderr and "Traceback" not in r.stderr
    cfg.write_text("[state]\nbogus = 1\n")
    r = subprocess.run(
        [sys.executable, "-m", "distillguard.serve", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "unknown key state.bogus" in r.stderr
