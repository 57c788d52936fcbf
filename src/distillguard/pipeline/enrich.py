"""Enrichment: events + request signals + IP intelligence -> one narrow table for relational stages.

Prompt text is read here once, turned into signal columns, and never carried further: the
relational stages (fingerprints, links) work on this narrow table only.
"""

from __future__ import annotations

import glob
import ipaddress
import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from distillguard.contract import TIMESTAMP
from distillguard.engines.duckdb import sql_path
from distillguard.ingest.ipintel import classify_ips
from distillguard.links.evidence import LINK_BANDS
from distillguard.signals import SIGNALS, compute_signals
from distillguard.signals.template import TemplateSignal

MS_PER_DAY = 86_400_000
MS_PER_HOUR = 3_600_000

# Event columns carried into the enriched table (no text: prompts stay behind).
CARRIED = (
    "request_id",
    "account_id",
    "client_ip",
    "user_agent",
    "model",
    "input_tokens",
    "output_tokens",
    "max_tokens",
    "thinking_budget",
    "tools",
    "tool_calls",
    "images",
    "conversation_id",
    "turn",
    "status",
)

IP_INFO = pa.schema(
    [
        ("client_ip", pa.string()),
        ("subnet", pa.string()),
        ("ip_kind", pa.string()),
        ("asn", pa.string()),
    ]
)


def subnet_of(ips: pa.Array) -> pa.Array:
    """/24 for IPv4 and /48 for IPv6: the block a proxy pool or a NAT usually spans."""
    ips = ips.cast(pa.string())
    is_v4 = pc.match_substring(ips, ".")
    v4 = pc.replace_substring_regex(ips, r"\.\d+$", ".0/24")
    out = np.asarray(v4.to_pylist(), dtype=object)
    v6_idx = np.flatnonzero(~np.asarray(is_v4.fill_null(False)))
    # IPv6 needs real parsing (zero compression); there are few distinct v6 addresses.
    for i in v6_idx:
        out[i] = str(ipaddress.ip_network(f"{ips[i].as_py()}/48", strict=False))
    return pa.array(out, type=pa.string())


def ip_info(ips: pa.Array, intel: pa.Table | None) -> pa.Table:
    """Kind, ASN and subnet of each distinct client IP."""
    classified = classify_ips(ips, intel)
    asn = pc.if_else(
        pc.is_valid(classified["asn"]),
        pc.binary_join_element_wise("AS", classified["asn"].cast(pa.string()), ""),
        pc.coalesce(classified["as_org"], pa.scalar("unknown")),
    )
    return pa.table(
        {
            "client_ip": classified["ip"].cast(pa.string()),
            "subnet": subnet_of(classified["ip"]),
            "ip_kind": pc.coalesce(classified["kind"], pa.scalar("unknown")),
            "asn": asn,
        },
        schema=IP_INFO,
    )


