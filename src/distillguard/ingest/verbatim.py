"""The verbatim path: Parquet events that are already normalised are copied, not re-encoded.

Rewriting every accepted row (decode every column, validate, export to Arrow, encode zstd
Parquet again) costs 15-17x a bare scan of the input. When an input already is what ingest
would write, that work changes nothing, so it is skipped. "Already is" means all of:

1. every file is Parquet whose columns are exactly the contract's (names, order, Arrow types;
   as DuckDB reads them too), so no cast, extra or missing column could change a value;
2. no record would be rejected and every value is in normal form (checked by read-only
   queries whose Parquet filters DuckDB answers from row-group statistics where it can):
   required fields present, counts >= 0, enums already lower-case in the vocabulary (and not
   NULL where a default would fill them in), addresses in canonical text;
3. no `request_id` repeats (64-bit hashes all distinct; a hash collision only sends the input
   down the rewrite path, which is exact).

Then every input file is copied (kernel `copy_file_range`, not a hard link: rewriting the input
in place later must not change the dataset) to `events/part-NNNNN.parquet` in input order. The
counts are those the rewrite path gives for such an input: read = accepted, nothing rejected
or duplicate. Anything else takes the rewrite path, unchanged. The two paths give the same rows
(tests/ingest/test_verbatim.py).
"""

from __future__ import annotations

import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from distillguard.errors import UserError
from distillguard.ingest import ipintel
from distillguard.ingest.sections import Section
from distillguard.ingest.sources import SourceFile, describe, sql_ident, sql_str
from distillguard.ingest.validate import _EMPTY_IS_MISSING, _IPV4_RE, address_rule

# The DuckDB type each contract Arrow type reads as; anything else means a cast would happen.
_DUCK_TYPES = {
    pa.string(): "VARCHAR",
    pa.int64(): "BIGINT",
    pa.int32(): "INTEGER",
    pa.float64(): "DOUBLE",
    pa.timestamp("ms", tz="UTC"): "TIMESTAMP WITH TIME ZONE",
}


def _has_contract_schema(
    con: duckdb.DuckDBPyConnection, source: SourceFile, section: Section
) -> bool:
    """The file's columns are exactly the section's output schema, for pyarrow and DuckDB."""
    try:
        schema = pq.read_schema(source.path)
        rows = pq.ParquetFile(source.path).metadata.num_rows
    except (OSError, pa.ArrowException):
        return False  # the rewrite path reports unreadable files
    want = section.output_schema
    if rows == 0 or [(f.name, f.type) for f in schema] != [(f.name, f.type) for f in want]:
        return False
    try:
        duck = describe(con, f"read_parquet({sql_str(str(source.path))})", source.display)
    except UserError:
        return False  # the rewrite path reports it
    return list(duck.items()) == [(f.name, _DUCK_TYPES.get(f.type)) for f in want]


def _non_blank(col: str) -> str:
    # Same as the validator's `trim(col) <> ''`; a printable first character settles it
    # without trimming (DuckDB evaluates the OR only where the first test fails).
    return f"({col} <> '' AND (left({col}, 1) BETWEEN '!' AND '~' OR trim({col}) <> ''))"


def clean_predicate(section: Section) -> str:
    """SQL true for a record that validation accepts unchanged (address fields aside: their
    canonical form is checked by `_addresses_canonical`). Only fields that could be rejected
    or normalised appear: with the contract's types, other values pass as they are."""
    terms = []
    for rule in section.rules:
        col = sql_ident(rule.name)
        if rule.required:
            terms.append(f"{col} IS NOT NULL")
            if rule.kind in ("string", "ip", "cidr", "enum") and rule.name in _EMPTY_IS_MISSING:
                terms.append(_non_blank(col))
        if rule.non_negative:
            terms.append(f"({col} IS NULL OR {col} >= 0)")
        if rule.kind == "enum":
            allowed = ", ".join(sql_str(a) for a in rule.allowed)
            # A NULL would become the default: not verbatim.
            nullable = "" if rule.default or rule.required else f"{col} IS NULL OR "
            terms.append(f"({nullable}{col} IN ({allowed}))")
        if rule.kind == "cidr":
            terms.append("false")  # CIDRs are always normalised in Python: never verbatim
    return " AND ".join(terms) or "true"


