"""`detect --state DIR --since DATE` must give the output of a full run over the same events."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from distillguard.errors import UserError
from distillguard.pipeline import incremental
from distillguard.pipeline.detect import DetectConfig, run_detect
from distillguard.simulate import simulate
from tests.cli_runner import run_cli
from tests.engines.outputs import assert_same_detection

MS_PER_DAY = 86_400_000


def _middle_day(events: Path) -> int:
    """A UTC day boundary with events on both sides (the median request's day)."""
    query = f"SELECT quantile_disc(epoch_ms(timestamp), 0.5) FROM '{events}'"
    return duckdb.sql(query).fetchall()[0][0] // MS_PER_DAY


def _first_days(sim: Path, out: Path, before_day: int) -> None:
    """A copy of simulation `sim` holding only the events before `before_day`."""
    out.mkdir()
    for name in ("accounts.parquet", "releases.parquet", "ip_intel.csv"):
        shutil.copy(sim / name, out / name)
    duckdb.sql(
        f"COPY (SELECT * FROM '{sim / 'events.parquet'}' "
        f"WHERE epoch_ms(timestamp) < {before_day * MS_PER_DAY}) "
        f"TO '{out / 'events.parquet'}' (FORMAT parquet)"
    )


def _date(day: int) -> str:
    return datetime.fromtimestamp(day * 86_400, UTC).date().isoformat()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("incremental")
    sim = base / "sim"
    simulate("small", seed=13, out=sim)
    split = _middle_day(sim / "events.parquet")
    _first_days(sim, base / "sim-first", split)
    state = base / "state"

    first = DetectConfig.for_simulation(base / "sim-first", base / "first")
    first.state = state
    run_detect(first)
    update = DetectConfig.for_simulation(sim, base / "update")
    update.state, update.since = state, _date(split)
    run_detect(update)
    run_detect(DetectConfig.for_simulation(sim, base / "full"))
    return {"base": base, "sim": sim, "state": state, "split": split}


def test_since_run_equals_full_run(runs):
    assert_same_detection(runs["base"] / "full", runs["base"] / "update")


def test_state_covers_every_day_once(runs):
    manifest = json.loads((runs["state"] / incremental.MANIFEST).read_text())
    days = duckdb.sql(
        f"SELECT DISTINCT epoch_ms(timestamp) // {MS_PER_DAY} AS d "
        f"FROM '{runs['sim'] / 'events.parquet'}' ORDER BY d"
    ).fetchall()
    assert manifest["days"] == [d for (d,) in days]
    assert [r["since_ms"] for r in manifest["runs"]] == [None, runs["split"] * MS_PER_DAY]
    stored = duckdb.sql(
        f"SELECT count(*), count(DISTINCT request_id) FROM read_parquet('{runs['state']}/"
        f"enriched/*/*.parquet')"
    ).fetchall()[0]
    summary = json.loads((runs["base"] / "full" / "summary.json").read_text())
    assert stored[0] == stored[1] == summary["ingest"]["sections"]["events"]["accepted"]
    update = json.loads((runs["base"] / "update" / "summary.json").read_text())["incremental"]
    before = duckdb.sql(
        f"SELECT count(*) FROM '{runs['base'] / 'sim-first' / 'events.parquet'}'"
    ).fetchall()[0][0]
    assert update["skipped_before_since"] == before
    assert update["enriched_now"] == stored[0] - before


def _settings() -> dict:
    return incremental.enrichment_settings("contract", None)


def _stored_state(root: Path, days: list[int]) -> None:
    state = incremental.State(root=root, settings=_settings(), days=days)
    for d in days:
        (state.enriched_dir / f"day_{d}").mkdir(parents=True)
    state.save(None, [], 0, "duckdb")


def test_since_refuses_other_settings(tmp_path):
    _stored_state(tmp_path, [20000])
    other = incremental.enrichment_settings("otel", None)
    with pytest.raises(UserError, match="different settings"):
        incremental.State.open(tmp_path, other, 20000 * MS_PER_DAY)


def test_since_refuses_a_gap_and_missing_days(tmp_path):
    _stored_state(tmp_path, [20000, 20001])
    incremental.State.open(tmp_path, _settings(), 20002 * MS_PER_DAY)  # next day: fine
    with pytest.raises(UserError, match="gap"):
        incremental.State.open(tmp_path, _settings(), 20003 * MS_PER_DAY)
    shutil.rmtree(tmp_path / "enriched" / "day_20000")
    with pytest.raises(UserError, match="missing"):
        incremental.State.open(tmp_path, _settings(), 20001 * MS_PER_DAY)


def test_since_needs_a_state(tmp_path):
    cfg = DetectConfig(events=[tmp_path / "e.parquet"], out=tmp_path / "o", since="2026-01-02")
    with pytest.raises(UserError, match="--state"):
        run_detect(cfg)
    cfg.state = tmp_path / "empty"
    with pytest.raises(UserError, match="no detect state"):
        run_detect(cfg)


def test_since_must_be_a_date():
    with pytest.raises(UserError, match="date"):
        incremental.parse_since("yesterday")
    assert incremental.parse_since("1970-01-02") == MS_PER_DAY


def test_cli_since_without_state_exits_2_in_one_line(tmp_path, monkeypatch, capsys):
    events = tmp_path / "events.jsonl"
    events.write_text("")
    out = tmp_path / "o"
    args = ["detect", "--events", str(events), "--out", str(out), "--since", "2026-01-02"]
    code, _, err = run_cli(args, monkeypatch, capsys)
    assert code == 2
    assert "--state" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
