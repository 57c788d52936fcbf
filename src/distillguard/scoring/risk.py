"""Account risk in [0, 1] from the account's own fingerprint and its cluster's evidence.

Unsupervised: rules with documented weights (`scoring.indicators`), no labels needed.

- behaviour b (per account): noisy-OR of account indicators (extraction asks, IP rotation, ...).
- coordination c (per cluster): noisy-OR of cluster indicators (hydra size, shared rare
  templates, shared infrastructure, synchronised activity, shared payment/device, batch sign-up).
- cluster risk R = c * B, where B is the upper-quartile behaviour of the cluster's members: a
  group of linked accounts is suspicious only when it is coordinated *and* behaves like an
  extraction operation, so a company behind one NAT (coordinated, ordinary behaviour) or a
  lone power user (unusual behaviour, no hydra) stays below the threshold. Upper quartile, not
  mean, so cover traffic from part of the cluster does not dilute it.
- account risk = 1 - (1 - R)(1 - SOLO * b): the cluster's evidence plus the account's own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from distillguard.links.evidence import VIEW_WEIGHTS
from distillguard.scoring.indicators import (
    ACCOUNT_INDICATORS,
    CLUSTER_INDICATORS,
    Columns,
    Indicator,
    noisy_or,
)

DEFAULT_THRESHOLD = 0.5
SOLO_WEIGHT = 0.55  # an unlinked account's own behaviour alone tops out just above 0.5
MAX_REASONS = 6


@dataclass
class Scored:
    """Per-account scores and per-cluster evidence, as Arrow tables."""

    accounts: pa.Table
    clusters: pa.Table


def _columns(table: pa.Table) -> Columns:
    return {name: table[name].to_numpy(zero_copy_only=False) for name in table.column_names}


# Minimum per-view link weight for a partner to count as linked by that kind of evidence:
# 0.2 = the two accounts share a fifth of their template use, or a rare address, etc.
LINK_MIN = {
    "content": 0.2,
    "network": 0.2,
    "sync": 0.1,
    "identity": 0.5,
    "signup": 0.5,
    "twin": 0.3,
}
LINK_VIEWS = {
    "content": ("w_template", "w_wrapper", "w_sentence"),
    "network": ("w_ip", "w_subnet"),
    "sync": ("w_sync",),
    "identity": ("w_payment", "w_device"),
    "signup": ("w_signup",),
    "twin": ("w_twin",),
}


def _internal_partner_counts(
    edges: pa.Table, cluster_of: dict[str, int], ids: list[str]
) -> dict[str, np.ndarray]:
    """Per account: partners inside its own cluster per kind of evidence, and content overlap."""
    index = {k: i for i, k in enumerate(ids)}
    a = np.fromiter((index[x] for x in edges["a"].to_pylist()), np.int64, edges.num_rows)
    b = np.fromiter((index[x] for x in edges["b"].to_pylist()), np.int64, edges.num_rows)
    cl = np.array([cluster_of[k] for k in ids], dtype=np.int64)
    internal = cl[a] == cl[b]
    out: dict[str, np.ndarray] = {}
    for name, views in LINK_VIEWS.items():
        weight = sum(edges[v].to_numpy() for v in views)
        has = internal & (weight >= LINK_MIN[name])
        out[name] = np.bincount(a[has], minlength=len(ids)) + np.bincount(
            b[has], minlength=len(ids)
        )
    # Template overlap of the pair: exact templates, or paraphrase bands for reworded ones.
    overlap = np.maximum.reduce(
        [
            edges["w_template"].to_numpy(),
            edges["w_wrapper"].to_numpy() / VIEW_WEIGHTS["wrapper"],
            edges["w_sentence"].to_numpy() / VIEW_WEIGHTS["sentence"],
        ]
    )
    best = np.zeros(len(ids))
    np.maximum.at(best, a[internal], overlap[internal])
    np.maximum.at(best, b[internal], overlap[internal])
    out["content_overlap"] = best
    return out


def _cluster_evidence(cl: np.ndarray, partners: dict[str, np.ndarray]) -> Columns:
    """Per cluster: size and the share of members linked inside it by each kind of evidence."""
    k = cl.max() + 1 if len(cl) else 0
    size = np.bincount(cl, minlength=k).astype(float)

    def linked_share(kind: str) -> np.ndarray:
        return np.bincount(cl, weights=(partners[kind] > 0).astype(float), minlength=k) / size

    def mean_of(x: np.ndarray) -> np.ndarray:
        return np.bincount(cl, weights=x.astype(float), minlength=k) / size

    return {
        "cluster": np.arange(k),
        "size": size,
        "content_linked": linked_share("content"),
        "network_linked": linked_share("network"),
        "sync_linked": linked_share("sync"),
        "identity_linked": linked_share("identity"),
        "signup_linked": linked_share("signup"),
        "twin_linked": linked_share("twin"),
        "content_overlap": mean_of(partners["content_overlap"]),
        "content_partners": mean_of(partners["content"]),
        "network_partners": mean_of(partners["network"]),
    }


def _upper_quartile_by(cl: np.ndarray, values: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros(k)
    order = np.argsort(cl, kind="stable")
    bounds = np.searchsorted(cl[order], np.arange(k + 1))
    for c in range(k):  # one iteration per cluster, not per row
        members = values[order[bounds[c] : bounds[c + 1]]]
        out[c] = np.quantile(members, 0.75) if len(members) else 0.0
    return out


def _reasons(
    inds: tuple[Indicator, ...], cols: Columns, contrib: np.ndarray, rows: np.ndarray
) -> list[list[tuple[float, str]]]:
    out: list[list[tuple[float, str]]] = []
    for r in rows:
        fired = [
            (contrib[r, j], ind.reason(cols, r))
            for j, ind in enumerate(inds)
            if contrib[r, j] > 0.02
        ]
        out.append(fired)
    return out


def score(
    fingerprints: pa.Table,
    edges: pa.Table,
    clusters: pa.Table,
    threshold: float = DEFAULT_THRESHOLD,
    boosts: pa.Table | None = None,
) -> Scored:
    """Risk, flag and reasons for every account in `fingerprints` (sorted by account_id)."""
    fp = fingerprints.sort_by("account_id")
    ids = fp["account_id"].to_pylist()
    cluster_of = dict(
        zip(clusters["account_id"].to_pylist(), clusters["cluster"].to_pylist(), strict=True)
    )
    cl = np.array([cluster_of[k] for k in ids], dtype=np.int64)
    cols = _columns(fp)
    n = len(ids)

    behaviour, a_contrib = noisy_or(ACCOUNT_INDICATORS, cols, n)
    partners = _internal_partner_counts(edges, cluster_of, ids)
    ccols = _cluster_evidence(cl, partners)
    k = len(ccols["size"])
    coordination, c_contrib = noisy_or(CLUSTER_INDICATORS, ccols, k)
    cluster_behaviour = _upper_quartile_by(cl, behaviour, k)
    cluster_risk = coordination * cluster_behaviour

    risk = 1.0 - (1.0 - cluster_risk[cl]) * (1.0 - SOLO_WEIGHT * behaviour)
    boost_reasons: dict[str, str] = {}
    if boosts is not None and boosts.num_rows:
        risk, boost_reasons = _apply_boosts(risk, ids, boosts, threshold)
    risk = np.clip(risk, 0.0, 1.0)
    flagged = risk >= threshold

    reasons = _account_reasons(ids, cl, cols, a_contrib, ccols, c_contrib, boost_reasons)
    accounts = pa.table(
        {
            "account_id": pa.array(ids, pa.string()),
            "risk": pa.array(np.round(risk, 6), pa.float64()),
            "flagged": pa.array(flagged),
            "cluster": pa.array(cl),
            "behaviour": pa.array(np.round(behaviour, 6)),
            "reasons": pa.array(reasons, pa.list_(pa.string())),
        }
    )
    ctable = pa.table(
        {
            **{name: pa.array(v) for name, v in ccols.items()},
            "coordination": pa.array(coordination),
            "behaviour": pa.array(cluster_behaviour),
            "risk": pa.array(cluster_risk),
        }
    )
    return Scored(accounts=accounts, clusters=ctable)


def _account_reasons(
    ids: list[str],
    cl: np.ndarray,
    cols: Columns,
    a_contrib: np.ndarray,
    ccols: Columns,
    c_contrib: np.ndarray,
    boost_reasons: dict[str, str],
) -> list[list[str]]:
    """Strongest signals first; cluster evidence is weighted by how much it drives risk."""
    own = _reasons(ACCOUNT_INDICATORS, cols, a_contrib, np.arange(len(ids)))
    clusters = np.unique(cl)
    per_cluster = dict(
        zip(
            clusters.tolist(), _reasons(CLUSTER_INDICATORS, ccols, c_contrib, clusters), strict=True
        )
    )
    out = []
    for i, account in enumerate(ids):
        fired = own[i] + per_cluster[int(cl[i])]
        if account in boost_reasons:
            fired.append((1.0, boost_reasons[account]))
        fired.sort(key=lambda t: -t[0])
        out.append([text for _, text in fired[:MAX_REASONS]])
    return out


BOOST = 0.15


def _apply_boosts(
    risk: np.ndarray, ids: list[str], boosts: pa.Table, threshold: float
) -> tuple[np.ndarray, dict[str, str]]:
    """Shared-intelligence hits raise risk, but never flag an account on their own."""
    index = {k: i for i, k in enumerate(ids)}
    reasons: dict[str, str] = {}
    risk = risk.copy()
    for account, reason in zip(
        boosts["account_id"].to_pylist(), boosts["reason"].to_pylist(), strict=True
    ):
        i = index.get(account)
        if i is None:
            continue
        raised = risk[i] + BOOST
        # Below the threshold before -> stays below it: intel corroborates, it does not decide.
        risk[i] = raised if risk[i] >= threshold else min(raised, threshold - 1e-6)
        reasons[account] = reason
    return risk, reasons


def flagged_clusters(scored: Scored) -> pa.Array:
    """Cluster ids holding at least one flagged account."""
    return pc.unique(scored.accounts.filter(scored.accounts["flagged"])["cluster"])
