"""Assemble flagged clusters into campaigns.

Leiden may cut one large operation into several dense pieces; pieces that are still joined by
strong links (their summed edge weight) are one campaign. Campaign ids are numbered by volume,
largest first, so `campaign-01` is always the biggest of the run.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

# Two flagged clusters are one campaign when the strong links between them carry at least this
# share of the weaker cluster's internal link weight: Leiden cut a piece off one operation.
MERGE_SHARE = 0.1
STRONG_EDGE = 0.5
MIN_CAMPAIGN_ACCOUNTS = 2


def assign_campaigns(accounts: pa.Table, edges: pa.Table, requests: pa.Table) -> pa.Table:
    """Add `campaign_id` to the scored accounts (null for unflagged or unlinked accounts).

    `accounts` has account_id, flagged, cluster; `requests` has account_id, requests.
    """
    flagged = accounts.filter(accounts["flagged"])
    clusters = pc.unique(flagged["cluster"]).to_numpy()
    groups = _merge_linked_clusters(clusters, accounts, edges)
    cluster_ids = accounts["cluster"].to_numpy()
    is_flagged = accounts["flagged"].to_numpy(zero_copy_only=False)
    group = np.full(len(cluster_ids), -1)
    lookup = dict(zip(clusters.tolist(), groups.tolist(), strict=True))
    for i in np.flatnonzero(is_flagged):  # flagged accounts only: a small set
        group[i] = lookup[int(cluster_ids[i])]
    names = _name_by_volume(accounts["account_id"], group, requests)
    return accounts.append_column("campaign_id", pa.array(names, pa.string()))


def _merge_linked_clusters(clusters: np.ndarray, accounts: pa.Table, edges: pa.Table) -> np.ndarray:
    if len(clusters) == 0:
        return np.zeros(0, dtype=np.int64)
    pos = {int(c): i for i, c in enumerate(clusters)}
    of = dict(zip(accounts["account_id"].to_pylist(), accounts["cluster"].to_pylist(), strict=True))
    ca = np.array([pos.get(of[x], -1) for x in edges["a"].to_pylist()], dtype=np.int64)
    cb = np.array([pos.get(of[x], -1) for x in edges["b"].to_pylist()], dtype=np.int64)
    w = edges["weight"].to_numpy()
    n = len(clusters)
    known = (ca >= 0) & (cb >= 0)
    internal = np.bincount(ca[known & (ca == cb)], weights=w[known & (ca == cb)], minlength=n)
    keep = known & (ca != cb) & (w >= STRONG_EDGE)
    between = coo_matrix((w[keep], (ca[keep], cb[keep])), shape=(n, n)).tocsr()
    between = (between + between.T).tocoo()
    weaker = np.minimum(internal[between.row], internal[between.col])
    joined = between.data >= MERGE_SHARE * np.maximum(weaker, 1e-9)
    strong = coo_matrix(
        (np.ones(joined.sum()), (between.row[joined], between.col[joined])), shape=(n, n)
    )
    _, labels = connected_components(strong, directed=False)
    return labels


def _name_by_volume(
    account_ids: pa.Array, group: np.ndarray, requests: pa.Table
) -> list[str | None]:
    req = dict(
        zip(requests["account_id"].to_pylist(), requests["requests"].to_pylist(), strict=True)
    )
    ids = account_ids.to_pylist()
    volume: dict[int, int] = {}
    members: dict[int, int] = {}
    for i in np.flatnonzero(group >= 0):
        g = int(group[i])
        volume[g] = volume.get(g, 0) + int(req.get(ids[i], 0))
        members[g] = members.get(g, 0) + 1
    kept = [g for g in volume if members[g] >= MIN_CAMPAIGN_ACCOUNTS]
    ranked = sorted(kept, key=lambda g: (-volume[g], g))
    name = {g: f"campaign-{r + 1:02d}" for r, g in enumerate(ranked)}
    return [name.get(int(g)) if g >= 0 else None for g in group]
