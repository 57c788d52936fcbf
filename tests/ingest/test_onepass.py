"""The one-pass ingest: malformed JSON lines become rejects, duplicates are removed after the
pass (also across part files), and read = accepted + rejected + duplicate still holds."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from distillguard.errors import UserError
from distillguard.ingest import read_section, run_ingest
from tests.ingest.helpers import event, write_jsonl


def _rejects(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().split("\n") if x]


def _lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_malformed_lines_are_rejected_with_their_line_and_the_rest_ingested(
    tmp_path: Path,
) -> None:
    good = [json.dumps(event(i)).encode() for i in range(6)]
    lines = [
        good[0],
        b'{"request_id": "req-x", "prompt": "cut off',  # truncated object (line 2)
        good[1],
        b"[1, 2, 3]",  # JSON, but not an object (line 4)
        good[2],
        b'"just a string"',  # line 6
        good[3],
        b'{"request_id": "a"}{"request_id": "b"}',  # two documents on one line (line 8)
        good[4],
        b'{"request_id": "req-u", "prompt": "\xff\xfe"}',  # not UTF-8 (line 10)
        b"{}",  # valid JSON without fields: missing_field, not malformed (line 11)
        good[5],
    ]
    path = _lines(tmp_path / "e.jsonl", lines)
    rejects = tmp_path / "r.jsonl"
    table, counts = read_section("events", [path], rejects_path=rejects)
    assert (counts.read, counts.accepted, counts.rejected, counts.duplicate) == (12, 6, 6, 0)
    assert counts.read == counts.accepted + counts.rejected + counts.duplicate
    assert counts.by_reason == {"malformed_json": 5, "missing_field": 1}
    assert counts.by_field == {"malformed_json": 5, "missing_field:request_id": 1}
    assert sorted(table["request_id"].to_pylist()) == [f"req-{i}" for i in range(6)]
    got = [(r["file"], r["line"], r["row"], r["reason"], r["field"]) for r in _rejects(rejects)]
    assert got == [
        (str(path), 2, 1, "malformed_json", None),
        (str(path), 4, 3, "malformed_json", None),
        (str(path), 6, 5, "malformed_json", None),
        (str(path), 8, 7, "malformed_json", None),
        (str(path), 10, 9, "malformed_json", None),
        (str(path), 11, 10, "missing_field", "request_id"),
    ]


def test_a_file_without_any_json_object_is_an_error(tmp_path: Path) -> None:
    path = _lines(tmp_path / "e.jsonl", [b"not json", b"[1]", b"{broken"])
    with pytest.raises(UserError, match="no line is a JSON object"):
        read_section("events", [path])


def test_malformed_line_in_a_compressed_file_and_in_ingest_output(tmp_path: Path) -> None:
    records = [event(i) for i in range(5)]
    path = write_jsonl(tmp_path / "e.jsonl.gz", records)
    raw = tmp_path / "plain.jsonl"
    _lines(raw, [json.dumps(event(10)).encode(), b"{oops", json.dumps(event(11)).encode()])
    result = run_ingest([path, raw], out=tmp_path / "out", progress=False)
    c = result.events
    assert (c.read, c.accepted, c.rejected) == (8, 7, 1)
    [reject] = _rejects(tmp_path / "out" / "rejects.jsonl")
    assert (reject["file"], reject["line"], reject["reason"]) == (str(raw), 2, "malformed_json")
    summary = json.loads((tmp_path / "out" / "ingest.json").read_text())
    assert summary["sections"]["events"]["by_reason"] == {"malformed_json": 1}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (12.0, 12),  # integral double
        (1e3, 1000),
        (-0, 0),
        (1.5, None),
        (99999999999999999999, None),  # out of range
        ("12", None),  # a string is not a number
        (True, None),
        ({"n": 1}, None),
    ],
)
def test_json_integer_typing(tmp_path: Path, value: object, expected: int | None) -> None:
    path = write_jsonl(tmp_path / "e.jsonl", [event(1, max_tokens=value)])
    table, counts = read_section("events", [path])
    if expected is None:
        assert counts.by_field == {"wrong_type:max_tokens": 1}
    else:
        assert table["max_tokens"].to_pylist() == [expected]


def test_json_timestamps_integer_ms_or_rfc3339_only(tmp_path: Path) -> None:
    records = [
        event(1, timestamp=1767225600123),
        event(2, timestamp="2026-01-01T00:00:00.123+00:00"),
        event(3, timestamp=1767225600123.0),  # a double is not epoch milliseconds
    ]
    table, counts = read_section("events", [write_jsonl(tmp_path / "e.jsonl", records)])
    assert counts.by_field == {"bad_timestamp:timestamp": 1}
    stamps = {t.timestamp() for t in table["timestamp"].to_pylist()}
    assert stamps == {1767225600.123}


def test_duplicates_across_part_files_keep_the_first_valid_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from distillguard.ingest import pipeline

    monkeypatch.setattr(pipeline, "ROW_GROUP_ROWS", 8)
    monkeypatch.setattr(pipeline, "ROWS_PER_PART", 16)
    records = [event(i, prompt=f"first {i}") for i in range(40)]
    records += [event(i, prompt=f"again {i}") for i in range(0, 40, 3)]  # 14 later copies
    records.insert(5, event(7, prompt="invalid", input_tokens=-1))  # rejected, not a copy
    path = write_jsonl(tmp_path / "e.jsonl", records)
    result = run_ingest([path], out=tmp_path / "out", progress=False)
    c = result.events
    assert (c.read, c.accepted, c.rejected, c.duplicate) == (55, 40, 1, 14)
    parts = sorted((tmp_path / "out" / "events").glob("part-*.parquet"))
    assert len(parts) == 4  # 54 rows were written in parts of 16, then 14 removed
    table = pq.read_table(parts)
    assert table.num_rows == 40
    assert table["request_id"].to_pylist() == [f"req-{i}" for i in range(40)]  # input order
    assert table["prompt"].to_pylist() == [f"first {i}" for i in range(40)]


def test_validate_only_counts_duplicates_and_malformed(tmp_path: Path) -> None:
    from distillguard.ingest.pipeline import validate_paths

    lines = [json.dumps(event(1)).encode(), json.dumps(event(1)).encode(), b"{", b"{}"]
    path = _lines(tmp_path / "e.jsonl", lines)
    counts, _ = validate_paths([path], progress=False)
    assert (counts.read, counts.accepted, counts.rejected, counts.duplicate) == (4, 1, 2, 1)
    assert counts.by_reason == {"malformed_json": 1, "missing_field": 1}


def test_adapter_files_reject_malformed_lines_at_their_line(tmp_path: Path) -> None:
    from tests.ingest.test_adapters import genai_span, litellm_record, otlp_payload

    litellm = tmp_path / "litellm.jsonl"
    litellm.write_text(
        json.dumps(litellm_record(1)) + "\n{not json\n[1]\n" + json.dumps(litellm_record(2)) + "\n"
    )
    result = run_ingest([litellm], out=tmp_path / "a", progress=False, input_format="litellm")
    assert (result.events.read, result.events.accepted, result.events.rejected) == (4, 2, 2)
    got = [(r["line"], r["reason"]) for r in _rejects(tmp_path / "a" / "rejects.jsonl")]
    assert got == [(2, "malformed_json"), (3, "malformed_json")]

    traces = tmp_path / "traces.jsonl"
    first = json.dumps(otlp_payload([genai_span(1), genai_span(2)]))
    traces.write_text(first + '\n{"resourceSpans": [\n' + json.dumps(otlp_payload([genai_span(3)])))
    result = run_ingest([traces], out=tmp_path / "o", progress=False, input_format="otel")
    assert (result.events.read, result.events.accepted, result.events.rejected) == (4, 3, 1)
    [reject] = _rejects(tmp_path / "o" / "rejects.jsonl")
    assert (reject["file"], reject["line"], reject["reason"]) == (str(traces), 2, "malformed_json")


def test_adapter_file_of_only_malformed_lines_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "litellm.jsonl"
    path.write_text("{nope\n{nope either\n")
    with pytest.raises(UserError, match="no line is a JSON object"):
        run_ingest([path], out=tmp_path / "out", progress=False, input_format="litellm")


def test_duplicate_accounts_are_removed_from_the_single_output_file(tmp_path: Path) -> None:
    from tests.ingest.helpers import account

    events = write_jsonl(tmp_path / "e.jsonl", [event(1)])
    accounts = write_jsonl(
        tmp_path / "a.jsonl", [account(1), account(2), account(1, tier="team"), account(3)]
    )
    result = run_ingest([events], [accounts], out=tmp_path / "out", progress=False)
    c = result.sections["accounts"]
    assert (c.read, c.accepted, c.duplicate) == (4, 3, 1)
    table = pq.read_table(tmp_path / "out" / "accounts.parquet")
    assert table["account_id"].to_pylist() == ["acct-1", "acct-2", "acct-3"]
    assert table["tier"].to_pylist() == ["pro", "pro", "pro"]  # the first copy, not "team"
    assert "email" not in table.column_names
