"""The link-graph and campaign-assignment steps shared by `detect` and the service's analysis.

One definition, so the batch job and the live service cannot drift apart.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from distillguard.campaigns import build as cb
from distillguard.campaigns.assemble import assign_campaigns, cluster_capability_mix
from distillguard.links.evidence import evidence
from distillguard.links.graph import account_order
from distillguard.links.graph import edges as link_edges
from distillguard.links.twins import twin_edges, with_twins


def link_graph(
    be: ibis.BaseBackend, e: ir.Table, accounts: ir.Table | None, fp: pa.Table
) -> tuple[pa.Table, ir.Table]:
    """The weighted account graph (all evidence views plus behavioural twins) and the
    evidence expression it was built from."""
    order = be.create_table("account_order", account_order(fp["account_id"]), overwrite=True)
    ev = evidence(e, accounts).semi_join(order, "account_id")
    graph = with_twins(link_edges(ev, order, fp.num_rows).to_pyarrow(), twin_edges(fp))
    return graph, ev


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
