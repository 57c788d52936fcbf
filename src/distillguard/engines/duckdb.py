"""The embedded engine: DuckDB over Parquet, with bounded memory and spill to disk."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import ibis

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
