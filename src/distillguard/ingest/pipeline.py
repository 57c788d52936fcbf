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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from distillguard.errors import UserError
from distillguard.ingest import ipintel
from distillguard.ingest.sections import FieldRule, Section, get_section
from distillguard.ingest.sources import SourceFile, one_line, resolve_inputs, sql_ident, sql_str
from distillguard.ingest.validate import address_rule, typed_select, validated_select

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
    """The passes over one section's inputs on one connection."""

    def __init__(self, con: duckdb.DuckDBPyConnection, section: Section, sources: list[SourceFile]):
        self.con, self.section, self.sources = con, section, sources

    def union(self, row_numbers: bool, only: tuple[str, ...] | None = None) -> str:
        parts = [
            typed_select(self.con, s, i, self.section, row_numbers, only)
            for i, s in enumerate(self.sources)
        ]
        return " UNION ALL ".join(f"({p})" for p in parts)

    def sql(self, query: str, what: str) -> duckdb.DuckDBPyConnection:
        try:
            return self.con.execute(query)
        except duckdb.Error as exc:
            raise UserError(f"{what}: {one_line(exc)}") from None

    def table(self, query: str) -> pa.Table:
        try:
            return self.con.sql(query).to_arrow_table()
        except duckdb.Error as exc:
            raise UserError(f"{self._inputs_label()}: {one_line(exc)}") from None

    def _inputs_label(self) -> str:
        names = [s.display for s in self.sources]
        return names[0] if len(names) == 1 else f"{names[0]} (+{len(names) - 1} more)"

    # pass A -------------------------------------------------------------------------------
    def count(self, counts: SectionCounts) -> int:
        """Validate everything once into a slim key table; parse distinct addresses; count."""
        key = sql_ident(self.section.key)
        address = address_rule(self.section)
        valid = validated_select(self.section, self.union(row_numbers=True), deferred=True)
        addr_cols = ", _why_ok, _addr" if address is not None else ""
        self.sql(
            "CREATE OR REPLACE TEMP TABLE _keys AS "
            f"SELECT _fid, _ord, {key} AS k, _why{addr_cols} FROM ({valid})",
            self._inputs_label(),
        )
        self.build_address_map(address)
        if address is not None:
            # An address that parsed is valid: the reason is the one computed as if it were.
            # When the address is itself the key (CIDR), deduplicate on its normalised form.
            k = "coalesce(m.norm, k)" if address.name == self.section.key else "k"
            self.con.execute(
                f"CREATE OR REPLACE TEMP TABLE _keys AS SELECT _fid, _ord, {k} AS k, "
                "CASE WHEN _addr IS NOT NULL AND m.norm IS NOT NULL THEN _why_ok ELSE _why END "
                "AS _why "
                "FROM _keys LEFT JOIN _addrmap m ON m.raw = _keys._addr"
            )
        per_file = dict(
            self.con.execute("SELECT _fid, count(*) FROM _keys GROUP BY _fid").fetchall()
        )
        for i, s in enumerate(self.sources):
            if per_file.get(i, 0) == 0:
                raise UserError(f"{s.display}: no records (empty file or header only)")
        counts.read = int(self.con.execute("SELECT count(*) FROM _keys").fetchall()[0][0])
        for why, n in self.con.execute(
            "SELECT _why, count(*) FROM _keys WHERE _why IS NOT NULL GROUP BY _why ORDER BY 2 DESC"
        ).fetchall():
            reason = why.split(":", 1)[0]
            counts.by_field[why] = int(n)
            counts.by_reason[reason] = counts.by_reason.get(reason, 0) + int(n)
        counts.rejected = sum(counts.by_reason.values())
        self.con.execute(
            "CREATE OR REPLACE TEMP TABLE _dups AS SELECT k, min(_ord) AS keep, count(*) AS n "
            "FROM _keys WHERE _why IS NULL GROUP BY k HAVING count(*) > 1"
        )
        self.con.execute("DROP TABLE _keys")
        dup_groups, dup_rows = self.con.execute(
            "SELECT count(*), coalesce(sum(n - 1), 0) FROM _dups"
        ).fetchall()[0]
        counts.duplicate = int(dup_rows)
        counts.accepted = counts.read - counts.rejected - counts.duplicate
        return int(dup_groups)

    def build_address_map(self, address: FieldRule | None) -> None:
        """`_addrmap(raw, norm)`: the valid ones among the distinct non-IPv4 address strings."""
        if address is None:
            mapping = pa.table(
                {"raw": pa.array([], pa.string()), "norm": pa.array([], pa.string())}
            )
        else:
            distinct = self.con.sql("SELECT DISTINCT _addr FROM _keys WHERE _addr IS NOT NULL")
            values = distinct.to_arrow_table().column(0).combine_chunks()
            mapping = ipintel.validity_map(values, cidr=address.kind == "cidr")
        self.con.register("_map_arrow", mapping)
        self.con.execute("CREATE OR REPLACE TEMP TABLE _addrmap AS SELECT * FROM _map_arrow")
        self.con.unregister("_map_arrow")

    # pass C -------------------------------------------------------------------------------
    def write_rejects(self, path: Path) -> None:
        files = ", ".join(f"{sql_str(s.display)}" for s in self.sources)
        record = ", ".join(
            f"{sql_str(r.name)}: {sql_ident('raw__' + r.name)}"
            for r in self.section.rules
            if r.name not in self.section.private_fields
        )
        valid = validated_select(self.section, self.union(row_numbers=True), raw_text=True)
        query = (
            f"COPY (SELECT {sql_str(self.section.name)} AS section, [{files}][_fid + 1] AS file, "
            "_line AS line, _row AS row, split_part(_why, ':', 2) AS field, "
            f"split_part(_why, ':', 1) AS reason, {{{record}}} AS record "
            f"FROM ({valid}) WHERE _why IS NOT NULL ORDER BY _ord) "
            f"TO {sql_str(str(path))} (FORMAT json)"
        )
        self.sql(query, self._inputs_label())

    def first_copies(self) -> pa.Table:
        valid = validated_select(self.section, self.union(row_numbers=True))
        cols = ", ".join(sql_ident(f.name) for f in self.section.schema)
        query = (
            f"SELECT {cols} FROM ({valid}) "
            "WHERE _why IS NULL AND _ord IN (SELECT keep FROM _dups) ORDER BY _ord"
        )
        return self.table(query)

    # pass B -------------------------------------------------------------------------------
    def stream_accepted(self, has_dups: bool) -> pa.RecordBatchReader:
        valid = validated_select(self.section, self.union(row_numbers=False))
        cols = ", ".join(sql_ident(f.name) for f in self.section.schema)
        key = sql_ident(self.section.key)
        anti = f" AND {key} NOT IN (SELECT k FROM _dups)" if has_dups else ""
        query = f"SELECT {cols} FROM ({valid}) WHERE _why IS NULL{anti}"
        try:
            return self.con.sql(query).to_arrow_reader(2 * ROW_GROUP_ROWS)
        except duckdb.Error as exc:
            raise UserError(f"{self._inputs_label()}: {one_line(exc)}") from None


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