def _time_columns(ts: pa.Array) -> dict[str, pa.Array]:
    # DuckDB hands timestamps back in microseconds; the contract's unit is milliseconds.
    ms = pc.cast(pc.cast(ts, TIMESTAMP), pa.int64()).to_numpy(zero_copy_only=False)
    day = ms // MS_PER_DAY
    return {
        "ts_ms": pa.array(ms),
        "day": pa.array(day),
        "hour": pa.array((ms - day * MS_PER_DAY) // MS_PER_HOUR),
        # 1970-01-01 was a Thursday: shift so Monday = 0.
        "weekday": pa.array((day + 3) % 7),
    }


# The link graph reads only the first LINK_BANDS paraphrase bands: computing the other twelve
# cost a fifth of the signals' time, and storing them half of the enriched table's bytes.
ENRICH_SIGNALS = tuple(
    TemplateSignal(bands=LINK_BANDS) if isinstance(s, TemplateSignal) else s for s in SIGNALS
)


def enrich_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    """One batch of contract events -> carried columns + time columns + request signals."""
    signals = compute_signals(batch, ENRICH_SIGNALS)
    cols: dict[str, pa.Array] = {name: batch.column(name) for name in CARRIED}
    cols.update(_time_columns(batch.column("timestamp")))
    for name in signals.schema.names:
        if name != "request_id":
            cols[name] = signals.column(name)
    return pa.RecordBatch.from_pydict(cols)


# From this many events on, signals run in worker processes: the Arrow kernels release the
# GIL but the Python between them does not, and processes also read their own row groups.
# Below it, the processes' start-up (imports) costs more than it saves.
PROCESS_MIN_ROWS = 1_000_000


def _batches(con: duckdb.DuckDBPyConnection, events: Path, rows: int) -> Iterator[pa.RecordBatch]:
    reader = con.sql(f"SELECT * FROM read_parquet({sql_path(events)})").to_arrow_reader(
        batch_size=rows
    )
    yield from reader


RowGroup = tuple[str, int]


def _row_groups(events_glob: Path) -> tuple[list[RowGroup], int]:
    """(file, row group) of every row group of the matching Parquet files, in file order, and
    their total rows (from the footers, each file opened once)."""
    groups: list[RowGroup] = []
    rows = 0
    for f in sorted(glob.glob(events_glob.as_posix())):
        meta = pq.ParquetFile(f).metadata
        groups += [(f, i) for i in range(meta.num_row_groups)]
        rows += meta.num_rows
    return groups, rows


WORKER_BATCH_ROWS = 131_072


def _enrich_row_group(task: RowGroup) -> pa.Table:
    """Runs in a worker process: reads its own rows, so prompt text never crosses processes,
    in slices, so a huge row group does not have to fit in memory (its narrow output does)."""
    path, index = task
    slices = pq.ParquetFile(path).iter_batches(batch_size=WORKER_BATCH_ROWS, row_groups=[index])
    return pa.Table.from_batches([enrich_batch(b) for b in slices])


def _bounded_map(fn: Callable, items: Iterable, pool: Executor, in_flight: int) -> Iterator:
    """Like Executor.map, in order, but with at most `in_flight` items submitted at a time."""
    pending: deque[Future] = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= in_flight:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _enriched_batches(
    con: duckdb.DuckDBPyConnection, events_glob: Path, batch_rows: int, workers: int
) -> Iterator[pa.RecordBatch | pa.Table]:
    """Enriched batches in input order: worker processes per row group for big inputs,
    threads over DuckDB's batches for small ones."""
    groups, rows = _row_groups(events_glob)
    if workers > 1 and rows >= PROCESS_MIN_ROWS:
        # spawn, not fork: this process already runs DuckDB's threads.
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            yield from _bounded_map(_enrich_row_group, groups, pool, workers + 1)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        batches = _batches(con, events_glob, batch_rows)
        yield from _bounded_map(enrich_batch, batches, pool, workers + 1)


def enrich_events(
    con: duckdb.DuckDBPyConnection,
    events_glob: Path,
    out: Path,
    intel: pa.Table | None = None,
    batch_rows: int = 131_072,
    workers: int = 2,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Stream events through the request signals and IP information into `out` (Parquet);
    returns rows written.

    IP kind, ASN and subnet are looked up once per distinct client address (one column scan
    first) and joined onto each enriched batch as it is written, so the table is written once.
    """
    info = client_ip_info(con, events_glob, intel)
    writer: pq.ParquetWriter | None = None
    written = 0
    for enriched in _enriched_batches(con, events_glob, batch_rows, workers):
        enriched = with_ip_info(enriched, info)
        if writer is None:
            writer = pq.ParquetWriter(out, enriched.schema, compression="zstd")
        writer.write(enriched)
        written += enriched.num_rows
        if on_batch:
            on_batch(enriched.num_rows)
    if writer is None:
        raise ValueError("no events to enrich")
    writer.close()
    return written


def client_ip_info(
    con: duckdb.DuckDBPyConnection, events_glob: Path, intel: pa.Table | None
) -> pa.Table:
    """`ip_info` of every distinct client IP of the events."""
    ips = con.sql(
        f"SELECT DISTINCT client_ip FROM read_parquet({sql_path(events_glob)})"
    ).to_arrow_table()["client_ip"]
    return ip_info(ips.combine_chunks(), intel)


def with_ip_info(enriched: pa.RecordBatch | pa.Table, info: pa.Table) -> pa.Table:
    """Enriched rows + `subnet`, `ip_kind`, `asn` of their client IP (null when it has none)."""
    rows = pa.Table.from_batches([enriched]) if isinstance(enriched, pa.RecordBatch) else enriched
    at = pc.index_in(rows["client_ip"].cast(pa.string()), value_set=info["client_ip"])
    for name in ("subnet", "ip_kind", "asn"):
        rows = rows.append_column(name, info[name].take(at))
    return rows
