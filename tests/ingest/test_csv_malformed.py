"""A malformed CSV row (wrong number of cells, unterminated quote) is one `malformed_csv` reject
at its line; the rest of the file is ingested and the counts still add up."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from distillguard.errors import UserError
from distillguard.ingest import read_section, run_ingest
from tests.ingest.helpers import event

FIELDS = list(event(0))


def _row(record: dict[str, Any]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow([record.get(f, "") for f in FIELDS])
    return out.getvalue().rstrip("\n")


def _csv(path: Path, rows: list[str]) -> Path:
    text = ",".join(FIELDS) + "\n" + "\n".join(rows) + "\n"
    path.write_bytes(gzip.compress(text.encode()) if path.name.endswith(".gz") else text.encode())
    return path


def _rejects(path: Path) -> list[tuple[Any, ...]]:
    lines = [json.loads(x) for x in path.read_text().split("\n") if x]
    return [(r["file"], r["line"], r["row"], r["reason"], r["field"]) for r in lines]


def test_malformed_rows_are_rejects_at_their_line_and_the_rest_is_ingested(
    tmp_path: Path,
) -> None:
    rows = [
        _row(event(0)),  # line 2
        _row(event(1)) + ",surplus",  # line 3: one cell too many
        _row(event(2, input_tokens="ten")),  # line 4: wrong_type, after a malformed row
        _row(event(3)),  # line 5
        "req-4,2026-02-03T04:05:06Z",  # line 6: too few cells
        _row(event(5)) + ",a,b",  # line 7: malformed again
        _row(event(6, client_ip="localhost")),  # line 8: bad_ip, two malformed rows before
        _row(event(0)),  # line 9: a duplicate of line 2
        _row(event(9)),  # line 10
    ]
    path = _csv(tmp_path / "e.csv", rows)
    rejects = tmp_path / "r.jsonl"
    table, counts = read_section("events", [path], rejects_path=rejects)
    assert (counts.read, counts.accepted, counts.rejected, counts.duplicate) == (9, 3, 5, 1)
    assert counts.read == counts.accepted + counts.rejected + counts.duplicate
    assert counts.by_reason == {"malformed_csv": 3, "wrong_type": 1, "bad_ip": 1}
    assert counts.by_field["malformed_csv"] == 3
    assert table["request_id"].to_pylist() == ["req-0", "req-3", "req-9"]
    assert _rejects(rejects) == [
        (str(path), 3, 1, "malformed_csv", None),
        (str(path), 4, 2, "wrong_type", "input_tokens"),
        (str(path), 6, 4, "malformed_csv", None),
        (str(path), 7, 5, "malformed_csv", None),
        (str(path), 8, 6, "bad_ip", "client_ip"),
    ]
    record = [json.loads(x) for x in rejects.read_text().split("\n") if x]
    assert record[0]["record"] is None and record[1]["record"]["input_tokens"] == "ten"


def test_an_unterminated_quote_the_sniffer_sees_is_one_reject(tmp_path: Path) -> None:
    """DuckDB's dialect sniffer gives up on such a file; the header is then read in Python.
    The open quote runs to the end of the file, so everything after it is that one record."""
    rows = [_row(event(i)) for i in range(3)] + ['req-x,"unterminated'] + [_row(event(7))]
    path = _csv(tmp_path / "e.csv.gz", rows)
    rejects = tmp_path / "r.jsonl"
    table, counts = read_section("events", [path], rejects_path=rejects)
    assert (counts.read, counts.accepted, counts.rejected) == (4, 3, 1)
    assert table["request_id"].to_pylist() == ["req-0", "req-1", "req-2"]
    assert _rejects(rejects) == [(str(path), 5, 3, "malformed_csv", None)]


def test_malformed_rows_in_ingest_output_across_files(tmp_path: Path) -> None:
    a = _csv(tmp_path / "a.csv", [_row(event(i)) for i in range(3)])
    b = _csv(tmp_path / "b.csv", [_row(event(10)), "x,y", _row(event(11, output_tokens="-1"))])
    out = tmp_path / "out"
    result = run_ingest(events=[a, b], out=out, progress=False)
    c = result.events
    assert (c.read, c.accepted, c.rejected, c.duplicate) == (6, 4, 2, 0)
    assert _rejects(out / "rejects.jsonl") == [
        (str(b), 3, 1, "malformed_csv", None),
        (str(b), 4, 2, "negative_tokens", "output_tokens"),
    ]
    summary = json.loads((out / "ingest.json").read_text())["sections"]["events"]
    assert summary["by_reason"] == {"malformed_csv": 1, "negative_tokens": 1}
    written = pq.read_table(out / "events")["request_id"].to_pylist()
    assert written == ["req-0", "req-1", "req-2", "req-10"]


def test_a_csv_file_without_any_well_formed_row_is_an_error(tmp_path: Path) -> None:
    path = _csv(tmp_path / "e.csv", ["a,b", "c,d,e"])
    with pytest.raises(UserError, match="line 2 is malformed"):
        read_section("events", [path])
