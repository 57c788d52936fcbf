"""Compare two `detect` run directories: what "identical output" means across engines and runs.

- accounts.parquet: the same accounts, the same flagged set, the same campaign membership
  partition (and ids), the same reasons, risk equal to 1e-9;
- campaigns.parquet: every field equal (floats to 1e-9);
- summary.json: the same ingest counts (not timings), thresholds and result counts;
- the intermediate tables under work/ (fingerprints, edges, clusters, scores, campaign daily
  volume and release adaptation): the same rows, numbers equal to 1e-9.

Floating-point sums may differ in the last bits between engines (different aggregation order),
hence the tolerance; everything discrete must match exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

TOLERANCE = 1e-9

# File -> key columns that identify a row (tables are sorted by them before comparison).
TABLES = {
    "accounts.parquet": ["account_id"],
    "campaigns.parquet": ["campaign_id"],
    "work/fingerprints.parquet": ["account_id"],
    "work/edges.parquet": ["a", "b"],
    "work/scores.parquet": ["account_id"],
    "work/clusters.parquet": ["cluster"],
    "work/campaign_daily.parquet": ["campaign_id", "day", "model"],
    "work/campaign_releases.parquet": ["campaign_id", "model"],
}


def _sorted(table: pa.Table, keys: list[str]) -> pa.Table:
    return table.sort_by([(k, "ascending") for k in keys])


def _is_float(t: pa.DataType) -> bool:
    return pa.types.is_floating(t)


def assert_same_column(name: str, a: pa.ChunkedArray, b: pa.ChunkedArray) -> None:
    if _is_float(a.type) or _is_float(b.type):
        x = np.asarray(a.to_numpy(zero_copy_only=False), dtype=float)
        y = np.asarray(b.to_numpy(zero_copy_only=False), dtype=float)
        bad = ~np.isclose(x, y, rtol=0, atol=TOLERANCE, equal_nan=True)
        example = f"{x[bad][:3]} vs {y[bad][:3]}"
        assert not bad.any(), f"{name}: {int(bad.sum())} values differ, e.g. {example}"
    else:
        assert a.to_pylist() == b.to_pylist(), f"{name}: values differ"


def assert_same_table(left: Path, right: Path, rel: str, keys: list[str]) -> None:
    a, b = pq.read_table(left / rel), pq.read_table(right / rel)
    assert a.column_names == b.column_names, rel
    assert a.num_rows == b.num_rows, f"{rel}: {a.num_rows} vs {b.num_rows} rows"
    a, b = _sorted(a, keys), _sorted(b, keys)
    for name in a.column_names:
        assert_same_column(f"{rel}:{name}", a[name], b[name])


def campaign_partition(accounts: pa.Table) -> set[frozenset[str]]:
    """Campaign membership as a set of account sets (independent of how ids are spelled)."""
    members = accounts.filter(pc.is_valid(accounts["campaign_id"]))
    groups: dict[str, set[str]] = {}
    for cid, acc in zip(
        members["campaign_id"].to_pylist(), members["account_id"].to_pylist(), strict=True
    ):
        groups.setdefault(cid, set()).add(acc)
    return {frozenset(g) for g in groups.values()}


def assert_same_detection(left: Path, right: Path) -> None:
    """Every check listed in the module docstring; raises AssertionError naming the first."""
    a = pq.read_table(left / "accounts.parquet")
    b = pq.read_table(right / "accounts.parquet")
    assert a.schema.equals(b.schema, check_metadata=False)
    flagged_a = set(a.filter(a["flagged"])["account_id"].to_pylist())
    flagged_b = set(b.filter(b["flagged"])["account_id"].to_pylist())
    assert flagged_a == flagged_b, f"flagged sets differ: {sorted(flagged_a ^ flagged_b)[:5]}"
    assert campaign_partition(a) == campaign_partition(b), "campaign membership differs"
    for rel, keys in TABLES.items():
        if (left / rel).exists() or (right / rel).exists():
            assert_same_table(left, right, rel, keys)
    sa = json.loads((left / "summary.json").read_text())
    sb = json.loads((right / "summary.json").read_text())
    for key in ("thresholds", "counts"):
        assert sa[key] == sb[key], f"summary.json {key} differs"
    assert _ingest_counts(sa) == _ingest_counts(sb), "summary.json ingest counts differ"


def _ingest_counts(summary: dict) -> dict:
    """Per input section: records read, accepted, rejected, duplicate and why (no timings)."""
    counted = ("read", "accepted", "rejected", "duplicate", "by_reason", "by_field")
    return {
        name: {k: section.get(k) for k in counted}
        for name, section in summary["ingest"]["sections"].items()
    }
