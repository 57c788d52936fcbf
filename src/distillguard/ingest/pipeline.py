"""The ingest passes: validate in DuckDB, deduplicate, write contract Parquet in bounded memory.

Per section (events, accounts, releases, ip_intel):
  A. one validating scan keeps a slim key table (`_fid, _ord, key, _why`) for counting and
     finding duplicate keys (DuckDB spills it to `temp_directory` when large). Canonical IPv4
     is checked by a regular expression in SQL; the distinct other address strings (IPv6,
     CIDRs, junk) are parsed once each in Python and joined back as `_addrmap`;
  C. only when something was rejected or duplicated: rejects go to JSON Lines straight from
     DuckDB, and the first valid copy of each duplicated key is kept aside;
  B. the streaming write: valid rows whose key is not duplicated, DuckDB -> Arrow record
     batches -> Parquet row groups; then the kept first copies.
So read = accepted + rejected + duplicate by construction, and no pass holds the input.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from distillguard.errors import UserError
from distillguard.ingest import ipintel
from distillguard.ingest.sections import Section, get_section
from distillguard.ingest.sources import (
    SourceFile,
    csv_rejects_table,
    json_values_reader,
    one_line,
    resolve_inputs,
    sql_str,
)
from distillguard.ingest.validate import address_rule, typed_select, validated_select
from distillguard.ingest.verbatim import try_verbatim

ROW_GROUP_ROWS = 128 * 1024
ROWS_PER_PART = 32 * ROW_GROUP_ROWS  # ~4M events per part file
DEFAULT_MEMORY_LIMIT = os.environ.get("DISTILLGUARD_MEMORY_LIMIT", "2GB")

Progress = Callable[[str, int, int | None], None]  # (stage, done, total)


@dataclass
class SectionCounts:
    """What happened to the records of one section."""

    read: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicate: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    by_field: dict[str, int] = field(default_factory=dict)  # "reason:field" -> count
    inputs: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "read": self.read,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "duplicate": self.duplicate,
            "by_reason": self.by_reason,
            "by_field": self.by_field,
            "inputs": self.inputs,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class IngestResult:
    """Counts of an ingest run; `sections` maps section name -> SectionCounts."""

    out: Path | None
    sections: dict[str, SectionCounts]
    seconds: float
    adapter: dict[str, object] = field(default_factory=dict)

    @property
    def events(self) -> SectionCounts:
        return self.sections["events"]

    @property
    def rejected(self) -> int:
        return sum(c.rejected for c in self.sections.values())

    def as_dict(self) -> dict[str, object]:
        return {
            "sections": {k: v.as_dict() for k, v in self.sections.items()},
            "seconds": round(self.seconds, 3),
            "adapter": self.adapter,
        }


@contextmanager
def duck_session(
    work_dir: Path | None = None, memory_limit: str | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB connection with a memory cap, a spill directory and UTC as time zone."""
    own_tmp = work_dir is None
    tmp = Path(tempfile.mkdtemp(prefix="dg-duck-")) if own_tmp else work_dir
    assert tmp is not None
    tmp.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(
        config={
            "memory_limit": memory_limit or DEFAULT_MEMORY_LIMIT,
            "temp_directory": str(tmp),
            "preserve_insertion_order": True,  # row_number() OVER () must follow file order
        }
    )
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET enable_progress_bar = false")  # ours are on stderr already
        yield con
    finally:
        con.close()
        if own_tmp:
            shutil.rmtree(tmp, ignore_errors=True)


