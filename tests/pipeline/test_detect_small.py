"""End to end on the built-in `small` scenario: regression floors for CI.

Seeds here were not used to tune weights or thresholds (tuning used seed 1). The floors are
looser than the benchmark goals (docs/benchmarks.md) so that noise does not fail CI, but a
real regression in any stage does.
"""

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from distillguard.contract import DETECTED_ACCOUNTS, DETECTED_CAMPAIGNS
from distillguard.evaluate import evaluate
from distillguard.pipeline.detect import DetectConfig, run_detect
from distillguard.simulate import simulate


@pytest.fixture(scope="module", params=[11, 12])
def run(request, tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp(f"small-{request.param}")
    sim = base / "sim"
    simulate("small", seed=request.param, out=sim)
    out = base / "detect"
    run_detect(DetectConfig.for_simulation(sim, out))
    return sim, out


def test_quality_floors(run):
    sim, out = run
    m = evaluate(sim, out)
    assert m["precision"] >= 0.9
    assert m["recall"] >= 0.85
    assert m["false_positive_rate"] <= 0.02
    for name, camp in m["campaigns"].items():
        assert camp["best_match_share"] >= 0.8, name


def test_outputs_follow_the_contract(run):
    _, out = run
    accounts = pq.read_table(out / "accounts.parquet")
    campaigns = pq.read_table(out / "campaigns.parquet")
    assert accounts.schema.equals(DETECTED_ACCOUNTS, check_metadata=False)
    assert campaigns.schema.equals(DETECTED_CAMPAIGNS, check_metadata=False)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["timings_s"]) >= {"ingest", "signals", "fingerprints", "links", "scoring"}
    assert summary["counts"]["accounts"] == accounts.num_rows


def test_every_account_seen_in_events_is_scored_once(run):
    sim, out = run
    seen = duckdb.sql(
        f"SELECT count(DISTINCT account_id) FROM '{sim / 'events.parquet'}'"
    ).fetchall()[0][0]
    accounts = pq.read_table(out / "accounts.parquet")
    assert accounts.num_rows == seen
    assert len(set(accounts["account_id"].to_pylist())) == seen


def test_flagged_accounts_carry_reasons_and_campaign_accounts_are_flagged(run):
    _, out = run
    rows = pq.read_table(out / "accounts.parquet").to_pylist()
    assert all(r["reasons"] for r in rows if r["flagged"])
    assert all(r["flagged"] for r in rows if r["campaign_id"] is not None)


def test_missing_events_file_is_a_one_line_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "distillguard", "detect", "--events", str(tmp_path / "nope.jsonl"),
         "--out", str(tmp_path / "o")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
