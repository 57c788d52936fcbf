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
