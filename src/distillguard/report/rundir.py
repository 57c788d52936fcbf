"""Read a `detect --out DIR` run directory defensively for the report, `explain` and exports.

Files are optional beyond `accounts.parquet`: each accessor returns None (or an empty result)
when a file or a column is absent, so a partial run, an older run or a run made while column
names are still moving still produces a report. Aggregations over the request-level tables run
as DuckDB SQL straight on the Parquet files, so nothing row-level is loaded into Python.
"""

from __future__ import annotations

import glob
import json
from functools import cached_property
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from distillguard.errors import UserError

# Table name -> path relative to the run directory.
FILES = {
    "accounts": "accounts.parquet",
    "campaigns": "campaigns.parquet",
    "scores": "work/scores.parquet",
    "fingerprints": "work/fingerprints.parquet",
    "edges": "work/edges.parquet",
    "clusters": "work/clusters.parquet",
    "campaign_daily": "work/campaign_daily.parquet",
    "campaign_releases": "work/campaign_releases.parquet",
    "enriched": "work/enriched.parquet",
    "events": "work/ingest/events/*.parquet",
    "signup": "work/ingest/accounts.parquet",
    "releases": "work/ingest/releases.parquet",
    "ip_intel": "work/ingest/ip_intel.parquet",
}
ANONYMOUS_KINDS = ("vpn", "proxy", "tor")
# Evidence views in edges.parquet -> short label shown to analysts.
EDGE_VIEWS = {
    "n_ip": "IP",
    "n_subnet": "subnet",
    "n_template": "template",
    "n_wrapper": "wrapper",
    "n_sentence": "sentences",
    "n_system": "system prompt",
    "n_sync": "synchronised",
    "n_payment": "payment",
    "n_device": "device",
    "n_signup": "batch sign-up",
}


def sql_str(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


class RunDir:
    """Lazy, defensive access to the files of one detection run."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not (self.path / "accounts.parquet").exists():
            raise UserError(f"{self.path} is not a detect run directory (no accounts.parquet)")
        self.con = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")
        self.views: dict[str, list[str]] = {}
        for name, rel in FILES.items():
            self._register(name, rel)
        if "enriched" not in self.views:
            self._register_enriched_elsewhere()

    def _register_enriched_elsewhere(self) -> None:
        """Spark runs write `work/enriched/` as a directory; `--state` runs keep the enriched
        requests by day in the state directory named in summary.json."""
        self._register("enriched", "work/enriched/*.parquet")
        if "enriched" in self.views:
            return
        state = self.summary.get("incremental", {}).get("state") if self.summary else None
        if state:
            self._register("enriched", str(Path(state).resolve() / "enriched" / "*" / "*.parquet"))

    def _register(self, name: str, rel: str) -> None:
        target = self.path / rel
        exists = bool(glob.glob(str(target))) if "*" in rel else target.exists()
        if not exists:
            return
        self.con.execute(
            f"CREATE VIEW {name} AS SELECT * FROM read_parquet({sql_str(str(target))})"
        )
        cols = self.con.sql(f"DESCRIBE {name}").fetchall()
        self.views[name] = [c[0] for c in cols]

    def has(self, view: str, *columns: str) -> bool:
        """True when `view` exists and carries every one of `columns`."""
        return view in self.views and all(c in self.views[view] for c in columns)

    def sql(self, query: str) -> pa.Table:
        return self.con.sql(query).to_arrow_table()

    def rows(self, query: str) -> list[dict[str, Any]]:
        return self.sql(query).to_pylist()

    def table(self, view: str) -> pa.Table | None:
        return self.sql(f"SELECT * FROM {view}") if view in self.views else None

    @cached_property
    def summary(self) -> dict[str, Any]:
        path = self.path / "summary.json"
        if not path.exists():
            return {}
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            return {}

    @cached_property
    def scores_view(self) -> str:
        """The per-account score view: work/scores.parquet, else the contract accounts file."""
        full = self.has("scores", "account_id", "risk", "campaign_id")
        return "scores" if full else "accounts"

    def column_or(self, view: str, column: str, default_sql: str) -> str:
        """`column` when `view` has it, else a SQL default expression (for optional columns)."""
        return column if self.has(view, column) else default_sql

    def account_ids_sql(self, campaign_id: str) -> str:
        """SQL subquery: the accounts of one campaign."""
        return (
            f"(SELECT account_id FROM {self.scores_view} "
            f"WHERE campaign_id = {sql_str(campaign_id)})"
        )


def read_table(path: Path) -> pa.Table | None:
    return pq.read_table(path) if path.exists() else None