class _Run:
    """The passes over one section's inputs on one connection.

    `scan()` is the one pass over the input: DuckDB validates every record and streams
    Arrow batches; each batch is split here into accepted rows (to the sink), their keys
    (to a slim side file, for duplicates) and rejected rows (to a side file, for rejects.jsonl).
    """

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        section: Section,
        sources: list[SourceFile],
        work: Path,
    ):
        self.con, self.section, self.sources, self.work = con, section, sources, work
        self.address = address_rule(section)
        self.known_raw = pa.array([], pa.string())  # address strings parsed so far ...
        self.known_norm = pa.array([], pa.string())  # ... and their normal form (NULL: invalid)
        self.per_file = np.zeros(len(sources), dtype=np.int64)
        self.keys_path = work / f"keys-{section.name}.parquet"
        self.bad_path = work / f"bad-{section.name}.parquet"
        self.keys_writer: pq.ParquetWriter | None = None
        self.bad_writer: pq.ParquetWriter | None = None
        self.bad_rows = 0  # rows in the reject side file
        self.malformed_csv = 0  # CSV rows read_csv skipped as malformed (`_csvbad`)

    def union(self) -> str:
        parts = [
            validated_select(
                self.section, typed_select(self.con, s, i, self.section, row_numbers=True)
            )
            for i, s in enumerate(self.sources)
        ]
        return " UNION ALL ".join(f"({p})" for p in parts)

    def sql(self, query: str, what: str) -> duckdb.DuckDBPyConnection:
        try:
            return self.con.execute(query)
        except duckdb.Error as exc:
            raise UserError(f"{what}: {one_line(exc)}") from None

    def table(self, query: str, what: str) -> pa.Table:
        try:
            return self.con.sql(query).to_arrow_table()
        except duckdb.Error as exc:
            raise UserError(f"{what}: {one_line(exc)}") from None

    def _inputs_label(self) -> str:
        names = [s.display for s in self.sources]
        return names[0] if len(names) == 1 else f"{names[0]} (+{len(names) - 1} more)"

    # the pass -----------------------------------------------------------------------------
    def scan(self, sink: Callable[[pa.Table], None], report: Callable[[int], None]) -> int:
        """Validate and split every record once; returns the number of records read."""
        query = self.union()
        for fid, source in enumerate(self.sources):  # no malformed rows left from a former run
            if source.format == "csv":
                self.con.execute(f"DROP TABLE IF EXISTS {csv_rejects_table(fid)}")
                self.con.execute(f"DROP TABLE IF EXISTS _csv_scans_{fid}")
        try:
            reader = self.con.sql(query).to_arrow_reader(2 * ROW_GROUP_ROWS)
        except duckdb.Error as exc:
            raise UserError(f"{self._inputs_label()}: {one_line(exc)}") from None
        read = 0
        # Three stages overlap: DuckDB computes and exports (fetch thread), this thread
        # splits, and the sink encodes Parquet (writer thread; pyarrow releases the GIL).
        writing: deque[Future[None]] = deque()
        try:
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="parquet-write") as pool:
                for batch in prefetched(reader):
                    writing.append(pool.submit(sink, self.split(pa.Table.from_batches([batch]))))
                    while len(writing) > 2:  # at most two batches wait for the writer
                        writing.popleft().result()
                    read += batch.num_rows
                    report(read)
                while writing:
                    writing.popleft().result()
        except duckdb.Error as exc:
            raise UserError(f"{self._inputs_label()}: {one_line(exc)}") from None
        finally:
            for w in (self.keys_writer, self.bad_writer):
                if w is not None:
                    w.close()
        read += self._collect_malformed_csv()
        for i, s in enumerate(self.sources):
            if self.per_file[i] == 0:
                raise UserError(f"{s.display}: no records (empty file or header only)")
        return read

    def _collect_malformed_csv(self) -> int:
        """The CSV rows `read_csv` skipped as malformed, as `_csvbad(_fid, _row, _line, _ord)`,
        and `_csvshift(_fid, thr, k)`: a row numbered `n` among a file's well-formed rows is
        its record `n + k` for the largest `thr <= n` (k malformed rows came before it)."""
        parts = []
        for fid, source in enumerate(self.sources):
            table = csv_rejects_table(fid)
            if (
                source.format == "csv"
                and self.con.execute(
                    "SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [table]
                ).fetchall()[0][0]
            ):
                # DuckDB's `line` counts records with the header as line 1, as ours does; a
                # row with several errors has several entries.
                parts.append(
                    f"SELECT DISTINCT {fid}::INTEGER AS _fid, line - 2 AS _row FROM {table}"
                )
        if not parts:
            return 0
        self.con.execute(
            "CREATE OR REPLACE TEMP TABLE _csvbad AS SELECT _fid, _row::BIGINT AS _row, "
            "_row::BIGINT + 2 AS _line, _fid::BIGINT * 1000000000000 + _row AS _ord "
            f"FROM ({' UNION ALL '.join(parts)}) ORDER BY _fid, _row"
        )
        self.con.execute(
            "CREATE OR REPLACE TEMP TABLE _csvshift AS SELECT _fid, thr, max(k) AS k FROM ("
            "SELECT _fid, row_number() OVER w AS k, _row - row_number() OVER w + 1 AS thr "
            "FROM _csvbad WINDOW w AS (PARTITION BY _fid ORDER BY _row)) GROUP BY _fid, thr"
        )
        per_file = self.con.execute("SELECT _fid, count(*), min(_line) FROM _csvbad GROUP BY _fid")
        for fid, n, first in per_file.fetchall():
            if self.per_file[fid] == 0:
                raise UserError(
                    f"{self.sources[fid].display}: not CSV with this header (no row fits it; "
                    f"line {first} is malformed)"
                )
            self.per_file[fid] += n
            self.malformed_csv += int(n)
        return self.malformed_csv

    def split(self, table: pa.Table) -> pa.Table:
        """Accepted rows of one batch in the contract schema; keys and rejects go aside."""
        fids = table["_fid"].to_numpy()
        self.per_file += np.bincount(fids, minlength=len(self.sources))
        why = table["_why"]
        if self.address is not None:
            table, why = self._resolve_addresses(table, why)
        if why.null_count == table.num_rows:  # the common case: nothing rejected
            good = table
        else:
            ok = pc.is_null(why)
            good = table.filter(ok)
            bad = table.filter(pc.invert(ok)).select(["_fid", "_row", "_line", "_ord", "_blank"])
            bad = bad.append_column("_why", why.filter(pc.invert(ok)))
            bad = bad.append_column("_rec", table["_rec"].filter(pc.invert(ok)))
            self._write_side("bad", bad)
            self.bad_rows += bad.num_rows
        keys = good.select([self.section.key, "_ord"]).rename_columns(["k", "_ord"])
        self._write_side("keys", keys)
        return to_contract(good, self.section.schema)

    def _resolve_addresses(
        self, table: pa.Table, why: pa.ChunkedArray
    ) -> tuple[pa.Table, pa.ChunkedArray]:
        """Parse the batch's new distinct non-IPv4 address strings once each (Python's
        `ipaddress`), then pick each row's reason and normal form by vectorised lookup."""
        assert self.address is not None
        addr = table["_addr"]
        if addr.null_count == table.num_rows:
            return table, why
        distinct = pc.unique(addr.drop_null().combine_chunks())
        new = distinct.filter(pc.is_null(pc.index_in(distinct, self.known_raw)))
        if len(new):
            norm = ipintel.validity_map(new, cidr=self.address.kind == "cidr")
            lookup = dict(zip(norm["raw"].to_pylist(), norm["norm"].to_pylist(), strict=True))
            self.known_raw = pa.concat_arrays([self.known_raw, new])
            self.known_norm = pa.concat_arrays(
                [self.known_norm, pa.array([lookup.get(v) for v in new.to_pylist()], pa.string())]
            )
        norm = pc.take(self.known_norm, pc.index_in(addr, self.known_raw))
        parsed = pc.is_valid(norm)
        why = pc.if_else(parsed, table["_why_ok"], why)
        name = self.address.name
        value = pc.if_else(pc.is_null(addr), table[name], norm)
        table = table.set_column(table.schema.get_field_index(name), name, value)
        return table, why

    def _write_side(self, which: str, table: pa.Table) -> None:
        if which == "keys":
            if self.keys_writer is None:
                self.keys_writer = pq.ParquetWriter(
                    self.keys_path,
                    table.schema,
                    compression="none",
                    use_dictionary=False,
                    write_statistics=False,
                )
            self.keys_writer.write_table(table)
        else:
            if self.bad_writer is None:
                self.bad_writer = pq.ParquetWriter(self.bad_path, table.schema, compression="lz4")
            self.bad_writer.write_table(table)

    # after the pass: rejects ---------------------------------------------------------------
    def malformed_fix(self) -> None:
        """`_fix(_fid, _row, why)`: rows that read as all-NULL and whose JSON line does not
        parse as an object get `malformed_json`; a file with no object at all is an error."""
        fix = pa.table(
            {
                "_fid": pa.array([], pa.int32()),
                "_row": pa.array([], pa.int64()),
                "why": pa.array([], pa.string()),
            }
        )
        if self.bad_rows:
            blanks = self.con.execute(
                f"SELECT _fid, count(*) FROM read_parquet({sql_str(str(self.bad_path))}) "
                "WHERE _blank GROUP BY _fid"
            ).fetchall()
            parts = [fix]
            for fid, _ in blanks:
                parts.append(self._malformed_rows(int(fid)))
            fix = pa.concat_tables(parts)
        self.con.register("_fix_arrow", fix)
        self.con.execute("CREATE OR REPLACE TEMP TABLE _fix AS SELECT * FROM _fix_arrow")
        self.con.unregister("_fix_arrow")

    def _malformed_rows(self, fid: int) -> pa.Table:
        source = self.sources[fid]
        blank_rows = (
            f"SELECT _row, _line FROM read_parquet({sql_str(str(self.bad_path))}) "
            f"WHERE _blank AND _fid = {fid}"
        )
        if source.format == "jsonl":  # read those lines again as plain JSON values
            query = (
                f"SELECT {fid}::INTEGER AS _fid, _row, 'malformed_json:' AS why, _row + 1 AS _line "
                f"FROM (SELECT json, row_number() OVER () - 1 AS _row "
                f"FROM {json_values_reader(source)}) "
                f"WHERE _row IN (SELECT _row FROM ({blank_rows})) "
                "AND (json IS NULL OR json_type(json) <> 'OBJECT') ORDER BY _row"
            )
        else:  # staged by an adapter, which already flagged exactly the malformed lines
            query = (
                f"SELECT {fid}::INTEGER AS _fid, _row, 'malformed_json:' AS why, _line "
                f"FROM ({blank_rows}) ORDER BY _row"
            )
        table = self.table(query, source.display)
        if table.num_rows and table.num_rows == self.per_file[fid]:
            first = int(table["_line"][0].as_py())
            raise UserError(
                f"{source.display}: not JSON Lines (no line is a JSON object; line {first} "
                "is malformed)"
            )
        return table.select(["_fid", "_row", "why"])

    def _bad_sql(self) -> str:
        """Every rejected row with its reason `w`: the reject side file (CSV rows renumbered
        past the malformed rows before them) and the malformed CSV rows."""
        parts = []
        if self.bad_rows:
            bad = f"SELECT * FROM read_parquet({sql_str(str(self.bad_path))})"
            if self.malformed_csv:
                bad = (
                    "SELECT b.* REPLACE (b._row + coalesce(s.k, 0) AS _row, "
                    "b._line + coalesce(s.k, 0) AS _line, b._ord + coalesce(s.k, 0) AS _ord) "
                    f"FROM ({bad}) b ASOF LEFT JOIN _csvshift s "
                    "ON s._fid = b._fid AND b._row >= s.thr"
                )
            parts.append(
                f"SELECT b.*, coalesce(f.why, b._why) AS w FROM ({bad}) b "
                "LEFT JOIN _fix f ON f._fid = b._fid AND f._row = b._row"
            )
        if self.malformed_csv:
            parts.append(
                "SELECT _fid, _row, _line, _ord, false AS _blank, 'malformed_csv:' AS _why, "
                "NULL AS _rec, 'malformed_csv:' AS w FROM _csvbad"
            )
        return " UNION ALL BY NAME ".join(f"({p})" for p in parts)

    def count_rejects(self, counts: SectionCounts) -> None:
        if not self.bad_rows + self.malformed_csv:
            return
        for why, n in self.con.execute(
            f"SELECT w, count(*) FROM ({self._bad_sql()}) GROUP BY w ORDER BY 2 DESC, 1"
        ).fetchall():
            reason = why.split(":", 1)[0]
            counts.by_field[why.rstrip(":")] = int(n)  # malformed_json has no field
            counts.by_reason[reason] = counts.by_reason.get(reason, 0) + int(n)
        counts.rejected = sum(counts.by_reason.values())

    def write_rejects(self, path: Path) -> None:
        files = ", ".join(f"{sql_str(s.display)}" for s in self.sources)
        query = (
            f"COPY (SELECT {sql_str(self.section.name)} AS section, [{files}][_fid + 1] AS file, "
            "_line AS line, _row AS row, nullif(split_part(w, ':', 2), '') AS field, "
            "split_part(w, ':', 1) AS reason, "
            "CASE WHEN w IN ('malformed_json:', 'malformed_csv:') THEN NULL ELSE _rec END "
            "AS record "
            f"FROM ({self._bad_sql()}) ORDER BY _ord) "
            f"TO {sql_str(str(path))} (FORMAT json)"
        )
        self.sql(query, self._inputs_label())

    # after the pass: duplicates ------------------------------------------------------------
    def duplicate_positions(self) -> np.ndarray:
        """Positions (in accepted order) of the later valid copies of a key, sorted."""
        if self.keys_writer is None:
            return np.zeros(0, dtype=np.int64)
        keys = f"read_parquet({sql_str(str(self.keys_path))}, file_row_number=true)"
        self.con.execute(
            "CREATE OR REPLACE TEMP TABLE _dupkeys AS "
            f"SELECT k FROM {keys} GROUP BY k HAVING count(*) > 1"
        )
        if not self.con.execute("SELECT count(*) FROM _dupkeys").fetchall()[0][0]:
            return np.zeros(0, dtype=np.int64)
        later = self.con.sql(
            "SELECT pos FROM (SELECT file_row_number AS pos, "
            "row_number() OVER (PARTITION BY k ORDER BY _ord) AS copy "
            f"FROM {keys} WHERE k IN (SELECT k FROM _dupkeys)) WHERE copy > 1 ORDER BY pos"
        ).to_arrow_table()
        return later.column(0).to_numpy().astype(np.int64)


