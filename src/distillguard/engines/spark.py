"""The distributed engine: the same stages on Apache Spark.

- Request signals run inside Spark executors through `mapInArrow`, calling the very Arrow-batch
  function the embedded engine uses (`pipeline.enrich.enrich_batch`).
- Relational stages (fingerprints, evidence, link graph, campaign figures) are the shared ibis
  expressions, compiled to Spark SQL by ibis's PySpark backend.
- Only the small results (one row per account, per edge, per campaign) come back to the driver,
  where graph clustering and scoring run exactly as on DuckDB.

pyspark is an optional dependency (the `spark` extra); import this module only when asked for.
"""

from __future__ import annotations

import glob
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import ibis.expr.types as ir
import pyarrow as pa
import pyarrow.compute as pc
from ibis.backends.pyspark import Backend as PySparkBackend
from ibis.formats.pyarrow import PyArrowData
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from distillguard.contract import EVENTS
from distillguard.errors import UserError
from distillguard.pipeline.enrich import CARRIED, IP_INFO, enrich_batch, ip_info
from distillguard.signals import signal_schema

# Rows per Arrow batch handed to the signals: large enough that batch-wide de-duplication of
# templated prompts pays off, small enough to bound a Python worker's memory.
ARROW_BATCH_ROWS = 65_536
TIME_COLUMNS = ("ts_ms", "day", "hour", "weekday")


def spark_session(
    master: str | None = None,
    shuffle_partitions: int | None = None,
    conf: Mapping[str, str] | None = None,
) -> SparkSession:
    """A SparkSession for detection (reuses the active one, e.g. under spark-submit).

    `master` None keeps whatever spark-submit chose (plain Python: local mode on every core).
    Sessions run in UTC: the contract's timestamps are UTC and day boundaries are UTC days.
    """
    builder = SparkSession.builder.appName("distillguard")
    active = SparkSession.getActiveSession()
    if master:
        builder = builder.master(master)
    settings = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(ARROW_BATCH_ROWS),
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.ui.showConsoleProgress": "false",
    }
    if "PYSPARK_PYTHON" not in os.environ and active is None and _runs_locally(master):
        # Python workers must import distillguard: on this machine, this very interpreter (the
        # SparkContext reads the variable when it starts; on a cluster, set it for the nodes).
        os.environ["PYSPARK_PYTHON"] = sys.executable
    if active is None and "spark.sql.warehouse.dir" not in (conf or {}):
        # Spark creates its (unused) warehouse directory on start: not in the caller's cwd.
        settings["spark.sql.warehouse.dir"] = os.path.join(tempfile.gettempdir(), "dg-spark-wh")
    if shuffle_partitions is None and active is None and _runs_locally(master):
        # Spark's default of 200 shuffle partitions is for clusters; one machine wants a few
        # per core.
        shuffle_partitions = 2 * (os.cpu_count() or 1)
    if shuffle_partitions:
        settings["spark.sql.shuffle.partitions"] = str(shuffle_partitions)
    settings.update(conf or {})
    for key, value in settings.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")  # detect reports its own progress and errors
    for key, value in settings.items():  # getOrCreate ignores settings of a running session
        if session.conf.isModifiable(key):
            session.conf.set(key, value)
    return session


def _runs_locally(master: str | None) -> bool:
    """Local mode, and not launched by spark-submit (which sets the gateway port)."""
    return (master or "local").startswith("local") and "PYSPARK_GATEWAY_PORT" not in os.environ


class SparkBackend(PySparkBackend):
    """ibis's PySpark backend with two changes the pipeline needs.

    - `create_table` of in-memory data registers a temporary view (the stock backend writes a
      managed table into a warehouse directory, which a detection run must not leave behind).
    - `to_pyarrow` collects through Spark's own Arrow path (`DataFrame.toArrow`) instead of
      pandas, so 64-bit hashes and nullable integers come back exactly.
    """

    def create_table(
        self,
        name: str,
        /,
        obj: Any = None,
        *,
        schema: Any = None,
        database: str | None = None,
        temp: bool | None = None,
        overwrite: bool = False,
        format: str = "parquet",
        partition_by: str | list[str] | None = None,
    ) -> ir.Table:
        if isinstance(obj, pa.Table) and database is None:
            if not overwrite and self._session.catalog.tableExists(name):
                raise ValueError(f"table {name} exists")
            self._session.createDataFrame(_spark_safe(obj)).createOrReplaceTempView(name)
            return self.table(name)
        return super().create_table(
            name,
            obj,
            schema=schema,
            database=database,
            temp=temp,
            overwrite=overwrite,
            format=format,
            partition_by=partition_by,
        )

    def to_pyarrow(
        self,
        expr: ir.Expr,
        /,
        *,
        params: Mapping[ir.Scalar, Any] | None = None,
        limit: int | str | None = None,
        **kwargs: Any,
    ) -> pa.Table:
        table_expr = expr.as_table()
        self._run_pre_execute_hooks(table_expr)
        sql = self.compile(table_expr, params=params, limit=limit, **kwargs)
        with self._safe_raw_sql(sql) as df:
            arrow = df.toArrow()
        table = PyArrowData.convert_table(arrow, table_expr.schema())
        return expr.__pyarrow_result__(table)


def _spark_safe(table: pa.Table) -> pa.Table:
    """Spark has no unsigned integers or dictionary columns: widen or decode them first."""
    fields = []
    for f in table.schema:
        t = f.type
        if pa.types.is_dictionary(t):
            t = t.value_type
        if pa.types.is_unsigned_integer(t):
            t = pa.int64()
        if pa.types.is_large_string(t):
            t = pa.string()
        fields.append(pa.field(f.name, t))
    return table.cast(pa.schema(fields))


