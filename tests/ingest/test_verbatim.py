"""The verbatim path (already-normalised Parquet events are copied) gives exactly what the
rewrite path gives, and anything that validation would reject or normalise takes the rewrite."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distillguard import contract
from distillguard.ingest import read_section, run_ingest, validate_table
from distillguard.ingest.pipeline import duck_session, validate_paths
from distillguard.ingest.sections import get_section
from distillguard.ingest.sources import resolve_inputs
from distillguard.ingest.verbatim import verbatim_rows
from tests.ingest.helpers import event


def _normalised(n: int, start: int = 0) -> pa.Table:
    """n valid events in the contract schema and normal form (as ingest writes them), with
    some IPv6 clients and a few NULL optional fields."""
    records = []
    for i in range(start, start + n):
        over: dict[str, Any] = {}
        if i % 5 == 0:
            over["client_ip"] = f"2001:db8::{i:x}"
        if i % 4 == 0:
            over["system"] = None
        records.append(event(i, **over))
    table, rejects = validate_table("events", pa.Table.from_pylist(records))
    assert not rejects
    return table


def _write(path: Path, table: pa.Table, **kwargs: Any) -> Path:
    pq.write_table(table, path, **kwargs)
    return path


def _ingest(tmp: Path, name: str, inputs: list[Path], rewrite: bool, mp: pytest.MonkeyPatch):
    with mp.context() as m:
        if rewrite:
            m.setenv("DISTILLGUARD_INGEST_REWRITE", "1")
        else:
            m.delenv("DISTILLGUARD_INGEST_REWRITE", raising=False)
        out = tmp / name
        run_ingest(events=inputs, out=out, progress=False)
    summary = json.loads((out / "ingest.json").read_text())
    counts = {k: v for k, v in summary["sections"]["events"].items() if k != "seconds"}
    return out, pq.read_table(out / "events"), counts, (out / "rejects.jsonl").read_text()


def _is_verbatim(out: Path, inputs: list[Path]) -> bool:
    parts = sorted((out / "events").glob("*.parquet"))
    return len(parts) == len(inputs) and all(
        p.read_bytes() == i.read_bytes() for p, i in zip(parts, inputs, strict=True)
    )


def test_normalised_parquet_is_copied_and_equals_the_rewrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs = [
        _write(tmp_path / "a.parquet", _normalised(300), row_group_size=64),
        _write(tmp_path / "b.parquet", _normalised(200, start=300), compression="snappy"),
    ]
    fast, fast_rows, fast_counts, fast_rejects = _ingest(tmp_path, "f", inputs, False, monkeypatch)
    slow, slow_rows, slow_counts, slow_rejects = _ingest(tmp_path, "s", inputs, True, monkeypatch)
    assert _is_verbatim(fast, inputs) and not _is_verbatim(slow, inputs)
    assert fast_rows.schema == slow_rows.schema == contract.EVENTS
    assert fast_rows.equals(slow_rows)
    assert fast_rows.num_rows == 500
    assert fast_counts == slow_counts
    assert (fast_counts["read"], fast_counts["accepted"], fast_counts["rejected"]) == (500, 500, 0)
    assert fast_counts["inputs"] == [{"path": str(p), "format": "parquet"} for p in inputs]
    assert fast_rejects == slow_rejects == ""
    # `validate` takes the same shortcut and reports the same counts.
    counts, _ = validate_paths(inputs, progress=False)
    assert (counts.read, counts.accepted, counts.rejected, counts.duplicate) == (500, 500, 0, 0)


def _set(table: pa.Table, row: int, name: str, value: Any) -> pa.Table:
    values = table[name].to_pylist()
    values[row] = value
    i = table.schema.get_field_index(name)
    field = table.schema.field(i).with_nullable(True)  # required fields are declared not null
    return table.set_column(i, field, pa.array(values, field.type))


# Each breaks "already what ingest writes" in one way; the rewrite path must handle it.
DIRTY = {
    "duplicate request_id": lambda t: _set(t, 7, "request_id", "req-3"),
    "status NULL (default ok)": lambda t: _set(t, 4, "status", None),
    "status upper case": lambda t: _set(t, 4, "status", "OK"),
    "status unknown": lambda t: _set(t, 4, "status", "maybe"),
    "IPv6 not canonical": lambda t: _set(t, 2, "client_ip", "2001:DB8:0::1"),
    "IPv4 padded": lambda t: _set(t, 2, "client_ip", " 10.0.0.1"),
    "IPv4 leading zero": lambda t: _set(t, 2, "client_ip", "10.0.0.01"),
    "IP missing": lambda t: _set(t, 2, "client_ip", None),
    "IP empty": lambda t: _set(t, 2, "client_ip", ""),
    "negative tokens": lambda t: _set(t, 9, "output_tokens", -1),
    "tokens missing": lambda t: _set(t, 9, "input_tokens", None),
    "account blank": lambda t: _set(t, 1, "account_id", "   "),
    "request_id empty": lambda t: _set(t, 1, "request_id", ""),
    "model missing": lambda t: _set(t, 1, "model", None),
    "prompt missing": lambda t: _set(t, 1, "prompt", None),
    "timestamp missing": lambda t: _set(t, 1, "timestamp", None),
    "extra column": lambda t: t.append_column("extra", pa.array(["x"] * t.num_rows)),
    "timestamp as epoch ms": lambda t: t.set_column(
        1, "timestamp", t["timestamp"].cast(pa.int64())
    ),
    "turn as int64": lambda t: t.set_column(
        t.schema.get_field_index("turn"), "turn", t["turn"].cast(pa.int64())
    ),
    "columns reordered": lambda t: t.select(list(reversed(t.column_names))),
    "column missing": lambda t: t.drop_columns(["images"]),
}


def test_anything_to_reject_or_normalise_is_not_taken_verbatim(tmp_path: Path) -> None:
    section = get_section("events")
    with duck_session() as con:
        for i, kind in enumerate(sorted(DIRTY)):
            path = _write(tmp_path / f"e{i}.parquet", DIRTY[kind](_normalised(20)))
            assert verbatim_rows(con, section, resolve_inputs([path])) is None, kind


def test_run_ingest_falls_back_to_the_rewrite_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = DIRTY["status NULL (default ok)"](DIRTY["duplicate request_id"](_normalised(20)))
    inputs = [_write(tmp_path / "e.parquet", table)]
    fast, fast_rows, fast_counts, fast_rejects = _ingest(tmp_path, "f", inputs, False, monkeypatch)
    _, slow_rows, slow_counts, slow_rejects = _ingest(tmp_path, "s", inputs, True, monkeypatch)
    assert not _is_verbatim(fast, inputs)
    assert fast_rows.equals(slow_rows) and fast_counts == slow_counts
    assert (fast_counts["read"], fast_counts["accepted"], fast_counts["duplicate"]) == (20, 19, 1)
    assert fast_rows["status"].to_pylist() == ["ok"] * 19
    assert fast_rejects == slow_rejects


def test_a_duplicate_across_files_takes_the_rewrite_path(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.parquet", _normalised(10))
    b = _write(tmp_path / "b.parquet", _normalised(10, start=9))  # req-9 in both
    with duck_session() as con:
        sources = resolve_inputs([a, b])
        assert verbatim_rows(con, get_section("events"), sources) is None
        assert verbatim_rows(con, get_section("events"), sources[:1]) == 10


def test_verbatim_only_when_the_rewrite_changes_nothing(tmp_path: Path) -> None:
    """Random files, some clean, some with one random defect: whenever the verbatim check
    passes, the rewrite path accepts every row unchanged; a clean file always passes."""
    rng = random.Random(7)
    section = get_section("events")
    for trial in range(12):
        table = _normalised(rng.randint(5, 40), start=rng.randint(0, 1000))
        kind = rng.choice([None, None, *sorted(DIRTY)])
        if kind is not None and table.num_rows > 9:
            table = DIRTY[kind](table)
        else:
            kind = None
        path = _write(tmp_path / f"t{trial}.parquet", table)
        with duck_session() as con:
            rows = verbatim_rows(con, section, resolve_inputs([path]))
        rewritten, counts = read_section("events", [path])
        unchanged = (
            counts.rejected == counts.duplicate == 0
            and table.schema == contract.EVENTS
            and rewritten.equals(table)
        )
        assert (rows is not None) == unchanged, kind
        assert (rows is not None) == (kind is None), kind
