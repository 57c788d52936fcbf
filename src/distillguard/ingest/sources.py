"""Find input files, pick their format by extension and turn each into a DuckDB `FROM` clause.

Every input file becomes one SELECT with the same shape (see `validate.py`), so a run may mix
JSON Lines, CSV and Parquet. Directories are expanded to their files, which must share a format.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import zstandard

from distillguard.errors import UserError

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
COMPRESSIONS = {".gz": "gzip", ".zst": "zstd"}
# Lines up to this size are accepted; a larger single JSON record is a malformed file.
MAX_JSON_RECORD_BYTES = 64 * 1024 * 1024
# Columns an adapter adds to its staging Parquet so rejects point at the original input.
PROVENANCE_COLUMNS = ("_src_line", "_src_row")


@dataclass
class SourceFile:
    """One input file with its format (`jsonl`, `csv`, `parquet` or `arrow`)."""

    path: Path
    format: str
    compression: str | None = None
    display: str = ""  # the name rejects and reports use (the original file for adapters)
    arrow_view: str | None = None  # for `arrow`: the DuckDB view holding the table
    has_provenance: bool = False
    columns: dict[str, str] = field(default_factory=dict)  # name -> DuckDB type, when known
    csv_header: list[str] = field(default_factory=list)  # set when DuckDB cannot sniff the CSV

    def __post_init__(self) -> None:
        if not self.display:
            self.display = str(self.path)


def sql_str(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def sql_ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def detect_format(path: Path) -> tuple[str, str | None]:
    """(format, compression) from a file name, or a UserError for an unknown extension."""
    name = path.name.lower()
    compression = None
    for suffix, codec in COMPRESSIONS.items():
        if name.endswith(suffix):
            compression, name = codec, name[: -len(suffix)]
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl", compression
    if name.endswith(".csv"):
        return "csv", compression
    if name.endswith(".parquet") and compression is None:
        return "parquet", None
    raise UserError(
        f"{path}: unknown file type (expected .jsonl[.gz|.zst], .csv[.gz|.zst] or .parquet)"
    )


def _files_in_directory(directory: Path) -> list[Path]:
    files = sorted(
        p
        for p in directory.rglob("*")
        if p.is_file()
        and not any(part.startswith((".", "_")) for part in p.relative_to(directory).parts)
    )
    if not files:
        raise UserError(f"{directory}: directory has no input files")
    return files


def resolve_inputs(paths: list[Path]) -> list[SourceFile]:
    """Expand paths into SourceFiles, rejecting missing paths, empty files and mixed directories."""
    if not paths:
        raise UserError("no input files given")
    sources: list[SourceFile] = []
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise UserError(f"{path}: no such file or directory")
        if path.is_dir():
            files = _files_in_directory(path)
            formats = {detect_format(f)[0] for f in files}
            if len(formats) > 1:
                raise UserError(
                    f"{path}: directory mixes formats ({', '.join(sorted(formats))}); "
                    "give one format per directory"
                )
        else:
            files = [path]
        for f in files:
            fmt, compression = detect_format(f)
            if f.stat().st_size == 0:
                raise UserError(f"{f}: file is empty")
            sources.append(SourceFile(f, fmt, compression))
    return sources


def describe(con: duckdb.DuckDBPyConnection, from_clause: str, what: str) -> dict[str, str]:
    """Column name -> DuckDB type of a FROM clause, with read errors turned into a UserError."""
    try:
        rows = con.execute(f"DESCRIBE SELECT * FROM {from_clause}").fetchall()
    except duckdb.Error as exc:
        raise UserError(f"{what}: {one_line(exc)}") from None
    return {str(r[0]): str(r[1]) for r in rows}


def one_line(exc: BaseException) -> str:
    """A DuckDB (or other) error message squeezed onto one line, without the error-class prefix."""
    text = " ".join(str(exc).split()).split(" LINE 1:")[0]
    for prefix in ("Invalid Input Error: ", "IO Error: ", "Conversion Error: ", "Binder Error: "):
        text = text.replace(prefix, "")
    return text[:400]


def csv_rejects_table(fid: int) -> str:
    """The DuckDB table `read_csv(store_rejects=true)` fills with file `fid`'s malformed rows."""
    return f"_csv_rejects_{fid}"