class PartWriter:
    """Writes `part-NNNNN.parquet` files of ~ROWS_PER_PART rows in ROW_GROUP_ROWS row groups."""

    def __init__(self, directory: Path, schema: pa.Schema, single_file: Path | None = None):
        self.directory, self.schema, self.single_file = directory, schema, single_file
        self.writer: pq.ParquetWriter | None = None
        self.in_part = 0
        self.parts = 0
        self.rows = 0
        self.pending: list[pa.Table] = []
        self.pending_rows = 0

    def _open(self) -> pq.ParquetWriter:
        if self.writer is None or (self.single_file is None and self.in_part >= ROWS_PER_PART):
            if self.writer is not None:
                self.writer.close()
            path = self.single_file or self.directory / f"part-{self.parts:05d}.parquet"
            self.writer = pq.ParquetWriter(
                path,
                self.schema,
                compression="zstd",
                compression_level=1,
                use_dictionary=[c for c in DICTIONARY_COLUMNS if c in self.schema.names],
            )
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
            self.pending.append(table)
            self.pending_rows += table.num_rows
            self._flush()

    def close(self) -> None:
        self._flush(final=True)
        if self.writer is None:  # no rows: still write an empty, correctly typed file
            self._open()
        assert self.writer is not None
        self.writer.close()


def _process_section(
    con: duckdb.DuckDBPyConnection,
    section: Section,
    sources: list[SourceFile],
    sink: Callable[[pa.Table], None],
    rejects_path: Path | None,
    progress: Progress,
    write: bool = True,
) -> SectionCounts:
    started = time.perf_counter()
    counts = SectionCounts(inputs=[{"path": s.display, "format": s.format} for s in sources])
    run = _Run(con, section, sources)
    progress(f"{section.name}: validating", 0, None)
    dup_groups = run.count(counts)
    if counts.rejected and rejects_path is not None:
        progress(f"{section.name}: writing rejects", 0, None)
        run.write_rejects(rejects_path)
    if not write:  # validate only: the counts are complete after pass A
        con.execute("DROP TABLE IF EXISTS _dups")
        counts.seconds = time.perf_counter() - started
        return counts
    written = 0
    reader = run.stream_accepted(has_dups=dup_groups > 0)
    stage = f"{section.name}: writing"
    progress(stage, 0, counts.accepted)
    try:
        for batch in prefetched(reader):
            table = to_contract(batch, section.schema)
            sink(table)
            written += table.num_rows
            progress(stage, written, counts.accepted)
    except duckdb.Error as exc:
        raise UserError(f"{sources[0].display}: {one_line(exc)}") from None
    if dup_groups:
        first = to_contract(run.first_copies(), section.schema)
        sink(first)
        written += first.num_rows
    progress(stage, written, counts.accepted)
    if written != counts.accepted:
        raise RuntimeError(f"{section.name}: wrote {written} rows, expected {counts.accepted}")
    con.execute("DROP TABLE IF EXISTS _dups")
    counts.seconds = time.perf_counter() - started
    return counts


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
    sources = [p if isinstance(p, SourceFile) else None for p in paths]
    if any(s is None for s in sources):
        sources = resolve_inputs([Path(p) for p in paths])  # type: ignore[arg-type]
    tables: list[pa.Table] = []
    if con is None:
        with duck_session() as own:
            counts = _process_section(own, section, sources, tables.append, rejects_path, _quiet)  # type: ignore[arg-type]
    else:
        counts = _process_section(con, section, sources, tables.append, rejects_path, _quiet)  # type: ignore[arg-type]
    table = pa.concat_tables(tables) if tables else section.schema.empty_table()
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
                if name == "events":
                    events_dir = out / "events"
                    shutil.rmtree(events_dir, ignore_errors=True)
                    events_dir.mkdir()
                    writer = PartWriter(events_dir, section.output_schema)
                else:
                    writer = PartWriter(
                        out, section.output_schema, single_file=out / section.output_name
                    )
                private = section.private_fields

                def sink(
                    table: pa.Table, w: PartWriter = writer, drop: frozenset[str] = private
                ) -> None:
                    w.write(table.drop_columns(list(drop)) if drop else table)

                counts = _process_section(con, section, sources, sink, section_rejects, report)  # type: ignore[arg-type]
                writer.close()
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
            counts = _process_section(
                con, section, sources, lambda t: None, rejects_path, report, write=False
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return counts, adapter