def _addresses_canonical(con: duckdb.DuckDBPyConnection, section: Section, reader: str) -> bool:
    """Every address is dotted-quad IPv4 as the validator's regular expression takes it, or its
    canonical text as ingest would store it (parsed once per distinct string)."""
    rule = address_rule(section)
    if rule is None:
        return True
    col = sql_ident(rule.name)
    # MATERIALIZED: the regular expression runs on the distinct strings, not pushed below
    # DISTINCT onto every row.
    distinct = f"SELECT DISTINCT {col} AS a FROM {reader} WHERE {col} IS NOT NULL"
    others = con.sql(
        f"WITH d AS MATERIALIZED ({distinct}) "
        f"SELECT a FROM d WHERE NOT regexp_full_match(a, {_IPV4_RE})"
    ).to_arrow_table()["a"]
    if len(others) == 0:
        return True
    raw = others.combine_chunks()
    norm = ipintel.validity_map(raw, cidr=rule.kind == "cidr")
    # Only strings whose canonical form is themselves pass (invalid ones have no row here).
    return len(norm) == len(raw) and bool(pc.all(pc.equal(norm["raw"], norm["norm"])).as_py())


# Up to this many records the key hashes are sorted in memory (8 bytes a record, about 2.5x
# less CPU than DuckDB's hash aggregate); beyond, DuckDB counts them (and may spill).
SORT_KEYS_UP_TO = 64_000_000


def _keys_distinct(con: duckdb.DuckDBPyConnection, key: str, reader: str, total: int) -> bool:
    """True when no two records have the same 64-bit hash of `key` (so no duplicate key)."""
    hashed = f"SELECT hash({sql_ident(key)}) AS h FROM {reader}"
    if total > SORT_KEYS_UP_TO:
        distinct = con.execute(f"SELECT count(DISTINCT h) FROM ({hashed})").fetchall()[0][0]
        return int(distinct) == total
    h = con.sql(hashed).fetchnumpy()["h"]
    h.sort()
    return len(h) == total and not bool(np.any(h[1:] == h[:-1]))


def verbatim_rows(
    con: duckdb.DuckDBPyConnection, section: Section, sources: list[SourceFile]
) -> int | None:
    """The number of records when the inputs can be taken verbatim, else None."""
    if section.name != "events" or not sources:
        return None
    if any(s.format != "parquet" or s.has_provenance for s in sources):
        return None
    if not all(_has_contract_schema(con, s, section) for s in sources):
        return None
    files = "[" + ", ".join(sql_str(str(s.path)) for s in sources) + "]"
    reader = f"read_parquet({files})"
    try:
        total = int(con.execute(f"SELECT count(*) FROM {reader}").fetchall()[0][0])
        # A WHERE clause, not an aggregate FILTER: DuckDB prunes row groups by statistics.
        # IS NOT TRUE: a NULL comparison (e.g. a NULL status) counts as unclean.
        unclean = f"SELECT count(*) FROM {reader} WHERE ({clean_predicate(section)}) IS NOT TRUE"
        if con.execute(unclean).fetchall()[0][0]:
            return None
        # Keys on a second cursor while this one checks addresses: the sort and the address
        # parsing in Python overlap with DuckDB's scans.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="verbatim-keys") as pool:
            keys = pool.submit(_keys_distinct, con.cursor(), section.key, reader, total)
            canonical = _addresses_canonical(con, section, reader)
            distinct = keys.result()
    except duckdb.Error:
        return None  # e.g. invalid UTF-8: the rewrite path reports it
    # A repeated hash is a duplicate or a collision: the rewrite path decides either way.
    return total if canonical and distinct else None


def copy_file(src: Path, dst: Path) -> None:
    """Copy in the kernel (no user-space buffers; a reflink where the file system has them)."""
    try:
        with src.open("rb") as fin, dst.open("wb") as fout:
            size, done = os.fstat(fin.fileno()).st_size, 0
            while done < size:
                n = os.copy_file_range(fin.fileno(), fout.fileno(), size - done)
                if n == 0:
                    break
                done += n
        if done == size:
            return
    except OSError:
        pass  # e.g. across file systems on old kernels
    shutil.copyfile(src, dst)


def copy_verbatim(sources: list[SourceFile], directory: Path) -> None:
    """The inputs as `part-NNNNN.parquet`, in input order (the order readers glob them in)."""
    for i, source in enumerate(sources):
        copy_file(source.path, directory / f"part-{i:05d}.parquet")


def try_verbatim(
    con: duckdb.DuckDBPyConnection,
    section: Section,
    sources: list[SourceFile],
    directory: Path | None,
) -> tuple[int, float] | None:
    """(records, seconds) when the inputs were taken verbatim (copied into `directory` unless it
    is None, as for `validate`), else None and nothing written."""
    started = time.perf_counter()
    rows = verbatim_rows(con, section, sources)
    if rows is None:
        return None
    if directory is not None:
        copy_verbatim(sources, directory)
    return rows, time.perf_counter() - started
