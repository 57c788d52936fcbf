"""`distillguard validate` / `ingest`: exit codes and one clean error line for malformed input."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.cli_runner import run_cli
from tests.ingest.helpers import event, write_jsonl

DATA = Path(__file__).parents[2] / "src" / "distillguard" / "data"


def _truncated_gzip(d: Path) -> Path:
    data = gzip.compress(b"".join(json.dumps(event(i)).encode() + b"\n" for i in range(200)))
    (d / "t.jsonl.gz").write_bytes(data[: len(data) // 2])
    return d / "t.jsonl.gz"


def _truncated_csv_gzip(d: Path) -> Path:
    header = b"request_id,account_id,timestamp,model,prompt\n"
    rows = b"".join(
        f"r{i},a{i % 7},2026-01-01T00:00:{i % 60:02d}Z,m1,prompt number {i}\n".encode()
        for i in range(5000)
    )
    data = gzip.compress(header + rows)
    (d / "t.csv.gz").write_bytes(data[: len(data) // 2])
    return d / "t.csv.gz"


def _garbage(d: Path) -> Path:
    (d / "g.jsonl").write_bytes(os.urandom(3000))
    return d / "g.jsonl"


def _garbage_parquet(d: Path) -> Path:
    (d / "g.parquet").write_bytes(b"PAR1" + os.urandom(3000))
    return d / "g.parquet"


def _wrong_types(d: Path) -> Path:
    table = pa.table(
        {
            "request_id": ["a"],
            "timestamp": [True],
            "account_id": ["x"],
            "client_ip": ["1.1.1.1"],
            "model": ["m"],
            "prompt": ["p"],
            "input_tokens": [[1]],
            "output_tokens": [1],
        }
    )
    pq.write_table(table, d / "w.parquet")
    return d / "w.parquet"


def _empty(d: Path) -> Path:
    (d / "e.jsonl").write_bytes(b"")
    return d / "e.jsonl"


def _header_only(d: Path) -> Path:
    (d / "h.csv").write_text("request_id,timestamp,account_id\n")
    return d / "h.csv"


def _long_line(d: Path) -> Path:
    (d / "l.jsonl").write_text("x" * 10_000_000 + "\n")
    return d / "l.jsonl"


def _mixed_dir(d: Path) -> Path:
    (d / "mixed").mkdir()
    write_jsonl(d / "mixed" / "a.jsonl", [event(1)])
    (d / "mixed" / "b.csv").write_text("request_id\nx\n")
    return d / "mixed"


def _missing(d: Path) -> Path:
    return d / "does-not-exist.jsonl"


def _unknown_extension(d: Path) -> Path:
    (d / "x.txt").write_text("hello")
    return d / "x.txt"


MALFORMED = [
    _truncated_gzip,
    _truncated_csv_gzip,
    _garbage,
    _garbage_parquet,
    _wrong_types,
    _empty,
    _header_only,
    _long_line,
    _mixed_dir,
    _missing,
    _unknown_extension,
]


@pytest.mark.parametrize("make", MALFORMED, ids=lambda f: f.__name__.strip("_"))
@pytest.mark.parametrize("command", ["validate", "ingest"])
def test_malformed_input_is_one_line_and_exit_2(
    tmp_path: Path, make, command: str, monkeypatch, capsys
) -> None:
    path = make(tmp_path)
    args = (
        ["validate", "--quiet", str(path)]
        if command == "validate"
        else ["ingest", "--quiet", "--events", str(path), "--out", str(tmp_path / "out")]
    )
    code, _, err = run_cli(args, monkeypatch, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "Traceback" not in err


def test_validate_example_and_strict(monkeypatch, capsys) -> None:
    code, out, _ = run_cli(
        ["validate", "--quiet", str(DATA / "example-events.jsonl")], monkeypatch, capsys
    )
    assert code == 0 and "bad_ip" in out
    code, _, err = run_cli(
        ["validate", "--quiet", "--strict", str(DATA / "example-events.jsonl")], monkeypatch, capsys
    )
    assert code == 2 and "rejected" in err


def test_validate_clean_accounts_strict_passes(monkeypatch, capsys) -> None:
    args = [
        "validate",
        "--quiet",
        "--strict",
        "--kind",
        "accounts",
        str(DATA / "example-accounts.csv"),
    ]
    code, out, _ = run_cli(args, monkeypatch, capsys)
    assert code == 0 and "accounts" in out


def test_bad_option_values_exit_2(tmp_path: Path, monkeypatch, capsys) -> None:
    code, _, err = run_cli(
        ["validate", "--kind", "users", str(DATA / "example-accounts.csv")], monkeypatch, capsys
    )
    assert code == 2 and err.count("\n") == 1


def test_ingest_example_through_the_installed_entry_point(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "distillguard",
            "ingest",
            "--events",
            str(DATA / "example-events.jsonl"),
            "--accounts",
            str(DATA / "example-accounts.csv"),
            "--releases",
            str(DATA / "example-releases.csv"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "ingest.json").read_text())
    ev = summary["sections"]["events"]
    assert ev["read"] == ev["accepted"] + ev["rejected"] + ev["duplicate"] and ev["rejected"] > 0
    # The e-mail address must not reach any output file.
    for path in out.rglob("*"):
        if not path.is_file():
            continue
        if path.suffix == ".parquet":  # compressed: compare decoded values
            table = pq.read_table(path)
            assert "email" not in table.column_names
            text = str(table.to_pylist()).encode()
        else:
            text = path.read_bytes()
        assert b"qz8xk01@" not in text and b"alice@example.org" not in text


@pytest.mark.parametrize("command", ["validate", "ingest"])
def test_help(command: str, monkeypatch, capsys) -> None:
    code, out, _ = run_cli([command, "--help"], monkeypatch, capsys)
    assert code == 0 and "--format" in out
