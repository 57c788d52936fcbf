"""`detect --engine spark` writes the same detection as the embedded DuckDB engine.

"The same" is defined in tests/engines/outputs.py: same flagged set, same campaign membership,
risks equal to 1e-9, every contract section-6 file and intermediate table equal. The enriched
requests (request signals run through Spark's mapInArrow) are compared column by column too.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distillguard.errors import UserError
from distillguard.pipeline.detect import DetectConfig, run_detect
from distillguard.simulate import simulate
from tests.engines.outputs import assert_same_column, assert_same_detection

# The `small` run on Spark also keeps an incremental state (engine-specific day split and
# reading the stored days back); the seed-report run takes the plain path.
SCENARIOS = {
    "small": ({"scenario": "small", "seed": 11}, True),
    "seed-report-0.001": ({"scenario": "seed-report", "scale": 0.001, "seed": 3}, False),
}


def _detect(sim: Path, out: Path, engine: str, state: Path | None = None) -> Path:
    cfg = DetectConfig.for_simulation(sim, out)
    cfg.engine, cfg.state = engine, state
    run_detect(cfg)
    return out


def _enriched(run: Path, state: Path | None) -> pa.Table:
    if state is not None:
        return pq.read_table(state / "enriched")  # day_N/ directories, no partition columns
    path = run / "work" / "enriched"
    return pq.read_table(path if path.is_dir() else run / "work" / "enriched.parquet")


def _assert_same_enrichment(a: pa.Table, b: pa.Table) -> None:
    a, b = a.sort_by("request_id"), b.sort_by("request_id")
    assert a.column_names == b.column_names
    assert a.num_rows == b.num_rows
    for name in a.column_names:
        assert_same_column(f"enriched:{name}", a[name], b[name])


@pytest.mark.spark
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_spark_detection_equals_duckdb(name, spark, tmp_path):
    scenario, with_state = SCENARIOS[name]
    sim = tmp_path / "sim"
    simulate(out=sim, **scenario)
    duck = _detect(sim, tmp_path / "duckdb", "duckdb")
    state = tmp_path / "state" if with_state else None
    on_spark = _detect(sim, tmp_path / "spark", "spark", state)
    _assert_same_enrichment(_enriched(duck, None), _enriched(on_spark, state))
    assert_same_detection(duck, on_spark)
    assert pq.read_table(on_spark / "accounts.parquet")["flagged"].to_pylist().count(True) > 0


def test_unknown_engine_and_stray_master_are_user_errors(tmp_path):
    cfg = DetectConfig(events=[tmp_path / "e.parquet"], out=tmp_path / "o", engine="flink")
    with pytest.raises(UserError, match="--engine"):
        run_detect(cfg)
    cfg.engine, cfg.spark_master = "duckdb", "spark://host:7077"
    with pytest.raises(UserError, match="--spark-master needs --engine spark"):
        run_detect(cfg)
