"""The report finds the enriched requests of Spark runs and of `--state` runs."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from distillguard.report.rundir import RunDir


def _run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    (run / "work").mkdir(parents=True)
    pq.write_table(pa.table({"account_id": ["a"], "risk": [0.1]}), run / "accounts.parquet")
    return run


def _enriched(path: Path, n: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"account_id": ["a"] * n, "request_id": [str(i) for i in range(n)]}),
                   path)  # fmt: skip


def test_spark_run_enriched_directory_is_read(tmp_path):
    run = _run(tmp_path)
    _enriched(run / "work" / "enriched" / "part-0.parquet", 2)
    _enriched(run / "work" / "enriched" / "part-1.parquet", 3)
    rows = RunDir(run).rows("SELECT count(*) AS n FROM enriched")
    assert rows[0]["n"] == 5


def test_state_run_enriched_days_are_read_from_the_state(tmp_path):
    run = _run(tmp_path)
    state = tmp_path / "state"
    _enriched(state / "enriched" / "day_1" / "part-0.parquet", 4)
    _enriched(state / "enriched" / "day_2" / "part-0.parquet", 1)
    summary = {"incremental": {"state": str(state), "since": None, "days": [1, 2]}}
    (run / "summary.json").write_text(json.dumps(summary))
    rows = RunDir(run).rows("SELECT count(*) AS n FROM enriched")
    assert rows[0]["n"] == 5


def test_run_without_enriched_requests_has_no_view(tmp_path):
    assert "enriched" not in RunDir(_run(tmp_path)).views
