"""Assemble flagged clusters into campaigns.

Leiden may cut one large operation into several dense pieces; pieces whose accounts are mostly
strongly linked to another piece are one campaign. Campaign ids are numbered by volume,
largest first, so `campaign-01` is always the biggest of the run.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from distillguard.links.graph import edge_endpoints

# Two flagged clusters are one campaign when at least this share of one cluster's accounts
# have a strong link into the other: Leiden cut a piece off one operation.
MERGE_MEMBER_SHARE = 0.5
STRONG_EDGE = 0.5
# ...or when their pooled use of prompt templates or instruction sentences overlaps this much
# (histogram intersection): pieces of one operation draw on one prompt library.
MERGE_LIBRARY_SHARE = 0.2
# ...and only when they target the same capabilities (cosine of request-weighted mixes).
MERGE_CAPABILITY_COSINE = 0.9
MIN_CAMPAIGN_ACCOUNTS = 2


def assign_campaigns(
    accounts: pa.Table,
    edges: pa.Table,
    requests: pa.Table,
    similarity: pa.Table | None = None,
    capability_mix: dict[int, np.ndarray] | None = None,
) -> pa.Table:
    """Add `campaign_id` to the scored accounts (null for unflagged or unlinked accounts).

    `accounts` has account_id, flagged, cluster; `requests` has account_id, requests;
    `similarity` (c1, c2, view, similarity) is the pooled prompt-library overlap of flagged
    clusters (`campaigns.build.cluster_content_similarity`); `capability_mix` maps a cluster
    to its request-weighted capability shares (`cluster_capability_mix`).
    """
    flagged = accounts.filter(accounts["flagged"])
    clusters = pc.unique(flagged["cluster"]).to_numpy()
    if similarity is not None and capability_mix is not None:
        similarity = _same_targets(similarity, capability_mix)
    groups = _merge_linked_clusters(clusters, accounts, edges, similarity)
    cluster_ids = accounts["cluster"].to_numpy()
    is_flagged = accounts["flagged"].to_numpy(zero_copy_only=False)
    group = np.full(len(cluster_ids), -1)
    lookup = dict(zip(clusters.tolist(), groups.tolist(), strict=True))
    for i in np.flatnonzero(is_flagged):  # flagged accounts only: a small set
        group[i] = lookup[int(cluster_ids[i])]
    names = _name_by_volume(accounts["account_id"], group, requests)
    return accounts.append_column("campaign_id", pa.array(names, pa.string()))


def cluster_capability_mix(fingerprints: pa.Table, accounts: pa.Table) -> dict[int, np.ndarray]:
    """Request-weighted capability shares of each cluster's traffic."""
    cap_cols = [c for c in fingerprints.column_names if c.startswith("cap_")]
    fp = fingerprints.sort_by("account_id")
    acc = accounts.sort_by("account_id")
    cl = acc["cluster"].to_numpy()
    req = fp["requests"].to_numpy().astype(float)
    mix = np.column_stack([np.nan_to_num(fp[c].to_numpy().astype(float)) for c in cap_cols])
    k = int(cl.max()) + 1 if len(cl) else 0
    sums = np.zeros((k, len(cap_cols)))
    np.add.at(sums, cl, mix * req[:, None])
    return {c: sums[c] for c in np.unique(cl).tolist()}


def _same_targets(similarity: pa.Table, mix: dict[int, np.ndarray]) -> pa.Table:
    """Keep cluster pairs whose capability mixes point the same way."""

    def cosine(a: int, b: int) -> float:
        x, y = mix.get(a), mix.get(b)
        if x is None or y is None:
            return 0.0
        return float(x @ y / max(np.linalg.norm(x) * np.linalg.norm(y), 1e-12))

    keep = [
        cosine(int(a), int(b)) >= MERGE_CAPABILITY_COSINE
        for a, b in zip(similarity["c1"].to_pylist(), similarity["c2"].to_pylist(), strict=True)
    ]
    return similarity.filter(pa.array(keep, pa.bool_()))


def _merge_linked_clusters(
    clusters: np.ndarray, accounts: pa.Table, edges: pa.Table, similarity: pa.Table | None
) -> np.ndarray:
    """Connected components of flagged clusters, joining two when most members of one of
    them have a strong link into the other, or when both draw on one prompt library."""
    if len(clusters) == 0:
        return np.zeros(0, dtype=np.int64)
    n = len(clusters)
    pos = {int(c): i for i, c in enumerate(clusters)}
    ids = accounts["account_id"].to_pylist()
    of = np.array([pos.get(int(c), -1) for c in accounts["cluster"].to_pylist()], dtype=np.int64)
    a, b = edge_endpoints(edges, ids)
    ca, cb = of[a], of[b]
    keep = (ca >= 0) & (cb >= 0) & (ca != cb) & (edges["weight"].to_numpy() >= STRONG_EDGE)
    # (account, other cluster) pairs, each counted once however many links it has.
    member = np.concatenate([a[keep], b[keep]])
    other = np.concatenate([cb[keep], ca[keep]])
    pairs = np.unique(member * n + other)
    own = of[pairs // n]
    counts = coo_matrix((np.ones(len(pairs)), (own, pairs % n)), shape=(n, n)).tocsr().tocoo()
    size = np.bincount(of[of >= 0], minlength=n).astype(float)
    joined = counts.data >= MERGE_MEMBER_SHARE * size[counts.row]
    rows, cols = [counts.row[joined]], [counts.col[joined]]
    if similarity is not None and similarity.num_rows:
        same = similarity.filter(pc.greater_equal(similarity["similarity"], MERGE_LIBRARY_SHARE))
        c1 = np.array([pos.get(int(c), -1) for c in same["c1"].to_pylist()], dtype=np.int64)
        c2 = np.array([pos.get(int(c), -1) for c in same["c2"].to_pylist()], dtype=np.int64)
        ok = (c1 >= 0) & (c2 >= 0)
        rows.append(c1[ok])
        cols.append(c2[ok])
    r, c = np.concatenate(rows), np.concatenate(cols)
    strong = coo_matrix((np.ones(len(r)), (r, c)), shape=(n, n))
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