def _fresh_session(base: SparkSession) -> SparkSession:
    """A session of its own for one run: its temporary views cannot meet another run's, while
    the SparkContext (executors, JVM) is shared. SQL settings are carried over."""
    session = base.newSession()
    for key, value in base.conf.getAll.items():
        if key.startswith("spark.sql.") and session.conf.isModifiable(key):
            session.conf.set(key, value)  # static settings are shared already
    return session


def ibis_backend(session: SparkSession) -> SparkBackend:
    """The ibis backend over `session` (the shared expressions compile to Spark SQL)."""
    backend = SparkBackend()
    backend.register_options()  # the compiler reads ibis.options.pyspark
    backend.do_connect(session)
    return backend


def enriched_schema() -> pa.Schema:
    """Arrow schema of `enrich_batch`'s output before IP information is attached."""
    events = {f.name: f.type for f in EVENTS}
    fields = [pa.field(name, events[name]) for name in CARRIED]
    fields += [pa.field(name, pa.int64()) for name in TIME_COLUMNS]
    fields += [f for f in signal_schema() if f.name != "request_id"]
    return pa.schema([f.with_nullable(True) for f in fields])


def _enrich_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Runs on executors: the embedded engine's per-batch enrichment, cast to one schema."""
    schema = enriched_schema()
    for batch in batches:
        if batch.num_rows:
            out = enrich_batch(batch)
            yield pa.RecordBatch.from_arrays(
                [out.column(f.name).cast(f.type) for f in schema], schema=schema
            )


def _paths(source: str) -> list[str]:
    """A glob expanded on the driver (Spark warns about glob paths it checks for metadata)."""
    return sorted(glob.glob(source)) if any(ch in source for ch in "*?[") else [source]


def read_events(session: SparkSession, events: str, since_ms: int | None = None) -> DataFrame:
    """Ingested events (contract Parquet), optionally only those at or after `since_ms`."""
    df = session.read.parquet(*_paths(events))
    if since_ms is not None:
        df = df.filter(F.col("timestamp") >= F.timestamp_millis(F.lit(since_ms)))
    return df


def enrich(session: SparkSession, events: DataFrame, intel: pa.Table | None) -> DataFrame:
    """Events -> the enriched table: request signals on executors, then IP information.

    IP kind, ASN and subnet are computed on the driver for the distinct client IPs (far fewer
    than requests) and broadcast to the join.
    """
    signals = events.mapInArrow(_enrich_partition, from_arrow_schema(enriched_schema()))
    ips = events.select("client_ip").distinct().toArrow()["client_ip"].combine_chunks()
    info = ip_info(pc.cast(ips, pa.string()), intel)
    info_df = session.createDataFrame(_spark_safe(info.cast(IP_INFO)))
    joined = signals.join(F.broadcast(info_df), on="client_ip", how="left")
    names = [*enriched_schema().names, "subnet", "ip_kind", "asn"]
    return joined.select(*names)


def write_enriched(df: DataFrame, out: Path) -> None:
    """Write the enriched table as a directory of Parquet files."""
    df.write.mode("overwrite").option("compression", "zstd").parquet(out.as_posix())


def read_table(backend: SparkBackend, path: str, name: str) -> ir.Table:
    """A Parquet file, directory or glob as an ibis table on Spark."""
    backend._session.read.parquet(*_paths(path)).createOrReplaceTempView(name)
    return backend.table(name)


class SparkEngine:
    """`detect --engine spark`: the same stages as `DuckDBEngine`, on a SparkSession."""

    name = "spark"

    def __init__(
        self,
        master: str | None = None,
        shuffle_partitions: int | None = None,
        session: SparkSession | None = None,
    ) -> None:
        self.session = _fresh_session(session or spark_session(master, shuffle_partitions))
        self.backend = ibis_backend(self.session)
        self._cached: list[DataFrame] = []

    def enrich(
        self,
        events: Path,
        intel: pa.Table | None,
        work: Path,
        since_ms: int | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> str:
        """Ingested events (a directory of Parquet files) -> `work/enriched/` (Parquet parts)."""
        new = read_events(self.session, events.as_posix(), since_ms)
        if since_ms is not None and new.isEmpty():
            raise UserError("no events on or after --since")
        df = enrich(self.session, new, intel)
        out = work / "enriched"
        write_enriched(df, out)  # progress is Spark's to show (its UI): no per-batch callback
        return out.as_posix()

    def count(self, source: str) -> int:
        return self.session.read.parquet(*_paths(source)).count()

    def split_days(self, source: str, out: Path) -> None:
        """Write `source` as one sub-directory per UTC day, `part_day=N/`, all columns kept."""
        df = self.session.read.parquet(*_paths(source)).withColumn("part_day", F.col("day"))
        df.write.mode("overwrite").option("compression", "zstd").partitionBy("part_day").parquet(
            out.as_posix()
        )

    def read(self, source: str, name: str) -> ir.Table:
        """The enriched table as an ibis table, kept in executor memory (spilling to disk):
        every later stage scans it several times."""
        df = self.session.read.parquet(*_paths(source)).persist(StorageLevel.MEMORY_AND_DISK)
        self._cached.append(df)
        df.createOrReplaceTempView(name)
        return self.backend.table(name)

    def close(self) -> None:
        """Free this run's cached data; the session stays (spark-submit's or a test's)."""
        for df in self._cached:
            df.unpersist()


__all__ = [
    "SparkBackend",
    "SparkEngine",
    "enrich",
    "enriched_schema",
    "ibis_backend",
    "read_events",
    "read_table",
    "spark_session",
    "write_enriched",
]
