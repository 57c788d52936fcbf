"""Choosing the events adapter (`--format`) and staging adapter output as Parquet.

`contract` inputs are read directly. `otel` and `litellm` files are mapped record by record to
string columns (with their original line/record numbers) in bounded chunks, staged as Parquet,
and then validated like any contract input, so rejects still point at the original file.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pyarrow.parquet as pq
import zstandard

from distillguard.errors import UserError
from distillguard.ingest import otel
from distillguard.ingest.litellm import litellm_record_to_event
from distillguard.ingest.sources import SourceFile, resolve_inputs

FORMATS = ("contract", "otel", "litellm")
CHUNK_RECORDS = 50_000
Reporter = Callable[[str, int, int | None], None]


def open_text(path: Path) -> IO[str]:
    """Open a possibly gzip/zstd-compressed text file."""
    name = path.name.lower()
    if name.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    if name.endswith(".zst"):
        reader = zstandard.ZstdDecompressor().stream_reader(path.open("rb"))
        return io.TextIOWrapper(io.BufferedReader(reader), encoding="utf-8")  # type: ignore[arg-type]
    return path.open("r", encoding="utf-8")


def _litellm_documents(path: Path) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """(line, record) per non-blank line; None for a line that is not a JSON object."""
    with open_text(path) as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            yield number, record if isinstance(record, dict) else None


def _stage_file(
    source: SourceFile, fmt: str, target: Path, stats: dict[str, int], report: Reporter
) -> SourceFile:
    writer = pq.ParquetWriter(target, otel.RAW_SCHEMA, compression="lz4")
    records: list[dict[str, str | None]] = []
    lines: list[int] = []
    rows: list[int] = []
    row = 0

    def flush() -> None:
        if records:
            writer.write_table(otel.records_to_table(records, lines, rows))
            records.clear(), lines.clear(), rows.clear()

    try:
        if fmt == "litellm":
            for number, record in _litellm_documents(source.path):
                records.append(
                    otel.MALFORMED if record is None else litellm_record_to_event(record)
                )
                lines.append(number)
                rows.append(row)
                row += 1
                if len(records) >= CHUNK_RECORDS:
                    flush()
                    report(f"mapping {fmt}", row, None)
        else:
            for number, payload in otel.read_otel_documents(source.path, open_text):
                if isinstance(payload, dict):
                    recs, ls, rs = otel.payload_records(payload, number, row, stats)
                else:  # a line that is not a JSON object: one malformed record
                    recs, ls, rs = [otel.MALFORMED], [number], [row]
                records += recs
                lines += ls
                rows += rs
                row += len(recs)
                if len(records) >= CHUNK_RECORDS:
                    flush()
                    report(f"mapping {fmt}", row, None)
        flush()
    except (OSError, EOFError, UnicodeDecodeError, zstandard.ZstdError) as exc:
        raise UserError(f"{source.path}: cannot read ({exc})") from None
    finally:
        writer.close()
    stats["records"] = stats.get("records", 0) + row
    return SourceFile(target, "parquet", display=str(source.path))


def stage_events(
    paths: list[Path], fmt: str, staging: Path, report: Reporter
) -> tuple[list[SourceFile], dict[str, object]]:
    """SourceFiles for the events inputs, staging adapter output when `fmt` is not `contract`."""
    if fmt not in FORMATS:
        raise UserError(f"unknown --format {fmt!r}; expected one of: {', '.join(FORMATS)}")
    if fmt == "contract":
        return resolve_inputs([Path(p) for p in paths]), {"format": "contract"}
    originals = _adapter_inputs(paths)
    staging.mkdir(parents=True, exist_ok=True)
    stats: dict[str, int] = {}
    staged = [
        _stage_file(src, fmt, staging / f"staged-{i:05d}.parquet", stats, report)
        for i, src in enumerate(originals)
    ]
    return staged, {"format": fmt, **stats}


def _adapter_inputs(paths: list[Path]) -> list[SourceFile]:
    """Adapter inputs are JSON files (.json/.jsonl, optionally .gz/.zst) or directories of them."""
    sources = resolve_inputs([Path(p) for p in paths])
    for s in sources:
        if s.format != "jsonl":
            raise UserError(
                f"{s.path}: the otel and litellm formats read JSON files (.json/.jsonl)"
            )
    return sources
