"""The embedded engine: DuckDB over Parquet, with bounded memory and spill to disk."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import duckdb
import ibis
import pyarrow as pa

from distillguard.errors import UserError

DEFAULT_MEMORY_LIMIT = os.environ.get("DISTILLGUARD_MEMORY_LIMIT", "8GB")


def connect(
    temp_dir: Path | None = None,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
    threads: int | None = None,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that spills to `temp_dir` rather than exceeding `memory_limit`."""
    con = duckdb.connect()
    con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute("SET preserve_insertion_order = false")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    if temp_dir is not None:
        temp_dir.mkdir(parents=True, exist_ok=True)
        con.execute(f"SET temp_directory = '{temp_dir.as_posix()}'")
    return con


def ibis_backend(con: duckdb.DuckDBPyConnection) -> ibis.BaseBackend:
    """An ibis backend over an existing DuckDB connection, so both share tables."""
    return ibis.duckdb.from_connection(con)


def sql_path(path: Path) -> str:
    """A path quoted for use inside DuckDB SQL."""
    return "'" + path.as_posix().replace("'", "''") + "'"


class DuckDBEngine:
    """`detect`'s embedded engine: enrichment by streaming Arrow batches, ibis on DuckDB."""

    name = "duckdb"

    def __init__(
        self, work: Path, memory_limit: str = DEFAULT_MEMORY_LIMIT, threads: int | None = None
    ) -> None:
        self.con = connect(temp_dir=work / "spill", memory_limit=memory_limit, threads=threads)
        self.backend = ibis_backend(self.con)

    def enrich(
        self,
        events: Path,
        intel: pa.Table | None,
        work: Path,
        since_ms: int | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> str:
        """Ingested events (a directory of Parquet files) -> `work/enriched.parquet`.

        With `since_ms`, only events at or after it (the new days of an incremental run).
        Returns what `read` takes to open the result.
        """
        from distillguard.pipeline.enrich import enrich_events

        source = events / "*.parquet"
        if since_ms is not None:
            source = work / "events_since.parquet"
            self.con.execute(
                f"COPY (SELECT * FROM read_parquet({sql_path(events / '*.parquet')}) "
                f"WHERE epoch_ms(timestamp) >= {int(since_ms)}) TO {sql_path(source)} "
                "(FORMAT parquet, COMPRESSION zstd)"
            )
            if self.count(source.as_posix()) == 0:
                raise UserError("no events on or after --since")
        enriched = work / "enriched.parquet"
        enrich_events(self.con, source, enriched, intel, on_batch=on_batch)
        if since_ms is not None:
            source.unlink()
        return enriched.as_posix()

    def count(self, source: str) -> int:
        query = f"SELECT count(*) FROM read_parquet({sql_path(Path(source))})"
        return int(self.con.sql(query).fetchall()[0][0])

    def split_days(self, source: str, out: Path) -> None:
        """Write `source` as one sub-directory per UTC day, `part_day=N/`, all columns kept."""
        rows = f"SELECT *, day AS part_day FROM read_parquet({sql_path(Path(source))})"
        self.con.execute(
            f"COPY ({rows}) TO {sql_path(out)} "
            "(FORMAT parquet, COMPRESSION zstd, PARTITION_BY (part_day))"
        )

    def read(self, source: str, name: str) -> ibis.Table:
        return self.backend.read_parquet(source, table_name=name)

    def close(self) -> None:
        self.con.close()
