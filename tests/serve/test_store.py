from __future__ import annotations

import sys

import pytest

from distillguard.serve.__main__ import main as serve_main
from distillguard.serve.logstore import SqliteStore
from distillguard.serve.store import Commit, Deltas


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


def _serve_main(cfg, monkeypatch, capsys) -> tuple[int, str]:
    """`python -m distillguard.serve --config CFG`, in-process (a subprocess costs seconds of
    imports): its exit code and stderr."""
    monkeypatch.setattr(sys, "argv", ["distillguard-serve", "--config", str(cfg)])
    with pytest.raises(SystemExit) as exc:
        serve_main()
    return exc.value.code, capsys.readouterr().err


def test_serve_refuses_to_start_without_tokens(tmp_path, monkeypatch, capsys):
    cfg = tmp_path / "serve.toml"
    cfg.write_text('[state]\npath = "s.db"\n')
    code, err = _serve_main(cfg, monkeypatch, capsys)
    assert code == 2
    assert "no [auth] tokens" in err and "Traceback" not in err
    cfg.write_text("[state]\nbogus = 1\n")
    code, err = _serve_main(cfg, monkeypatch, capsys)
    assert code == 2 and "unknown key state.bogus" in err


def test_serve_refuses_to_start_with_a_missing_ip_intel_file(tmp_path, monkeypatch, capsys):
    cfg = tmp_path / "serve.toml"
    cfg.write_text('[auth]\ndisabled = true\n[ip_intel]\nfile = "intel.parquet"\n')
    code, err = _serve_main(cfg, monkeypatch, capsys)
    assert code == 2 and "[ip_intel].file" in err and "no such file" in err
    assert "Traceback" not in err


def test_prune_forgets_counters_keys_and_ids_of_old_hours_only(tmp_path):
    store = SqliteStore(tmp_path / "s.db")
    for hb in (100, 101, 103):
        store.commit(
            Commit(
                request_ids=[f"r{hb}"],
                request_accounts=["a"],
                request_hours=[hb],
                request_decisions=['{"decision":"allow"}'],
                buckets=[Deltas({"account_id": ["a"], "hb": [hb], "requests": [1]})],
                keys=[
                    Deltas(
                        {
                            "account_id": ["a"],
                            "kind": ["ip"],
                            "key": [f"10.0.0.{hb}"],
                            "hb": [hb],
                            "n": [1],
                        }
                    )
                ],
            )
        )
    store.prune(before_hb=102)
    assert set(store.known(["r100", "r101", "r103"])) == {"r103"}
    w = store.windows(["a"], short_from_hb=0, long_from_hb=0)
    assert w.long["requests"] == [1] and w.distinct_long["ip"] == [1]
    store.close()


# The state layout before the append-only log (commit 74da48d), as that version created it.
_LEGACY_SCHEMA = """
CREATE TABLE requests (request_id TEXT PRIMARY KEY, account_id TEXT, hb INTEGER,
    decision TEXT) WITHOUT ROWID;
CREATE TABLE buckets (account_id TEXT, hb INTEGER, {metrics},
    PRIMARY KEY (account_id, hb)) WITHOUT ROWID;
CREATE TABLE keys (account_id TEXT, kind TEXT, key TEXT, hb INTEGER, n INTEGER,
    PRIMARY KEY (account_id, kind, key, hb)) WITHOUT ROWID;
CREATE TABLE blobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, hb INTEGER, kind TEXT, data BLOB,
    n INTEGER);
CREATE TABLE accounts (account_id TEXT PRIMARY KEY, decision TEXT) WITHOUT ROWID;
CREATE TABLE kv (k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID;
"""


def _legacy_file(path) -> None:
    import sqlite3

    from distillguard.serve.store import METRICS

    con = sqlite3.connect(path)
    metrics = ", ".join(f"{m} INTEGER NOT NULL DEFAULT 0" for m in METRICS)
    con.executescript(_LEGACY_SCHEMA.format(metrics=metrics))
    allow, block = '{"decision":"allow"}', '{"decision":"block"}'
    con.executemany(
        "INSERT INTO requests VALUES (?, ?, ?, ?)",
        [("r1", "ann", 500, allow), ("r2", "ann", 501, allow), ("r3", "bot", 501, block)],
    )
    con.execute("INSERT INTO buckets (account_id, hb, requests, cot) VALUES ('ann', 500, 1, 0)")
    con.execute("INSERT INTO buckets (account_id, hb, requests, cot) VALUES ('ann', 501, 1, 0)")
    con.execute("INSERT INTO buckets (account_id, hb, requests, cot) VALUES ('bot', 501, 1, 1)")
    con.executemany(
        "INSERT INTO keys VALUES (?, ?, ?, ?, ?)",
        [("ann", "ip", "198.51.100.1", 500, 1), ("ann", "ip", "198.51.100.2", 501, 1),
         ("bot", "ip", "203.0.113.9", 501, 1)],
    )  # fmt: skip
    con.executemany("INSERT INTO accounts VALUES (?, ?)", [("ann", allow), ("bot", block)])
    con.execute("INSERT INTO blobs (hb, kind, data, n) VALUES (501, 'events', x'00', 3)")
    con.execute("INSERT INTO kv VALUES ('clock', 1803600000)")
    con.commit()
    con.close()


def test_a_state_file_of_the_pre_log_layout_is_upgraded_with_nothing_lost(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    _legacy_file(path)
    for _ in range(2):  # the second open finds the upgraded file and leaves it as it is
        store = SqliteStore(path)
        assert store.known(["r1", "r3", "r9"]) == {
            "r1": '{"decision":"allow"}',
            "r3": '{"decision":"block"}',
        }
        assert store.account("bot") == '{"decision":"block"}'
        w = store.windows(["ann", "bot"], 501, 500)
        assert w.long["requests"] == [2, 1] and w.short["requests"] == [1, 1]
        assert w.long["cot"] == [0, 1] and w.distinct_long["ip"] == [2, 1]
        assert store.event_rows_by_hour(0) == [(501, 3)] and store.get_kv("clock") is not None
        store.close()
    tables = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master")}
    assert not tables & {"requests", "buckets", "keys", "accounts"}
