"""The link-graph and campaign-assignment steps shared by `detect` and the service's analysis.

One definition, so the batch job and the live service cannot drift apart.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import ibis
import ibis.expr.types as ir
import pyarrow as pa
import pyarrow.parquet as pq

from distillguard.campaigns import build as cb
from distillguard.campaigns.assemble import assign_campaigns, cluster_capability_mix
from distillguard.links.evidence import evidence
from distillguard.links.graph import (
    account_order,
    expected_pair_rows,
    key_sizes,
    pair_edges,
    pair_part,
    pair_rows,
)
from distillguard.links.twins import twin_edges, with_twins

# Pair rows aggregated at once; more are aggregated in parts (about 3 GB of hash table each).
PAIRS_PER_PART = 50_000_000
# The backend table of `account_order`: made by `link_graph`, read by `campaign_assignment`.
ORDER_TABLE = "account_order"


class ParquetStore:
    """Materialises expressions as Parquet under `folder` and reads them back.

    Used for the link graph's big intermediates (evidence, pair rows) so that each is computed
    once and streamed to disk instead of held in memory. Plain ibis, so any backend can use it.
    """

    def __init__(self, be: ibis.BaseBackend, folder: Path) -> None:
        self.be = be
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def put(self, expr: ir.Table, name: str) -> ir.Table:
        path = self.folder / f"{name}.parquet"
        self.drop(name)
        self.be.to_parquet(expr, path)
        return self.be.read_parquet(path.as_posix(), table_name=name)

    def put_parts(self, expr: ir.Table, name: str, column: str) -> None:
        """Write `expr` split by the values of `column` (a folder per value, Hive style), so
        each part is read back alone instead of filtered out of a scan of the whole."""
        self.drop(name)
        # The two backends name the writer option differently.
        option = "partitionBy" if self.be.name == "pyspark" else "partition_by"
        self.be.to_parquet(expr, self.folder / f"{name}.parquet", **{option: column})

    def part(self, name: str, column: str, value: int) -> ir.Table | None:
        """The rows of part `column = value` written by `put_parts` (None if it has none)."""
        folder = self.folder / f"{name}.parquet" / f"{column}={value}"
        if not folder.is_dir():
            return None
        return self.be.read_parquet((folder / "*.parquet").as_posix(), table_name=f"{name}_{value}")

    def drop(self, name: str) -> None:
        path = self.folder / f"{name}.parquet"
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def link_graph(
    be: ibis.BaseBackend,
    e: ir.Table,
    accounts: ir.Table | None,
    fp: pa.Table,
    store: ParquetStore | None = None,
) -> tuple[pa.Table, ir.Table]:
    """The weighted account graph (all evidence views plus behavioural twins) and the
    evidence expression it was built from.

    With a `store`, the evidence and the pair rows are materialised once and the pairs are
    aggregated in parts of about `PAIRS_PER_PART` rows (bounded memory at full scale).
    """
    order = be.create_table(ORDER_TABLE, account_order(fp["account_id"]), overwrite=True)
    ev = evidence(e, accounts, order)
    if store is None:
        tables = [pair_edges(pair_rows(ev, fp.num_rows), order).to_pyarrow()]
    else:
        ev = store.put(ev, "link_evidence")
        tables = _edges_in_parts(store, ev, order, fp.num_rows)
    # with_twins sorts the merged edges by (a, b).
    return with_twins(pa.concat_tables(tables), twin_edges(fp)), ev


def _edges_in_parts(
    store: ParquetStore, ev: ir.Table, order: ir.Table, total_accounts: int
) -> list[pa.Table]:
    """The graph's edges from pair rows written once, split into parts of about
    `PAIRS_PER_PART` rows by `pair_part`, each part summed on its own."""
    sizes = store.put(key_sizes(ev, total_accounts), "link_keys")
    parts = max(1, math.ceil(expected_pair_rows(sizes) / PAIRS_PER_PART))
    pairs = pair_rows(ev, total_accounts, sizes)
    store.put_parts(pairs.mutate(part=pair_part(pairs, parts)), "link_pairs", "part")
    edge_files = store.folder / "link_edges"
    edge_files.mkdir(exist_ok=True)
    for i in range(parts):
        rows = store.part("link_pairs", "part", i)
        if rows is not None:
            # Each part's edges go to disk at once: held as query results, ten parts took
            # twice their size in memory (~5 GB at full scale) until the last was done.
            pq.write_table(pair_edges(rows, order).to_pyarrow(), edge_files / f"{i}.parquet")
    store.drop("link_pairs")
    store.drop("link_keys")
    tables = [pq.read_table(f) for f in sorted(edge_files.glob("*.parquet"))]
    shutil.rmtree(edge_files)
    return tables


def campaign_assignment(
    be: ibis.BaseBackend, ev: ir.Table, fp: pa.Table, scored_accounts: pa.Table, graph: pa.Table
) -> pa.Table:
    """Scored accounts with `campaign_id`: flagged clusters merged into campaigns."""
    flagged = scored_accounts.filter(scored_accounts["flagged"])
    members = be.create_table(
        "flagged_members", flagged.select(["account_id", "cluster"]), overwrite=True
    ).join(be.table(ORDER_TABLE), "account_id")
    similarity = cb.cluster_content_similarity(ev, members).to_pyarrow()
    mix = cluster_capability_mix(fp, scored_accounts)
    requests = fp.select(["account_id", "requests"])
    return assign_campaigns(scored_accounts, graph, requests, similarity, mix)
