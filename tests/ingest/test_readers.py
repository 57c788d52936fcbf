"""Every reader gives the same normalised contract tables."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distillguard import contract
from distillguard.ingest import read_section, run_ingest
from tests.ingest.helpers import account, event, write_csv, write_jsonl, write_parquet

N = 40


def _records() -> list[dict]:
    return [event(i) for i in range(N)]


def _write(tmp_path: Path, kind: str) -> Path:
    records = _records()
    if kind in ("jsonl", "jsonl.gz", "jsonl.zst"):
        return write_jsonl(tmp_path / f"events.{kind}", records)
    if kind == "csv":
        return write_csv(tmp_path / "events.csv", records)
    if kind == "parquet":
        return write_parquet(tmp_path / "events.parquet", records)
    directory = tmp_path / "events-dir"
    directory.mkdir()
    write_parquet(directory / "a.parquet", records[: N // 2])
    write_parquet(directory / "b.parquet", records[N // 2 :])
    return directory


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> pa.Table:
    path = _write(tmp_path_factory.mktemp("ref"), "jsonl")
    table, counts = read_section("events", [path])
    assert counts.accepted == N
    return table.sort_by("request_id")


@pytest.mark.parametrize(
    "kind", ["jsonl", "jsonl.gz", "jsonl.zst", "csv", "parquet", "parquet-dir"]
)
def test_each_format_reads_to_the_same_contract_table(
    tmp_path: Path, kind: str, reference: pa.Table
) -> None:
    table, counts = read_section("events", [_write(tmp_path, kind)])
    assert (counts.read, counts.accepted, counts.rejected, counts.duplicate) == (N, N, 0, 0)
    assert table.schema == contract.EVENTS
    assert table.sort_by("request_id").equals(reference)


def test_timestamps_rfc3339_and_epoch_ms_mean_the_same_instant(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "t.jsonl",
        [
            event(1, timestamp="2026-02-03T05:05:06.789+01:00"),
            event(2, timestamp=1770091506789),
            event(3, timestamp="2026-02-03t04:05:06.789123456z"),
        ],
    )
    table, _ = read_section("events", [path])
    values = {r["request_id"]: r["timestamp"] for r in table.to_pylist()}
    assert values["req-1"] == values["req-2"] == values["req-3"]
    assert values["req-1"].isoformat() == "2026-02-03T04:05:06.789000+00:00"


def test_ingest_writes_the_documented_layout(tmp_path: Path) -> None:
    events = write_jsonl(tmp_path / "e.jsonl", [*_records(), event(0)])  # one duplicate
    accounts = write_csv(tmp_path / "a.csv", [account(i) for i in range(3)])
    releases = write_csv(
        tmp_path / "r.csv", [{"model": "model-a", "released_at": "2025-12-01T00:00:00Z"}]
    )
    intel = write_csv(
        tmp_path / "intel.csv",
        [{"cidr": "10.0.0.0/8", "asn": "64500", "as_org": "Example DC", "kind": "datacenter"}],
    )
    out = tmp_path / "out"
    result = run_ingest([events], [accounts], [releases], [intel], out=out, progress=False)
    assert (result.events.read, result.events.accepted, result.events.duplicate) == (N + 1, N, 1)
    parts = sorted((out / "events").glob("part-*.parquet"))
    assert parts and parts[0].name == "part-00000.parquet"
    assert pq.read_schema(parts[0]) == contract.EVENTS
    assert pq.ParquetFile(parts[0]).metadata.row_group(0).column(0).compression == "ZSTD"
    assert pq.read_table(out / "events").num_rows == N
    assert pq.read_schema(out / "accounts.parquet").names == [
        f.name for f in contract.ACCOUNTS if f.name != "email"
    ]
    assert pq.read_table(out / "releases.parquet").num_rows == 1
    assert pq.read_table(out / "ip_intel.parquet")["kind"].to_pylist() == ["datacenter"]
    summary = (out / "ingest.json").read_text()
    assert '"duplicate": 1' in summary and (out / "rejects.jsonl").exists()


def test_row_groups_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from distillguard.ingest import pipeline

    monkeypatch.setattr(pipeline, "ROW_GROUP_ROWS", 16)
    monkeypatch.setattr(pipeline, "ROWS_PER_PART", 32)
    events = write_parquet(tmp_path / "e.parquet", [event(i) for i in range(100)])
    run_ingest([events], out=tmp_path / "out", progress=False)
    parts = sorted((tmp_path / "out" / "events").glob("part-*.parquet"))
    assert len(parts) == 4
    for part in parts:
        meta = pq.ParquetFile(part).metadata
        assert all(meta.row_group(g).num_rows <= 16 for g in range(meta.num_row_groups))
    assert sum(pq.ParquetFile(p).metadata.num_rows for p in parts) == 100


def test_read_section_keeps_email_in_memory_only(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [account(i) for i in range(3)])
    table, counts = read_section("accounts", [path])
    assert counts.accepted == 3
    assert table.schema == contract.ACCOUNTS
    assert table["email"].to_pylist()[0] == "secret.person0@example.com"


def test_extra_columns_are_ignored(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "e.jsonl", [event(1, internal_score=0.3, tags=["a"])])
    table, counts = read_section("events", [path])
    assert counts.accepted == 1 and "internal_score" not in table.column_names


def test_mixed_formats_across_inputs(tmp_path: Path) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", [event(i) for i in range(5)])
    b = write_parquet(tmp_path / "b.parquet", [event(i) for i in range(5, 9)])
    table, counts = read_section("events", [a, b])
    assert counts.accepted == 9 and table.num_rows == 9
