"""Enrichment: events + request signals + IP intelligence -> one narrow table for relational stages.

Prompt text is read here once, turned into signal columns, and never carried further: the
relational stages (fingerprints, links) work on this narrow table only.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from distillguard.contract import TIMESTAMP
from distillguard.engines.duckdb import sql_path
from distillguard.ingest.ipintel import classify_ips
from distillguard.signals import compute_signals

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


def enrich_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    """One batch of contract events -> carried columns + time columns + request signals."""
    signals = compute_signals(batch)
    cols: dict[str, pa.Array] = {name: batch.column(name) for name in CARRIED}
    cols.update(_time_columns(batch.column("timestamp")))
    for name in signals.schema.names:
        if name != "request_id":
            cols[name] = signals.column(name)
    return pa.RecordBatch.from_pydict(cols)


def _batches(con: duckdb.DuckDBPyConnection, events: Path, rows: int) -> Iterator[pa.RecordBatch]:
    reader = con.sql(f"SELECT * FROM read_parquet({sql_path(events)})").to_arrow_reader(
        batch_size=rows
    )
    yield from reader


def _bounded_map(
    fn: Callable[[pa.RecordBatch], pa.RecordBatch],
    items: Iterator[pa.RecordBatch],
    workers: int,
) -> Iterator[pa.RecordBatch]:
    """Like Executor.map, in order, but with at most `workers + 1` batches in flight."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque[Future[pa.RecordBatch]] = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def enrich_events(
    con: duckdb.DuckDBPyConnection,
    events_glob: Path,
    out: Path,
    batch_rows: int = 131_072,
    workers: int = 2,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Stream events through the request signals into `out` (Parquet); returns rows written.

    Signals are pure Arrow functions that release the GIL inside compute kernels, so two
    threads keep both cores busy while DuckDB streams the next batch.
    """
    writer: pq.ParquetWriter | None = None
    written = 0
    batches = _batches(con, events_glob, batch_rows)
    for enriched in _bounded_map(enrich_batch, batches, workers):
        if writer is None:
            writer = pq.ParquetWriter(out, enriched.schema, compression="zstd")
        writer.write_batch(enriched)
        written += enriched.num_rows
        if on_batch:
            on_batch(enriched.num_rows)
    if writer is None:
        raise ValueError("no events to enrich")
    writer.close()
    return written


def attach_ip_info(
    con: duckdb.DuckDBPyConnection, enriched: Path, intel: pa.Table | None, out: Path
) -> None:
    """Join the IP kind/ASN/subnet of every distinct client IP onto the enriched events."""
    ips = con.sql(
        f"SELECT DISTINCT client_ip FROM read_parquet({sql_path(enriched)})"
    ).to_arrow_table()["client_ip"]
    info = ip_info(ips.combine_chunks(), intel)
    con.register("ip_info_view", info)
    con.execute(
        f"COPY (SELECT e.*, i.subnet, i.ip_kind, i.asn FROM read_parquet({sql_path(enriched)}) e "
        f"LEFT JOIN ip_info_view i USING (client_ip)) TO {sql_path(out)} "
        "(FORMAT parquet, COMPRESSION zstd)"
    )
    con.unregister("ip_info_view")