def prefetched(reader: pa.RecordBatchReader, depth: int = 2) -> Iterator[pa.RecordBatch]:
    """Iterate `reader` while a thread fetches the next batches, so that DuckDB computes
    while Parquet encodes (both release the GIL). At most `depth` batches wait in memory."""
    slots: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for batch in reader:
                while not stop.is_set():
                    try:
                        slots.put(batch, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put(done)
        except BaseException as exc:  # handed to the consumer, re-raised there
            slots.put(exc)

    worker = threading.Thread(target=produce, name="duckdb-fetch", daemon=True)
    worker.start()
    try:
        while True:
            item = slots.get()
            if item is done:
                break
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        worker.join(timeout=5)


def to_contract(batch: pa.RecordBatch | pa.Table, schema: pa.Schema) -> pa.Table:
    """Cast DuckDB output to the contract schema (microseconds -> milliseconds, int widths)."""
    table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    arrays = [table[f.name].cast(f.type, safe=False) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


# Columns with few distinct values get dictionary pages; ids and free text do not (trying a
# dictionary on them first is wasted work).
DICTIONARY_COLUMNS = [
    "account_id", "api_key_id", "client_ip", "user_agent", "model", "system", "status",
    "tier", "email_domain", "country", "org_id", "kind", "as_org",
]  # fmt: skip


# Min/max of free text prunes nothing and costs a comparison per value: no statistics there.
NO_STATISTICS_COLUMNS = frozenset({"system", "prompt", "response"})


class PartWriter:
    """Writes `part-NNNNN.parquet` files of ~ROWS_PER_PART rows in ROW_GROUP_ROWS row groups
    (or one `single_file`). `finish(drop)` closes them and removes the rows at the given
    accepted positions (later copies of a duplicated key), rewriting only the files that
    hold such rows, one row group at a time."""

    def __init__(
        self,
        directory: Path,
        schema: pa.Schema,
        single_file: Path | None = None,
        drop_columns: frozenset[str] = frozenset(),
    ):
        self.directory, self.schema, self.single_file = directory, schema, single_file
        self.drop_columns = sorted(drop_columns)
        self.writer: pq.ParquetWriter | None = None
        self.in_part = 0
        self.parts = 0
        self.rows = 0
        self.files: list[tuple[Path, int]] = []  # (path, first accepted position)
        self.pending: list[pa.Table] = []
        self.pending_rows = 0

    def _new_writer(self, path: Path) -> pq.ParquetWriter:
        return pq.ParquetWriter(
            path,
            self.schema,
            compression="zstd",
            compression_level=1,
            use_dictionary=[c for c in DICTIONARY_COLUMNS if c in self.schema.names],
            write_statistics=[c for c in self.schema.names if c not in NO_STATISTICS_COLUMNS],
        )

    def _open(self) -> pq.ParquetWriter:
        if self.writer is None or (self.single_file is None and self.in_part >= ROWS_PER_PART):
            if self.writer is not None:
                self.writer.close()
            path = self.single_file or self.directory / f"part-{self.parts:05d}.parquet"
            self.writer = self._new_writer(path)
            self.files.append((path, self.rows))
            self.parts += 1
            self.in_part = 0
        return self.writer

    def _flush(self, final: bool = False) -> None:
        while self.pending_rows >= ROW_GROUP_ROWS or (final and self.pending_rows):
            table = pa.concat_tables(self.pending)
            head = table.slice(0, ROW_GROUP_ROWS)
            self._open().write_table(head, row_group_size=ROW_GROUP_ROWS)
            self.in_part += head.num_rows
            self.rows += head.num_rows
            rest = table.slice(head.num_rows)
            self.pending, self.pending_rows = ([rest] if rest.num_rows else []), rest.num_rows

    def write(self, table: pa.Table) -> None:
        if table.num_rows:
            self.pending.append(table.drop_columns(self.drop_columns))
            self.pending_rows += table.num_rows
            self._flush()

    def close(self) -> None:
        self._flush(final=True)
        if self.writer is None:  # no rows: still write an empty, correctly typed file
            self._open()
        assert self.writer is not None
        self.writer.close()

    def finish(self, drop: np.ndarray) -> None:
        self.close()
        ends = [start for _, start in self.files[1:]] + [self.rows]
        for (path, start), end in zip(self.files, ends, strict=True):
            mine = drop[(drop >= start) & (drop < end)] - start
            if len(mine):
                self._rewrite_without(path, mine)

    def _rewrite_without(self, path: Path, rows: np.ndarray) -> None:
        tmp = path.with_name(path.name + ".tmp")
        source = pq.ParquetFile(path)
        writer = self._new_writer(tmp)
        offset = 0
        for batch in source.iter_batches(batch_size=ROW_GROUP_ROWS):
            keep = np.ones(batch.num_rows, dtype=bool)
            keep[rows[(rows >= offset) & (rows < offset + batch.num_rows)] - offset] = False
            writer.write_table(pa.Table.from_batches([batch.filter(pa.array(keep))]))
            offset += batch.num_rows
        writer.close()
        source.close()
        os.replace(tmp, path)


class TableSink:
    """Collects accepted rows in memory (small sections, `read_section`)."""

    def __init__(self) -> None:
        self.tables: list[pa.Table] = []

    def write(self, table: pa.Table) -> None:
        self.tables.append(table)

    def finish(self, drop: np.ndarray) -> None:
        if len(drop):
            table = pa.concat_tables(self.tables)
            keep = np.ones(table.num_rows, dtype=bool)
            keep[drop] = False
            self.tables = [table.filter(pa.array(keep))]


class NullSink:
    """Validation only: accepted rows are counted, not kept."""

    def write(self, table: pa.Table) -> None:
        return None

    def finish(self, drop: np.ndarray) -> None:
        return None


Sink = PartWriter | TableSink | NullSink


def _process_section(
    con: duckdb.DuckDBPyConnection,
    section: Section,
    sources: list[SourceFile],
    sink: Sink,
    rejects_path: Path | None,
    progress: Progress,
    work: Path,
) -> SectionCounts:
    """The one pass, then rejects and duplicates (both from small side files)."""
    started = time.perf_counter()
    counts = SectionCounts(inputs=[{"path": s.display, "format": s.format} for s in sources])
    work.mkdir(parents=True, exist_ok=True)
    run = _Run(con, section, sources, work)
    writes = not isinstance(sink, NullSink)
    stage = f"{section.name}: validating and writing" if writes else f"{section.name}: validating"
    progress(stage, 0, None)
    counts.read = run.scan(sink.write, lambda done: progress(stage, done, None))
    run.malformed_fix()
    run.count_rejects(counts)
    if counts.rejected and rejects_path is not None:
        progress(f"{section.name}: writing rejects", 0, None)
        run.write_rejects(rejects_path)
    drop = run.duplicate_positions()
    counts.duplicate = len(drop)
    sink.finish(drop)
    counts.accepted = counts.read - counts.rejected - counts.duplicate
    bad_rows = run.bad_rows + run.malformed_csv
    accepted_written = counts.read - bad_rows - counts.duplicate
    if counts.rejected != bad_rows or accepted_written != counts.accepted:
        raise RuntimeError(
            f"{section.name}: counts do not add up (read {counts.read}, rejected "
            f"{counts.rejected}/{bad_rows}, duplicate {counts.duplicate})"
        )
    for table in ("_fix", "_dupkeys", "_csvbad", "_csvshift"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    counts.seconds = time.perf_counter() - started
    return counts


def _verbatim_counts(
    con: duckdb.DuckDBPyConnection,
    section: Section,
    sources: list[SourceFile],
    directory: Path | None,
    progress: Progress,
) -> SectionCounts | None:
    """The counts of inputs taken verbatim (`verbatim.py`: already-normalised Parquet, copied
    into `directory` unless None), or None when they need the rewrite path."""
    if os.environ.get("DISTILLGUARD_INGEST_REWRITE") == "1":  # force re-encoding
        return None
    progress(f"{section.name}: checking", 0, None)
    done = try_verbatim(con, section, sources, directory)
    if done is None:
        return None
    rows, seconds = done
    return SectionCounts(
        read=rows,
        accepted=rows,
        inputs=[{"path": s.display, "format": s.format} for s in sources],
        seconds=seconds,
    )


def _quiet(stage: str, done: int, total: int | None) -> None:
    return None


def read_section(
    kind: str,
    paths: list[Path] | list[SourceFile],
    rejects_path: Path | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
) -> tuple[pa.Table, SectionCounts]:
    """Read and validate a small section input into memory (contract schema, email included).

    Returns the accepted, deduplicated records and the counts. Rejects are written to
    `rejects_path` (JSON Lines, email removed) when given.
    """
    section = get_section(kind)
    if all(isinstance(p, SourceFile) for p in paths):
        sources: list[SourceFile] = [p for p in paths if isinstance(p, SourceFile)]
    else:
        sources = resolve_inputs([Path(p) for p in paths if not isinstance(p, SourceFile)])
    sink = TableSink()
    work = Path(tempfile.mkdtemp(prefix="dg-section-"))
    try:
        if con is None:
            with duck_session(work / "duck") as own:
                counts = _process_section(own, section, sources, sink, rejects_path, _quiet, work)
        else:
            counts = _process_section(con, section, sources, sink, rejects_path, _quiet, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table = pa.concat_tables(sink.tables) if sink.tables else section.schema.empty_table()
    return table, counts


def _append(src: Path, dst: Path) -> None:
    if src.exists():
        with src.open("rb") as fin, dst.open("ab") as fout:
            shutil.copyfileobj(fin, fout)


def run_ingest(
    events: list[Path],
    accounts: list[Path] | None = None,
    releases: list[Path] | None = None,
    ip_intel: list[Path] | None = None,
    out: Path = Path("ingest-out"),
    progress: bool = True,
    input_format: str = "contract",
    memory_limit: str | None = None,
) -> IngestResult:
    """Validate and normalise the inputs into `out` (see docs/ingest.md for the layout).

    `input_format` applies to the events: `contract` (by extension), `otel` or `litellm`.
    """
    from distillguard.ingest.adapters import stage_events
    from distillguard.ingest.progress import progress_reporter

    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".ingest-tmp-", dir=out))
    rejects = out / "rejects.jsonl"
    rejects.write_text("")
    for name in ("accounts", "releases", "ip_intel"):  # no stale outputs from an earlier run
        (out / get_section(name).output_name).unlink(missing_ok=True)
    sections: dict[str, SectionCounts] = {}
    timings: dict[str, float] = {}
    adapter: dict[str, object] = {}
    try:
        with (
            progress_reporter(progress) as report,
            duck_session(work / "duck", memory_limit) as con,
        ):
            t0 = time.perf_counter()
            event_sources, adapter = stage_events(events, input_format, work / "staged", report)
            timings["adapter"] = time.perf_counter() - t0
            plan = [
                ("events", event_sources),
                ("accounts", accounts),
                ("releases", releases),
                ("ip_intel", ip_intel),
            ]
            for name, inputs in plan:
                if not inputs:
                    continue
                section = get_section(name)
                sources = inputs if name == "events" else resolve_inputs([Path(p) for p in inputs])
                section_rejects = work / f"rejects-{name}.jsonl"
                private = section.private_fields
                if name == "events":
                    events_dir = out / "events"
                    shutil.rmtree(events_dir, ignore_errors=True)
                    events_dir.mkdir()
                    verbatim = _verbatim_counts(con, section, sources, events_dir, report)
                    if verbatim is not None:
                        sections[name] = verbatim
                        timings[name] = verbatim.seconds
                        continue
                    writer = PartWriter(events_dir, section.output_schema, drop_columns=private)
                else:
                    single = out / section.output_name
                    writer = PartWriter(out, section.output_schema, single, drop_columns=private)
                counts = _process_section(
                    con, section, sources, writer, section_rejects, report, work / name
                )
                _append(section_rejects, rejects)
                sections[name] = counts
                timings[name] = counts.seconds
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = IngestResult(
        out=out, sections=sections, seconds=time.perf_counter() - started, adapter=adapter
    )
    summary = {
        "contract_version": "1",
        **result.as_dict(),
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "outputs": {
            "events": "events/",
            **{n: get_section(n).output_name for n in sections if n != "events"},
            "rejects": "rejects.jsonl",
        },
    }
    (out / "ingest.json").write_text(json.dumps(summary, indent=2) + "\n")
    return result


def validate_table(
    kind: str, table: pa.Table, name: str = "arrow-table"
) -> tuple[pa.Table, list[dict[str, object]]]:
    """Validate an in-memory table (string or typed columns, contract names).

    Returns (accepted records in the section's contract schema, rejects as dicts). A table with
    `_src_line`/`_src_row` columns reports those positions in its rejects.
    """
    section = get_section(kind)
    if table.num_rows == 0:
        return section.schema.empty_table(), []
    with duck_session() as con:
        con.register("_input_table", table)
        source = SourceFile(Path(name), "arrow", display=name, arrow_view="_input_table")
        tmp = Path(tempfile.mkdtemp(prefix="dg-rejects-"))
        try:
            rejects_path = tmp / "rejects.jsonl"
            accepted, _ = read_section(kind, [source], rejects_path=rejects_path, con=con)
            rejects = (
                [json.loads(line) for line in rejects_path.read_text().split("\n") if line]
                if rejects_path.exists()
                else []
            )
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return accepted, rejects


def validate_paths(
    paths: list[Path],
    kind: str = "events",
    input_format: str = "contract",
    rejects_path: Path | None = None,
    progress: bool = True,
    memory_limit: str | None = None,
) -> tuple[SectionCounts, dict[str, object]]:
    """Validate inputs without writing any output but the rejects file (`distillguard validate`)."""
    from distillguard.ingest.adapters import stage_events
    from distillguard.ingest.progress import progress_reporter

    section = get_section(kind)
    if input_format != "contract" and section.name != "events":
        raise UserError("--format otel|litellm applies to events only")
    work = Path(tempfile.mkdtemp(prefix="dg-validate-"))
    try:
        with (
            progress_reporter(progress) as report,
            duck_session(work / "duck", memory_limit) as con,
        ):
            sources, adapter = stage_events(paths, input_format, work / "staged", report)
            counts = _verbatim_counts(con, section, sources, None, report) or _process_section(
                con, section, sources, NullSink(), rejects_path, report, work / "pass"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return counts, adapter