def csv_reader(source: SourceFile, fid: int | None = None) -> str:
    """`read_csv` of one file. With `fid`, a row that does not fit the CSV dialect or the
    header (too many or too few cells, an unterminated quote, invalid UTF-8) is skipped and
    recorded in `csv_rejects_table(fid)` with its line instead of failing the file."""
    comp = f", compression={sql_str(source.compression)}" if source.compression else ""
    rejects = ""
    if fid is not None:
        rejects = (
            f", store_rejects=true, rejects_table={sql_str(csv_rejects_table(fid))}, "
            f"rejects_scan={sql_str(f'_csv_scans_{fid}')}"
        )
    if source.csv_header:  # the sniffer failed on a malformed row: the header read in Python
        cols = "{" + ", ".join(f"{sql_str(c)}: 'VARCHAR'" for c in source.csv_header) + "}"
        rejects += f", auto_detect=false, columns={cols}"
    # Explicit dialect: sniffing a delimiter on odd data would silently misread it.
    # allow_quoted_nulls=false keeps a quoted "" as an empty string (a redacted prompt),
    # while an unquoted empty cell is absent.
    return (
        f"read_csv({sql_str(str(source.path))}, header=true, all_varchar=true, delim=',', "
        f"quote='\"', escape='\"', allow_quoted_nulls=false, strict_mode=true{comp}{rejects})"
    )


def csv_header(source: SourceFile) -> list[str]:
    """Column names from the first CSV record, read in Python (for files whose malformed rows
    stop DuckDB's dialect sniffer); later copies of a name get `_1`, `_2`... as DuckDB does."""
    from distillguard.ingest.adapters import open_text

    try:
        with open_text(source.path) as fh:
            first = next(csv.reader(fh), None)
    except (OSError, UnicodeDecodeError, EOFError, csv.Error, zstandard.ZstdError) as exc:
        raise UserError(f"{source.display}: not a readable CSV file ({one_line(exc)})") from None
    if not first:
        raise UserError(f"{source.display}: no CSV header")
    names: list[str] = []
    for raw in first:
        name = raw.lstrip("\ufeff") if not names else raw
        base, n = name, 0
        while name in names:
            n += 1
            name = f"{base}_{n}"
        names.append(name)
    return names


def json_reader(source: SourceFile, columns: dict[str, str]) -> str:
    comp = f", compression={sql_str(source.compression)}" if source.compression else ""
    cols = "{" + ", ".join(f"{sql_str(k)}: {sql_str(v)}" for k, v in columns.items()) + "}"
    # ignore_errors: a malformed line becomes a row of NULLs in its place (blank lines aside,
    # one row per line), which the pipeline turns into a `malformed_json` reject.
    return (
        f"read_json({sql_str(str(source.path))}, format='newline_delimited', columns={cols}, "
        f"ignore_errors=true, maximum_object_size={MAX_JSON_RECORD_BYTES}{comp})"
    )


def json_values_reader(source: SourceFile) -> str:
    """Each non-blank line as one `json` value, NULL where the line is not JSON (same rows as
    `json_reader`): tells a malformed line from a record that merely has no contract field."""
    comp = f", compression={sql_str(source.compression)}" if source.compression else ""
    return (
        f"read_json({sql_str(str(source.path))}, format='newline_delimited', records='false', "
        f"ignore_errors=true, maximum_object_size={MAX_JSON_RECORD_BYTES}{comp})"
    )


def parquet_reader(source: SourceFile, row_numbers: bool) -> str:
    extra = ", file_row_number=true" if row_numbers else ""
    return f"read_parquet({sql_str(str(source.path))}{extra})"
