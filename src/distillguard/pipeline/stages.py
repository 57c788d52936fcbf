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

from distillguard.campaigns import build as cb
from distillguard.campaigns.assemble import assign_campaigns, cluster_capability_mix
from distillguard.links.evidence import evidence
from distillguard.links.graph import account_order, pair_edges, pair_rows
from distillguard.links.twins import twin_edges, with_twins

# Pair rows aggregated at once; more are aggregated in parts (about 3 GB of hash table each).
PAIRS_PER_PART = 50_000_000


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
    aggregated in parts of at most `PAIRS_PER_PART` rows (bounded memory at full scale).
    """
    order = be.create_table("account_order", account_order(fp["account_id"]), overwrite=True)
    ev = evidence(e, accounts).semi_join(order, "account_id")
    if store is not None:
        ev = store.put(ev, "link_evidence")
    pairs = pair_rows(ev, order, fp.num_rows)
    parts = 1
    if store is not None:
        pairs = store.put(pairs, "link_pairs")
        parts = max(1, math.ceil(int(pairs.count().execute()) / PAIRS_PER_PART))
    tables = [pair_edges(pairs, order, part, parts).to_pyarrow() for part in range(parts)]
    if store is not None:
        store.drop("link_pairs")
    # with_twins sorts the merged edges by (a, b).
    return with_twins(pa.concat_tables(tables), twin_edges(fp)), ev


def campaign_assignment(
    be: ibis.BaseBackend, ev: ir.Table, fp: pa.Table, scored_accounts: pa.Table, graph: pa.Table
) -> pa.Table:
    """Scored accounts with `campaign_id`: flagged clusters merged into campaigns."""
    flagged = scored_accounts.filter(scored_accounts["flagged"])
    members = be.create_table(
        "flagged_members", flagged.select(["account_id", "cluster"]), overwrite=True
    )
    similarity = cb.cluster_content_similarity(ev, members).to_pyarrow()
    mix = cluster_capability_mix(fp, scored_accounts)
    requests = fp.select(["account_id", "requests"])
    return assign_campaigns(scored_accounts, graph, requests, similarity, mix)
