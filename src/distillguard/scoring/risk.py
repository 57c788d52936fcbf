"""Account risk in [0, 1] from the account's own fingerprint and its cluster's evidence.

Unsupervised: rules with documented weights (`scoring.indicators`), no labels needed.

- behaviour b (per account): noisy-OR of account indicators (extraction asks, IP rotation, ...).
- coordination c (per cluster): noisy-OR of cluster indicators (hydra size, shared rare
  templates, shared infrastructure, synchronised activity, shared payment/device, batch sign-up).
- group behaviour B (per cluster): the larger of the members' upper-quartile behaviour (not
  the mean, so cover traffic from part of the cluster does not dilute it) and indicators on
  the cluster's pooled traffic (extraction-ask rate, proxy rate, fresh and disposable
  accounts): thousands of requests make rates significant that are unremarkable per account.
- cluster risk R = B * (1 + c) / 2: behaviour decides and coordination raises confidence, so a
  company behind one NAT (coordinated, ordinary behaviour) stays low, and a lone account
  needs far stronger behaviour than a hydra to reach the threshold.
- account risk = 1 - (1 - R)(1 - SOLO * b): the cluster's evidence plus the account's own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from distillguard.links.evidence import VIEW_WEIGHTS
from distillguard.links.graph import edge_endpoints
from distillguard.scoring import DEFAULT_THRESHOLD
from distillguard.scoring.indicators import (
    ACCOUNT_INDICATORS,
    CLUSTER_BEHAVIOUR,
    CLUSTER_INDICATORS,
    Columns,
    Indicator,
    noisy_or,
    ramp,
)

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


def _edge_column(edges: pa.Table, name: str) -> np.ndarray:
    """A per-view edge column; a view the run did not compute counts as no evidence."""
    if name not in edges.column_names:
        return np.zeros(edges.num_rows)
    return edges[name].to_numpy()


def _content_overlap(edges: pa.Table) -> np.ndarray:
    """Per edge: the pair's template overlap, exact or through paraphrase bands and sentences."""
    return np.maximum.reduce(
        [
            _edge_column(edges, "w_template"),
            _edge_column(edges, "w_wrapper") / VIEW_WEIGHTS["wrapper"],
            _edge_column(edges, "w_sentence") / VIEW_WEIGHTS["sentence"],
        ]
    )


def _internal_partner_counts(
    edges: pa.Table, a: np.ndarray, b: np.ndarray, cl: np.ndarray
) -> dict[str, np.ndarray]:
    """Per account: partners inside its own cluster per kind of evidence, and content overlap."""
    n = len(cl)
    internal = cl[a] == cl[b]
    out: dict[str, np.ndarray] = {}
    for name, views in LINK_VIEWS.items():
        weight = sum(_edge_column(edges, v) for v in views)
        has = internal & (weight >= LINK_MIN[name])
        out[name] = np.bincount(a[has], minlength=n) + np.bincount(b[has], minlength=n)
    overlap = _content_overlap(edges)
    best = np.zeros(n)
    np.maximum.at(best, a[internal], overlap[internal])
    np.maximum.at(best, b[internal], overlap[internal])
    out["content_overlap"] = best
    return out


FRESH_DAYS = 60.0


def _density_ratio(
    edges: pa.Table, a: np.ndarray, b: np.ndarray, cl: np.ndarray, k: int
) -> np.ndarray:
    """Link weight per pair inside each cluster over link weight per pair in the population.

    Fraudar/SliceNDice-style: a group whose members share far more (weak) evidence with each
    other than random accounts do is improbable, even when no single link is strong.
    """
    w = edges["weight"].to_numpy()
    n = len(cl)
    overall = w.sum() / max(n * (n - 1) / 2, 1.0)
    inside = cl[a] == cl[b]
    internal = np.bincount(cl[a[inside]], weights=w[inside], minlength=k)
    size = np.bincount(cl, minlength=k).astype(float)
    pairs = np.maximum(size * (size - 1) / 2, 1.0)
    return internal / pairs / max(overall, 1e-12)


def _cluster_rates(cl: np.ndarray, cols: Columns, k: int) -> Columns:
    """Request-weighted rates over a cluster's traffic, and shares of its members."""
    req = np.nan_to_num(cols["requests"].astype(float))
    total = np.maximum(np.bincount(cl, weights=req, minlength=k), 1.0)
    size = np.bincount(cl, minlength=k).astype(float)

    def by_requests(x: np.ndarray) -> np.ndarray:
        return np.bincount(cl, weights=np.nan_to_num(x.astype(float)) * req, minlength=k) / total

    def by_members(x: np.ndarray) -> np.ndarray:
        return np.bincount(cl, weights=x.astype(float), minlength=k) / size

    asks = np.nanmax(
        np.vstack([cols[c] for c in ("cot_share", "rubric_share", "censor_share",
                                     "train_shaped_share")]).astype(float),
        axis=0,
    )  # fmt: skip
    age = np.nan_to_num(cols["age_days"].astype(float), nan=1e6)
    return {
        "requests": total,
        "extraction_rate": by_requests(asks),
        "proxy_rate": by_requests(cols["proxy_share"]),
        "fresh_share": by_members(age < FRESH_DAYS),
        "disposable_share": by_members(np.nan_to_num(cols["disposable"].astype(float))),
    }


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


FIT_LO, FIT_HI = 0.02, 0.12
STRONG_LINK = 0.5


ROTATION_MIN_REQUESTS = 50  # fewer requests: a phone changing networks looks like rotation


def own_evidence(cols: Columns) -> np.ndarray:
    """The account's own extraction-specific evidence, on the scale of a traffic share.

    Asks for hidden reasoning, grading, censorship-safe rewrites or training data, known proxy
    exits and disposable e-mail count as they are; home-line IP rotation counts only at volume
    and only when the rotation indicator itself would fire.
    """
    asks = [
        cols[c].astype(float)
        for c in ("cot_share", "rubric_share", "censor_share", "train_shaped_share", "proxy_share")
    ]
    requests = np.nan_to_num(cols["requests"].astype(float))
    rotation = ramp(np.nan_to_num(cols["home_ips_per_request"].astype(float)), 0.15, 0.6)
    rotation = rotation * (requests >= ROTATION_MIN_REQUESTS) * FIT_HI
    disposable = np.nan_to_num(cols["disposable"].astype(float)) * FIT_HI
    return np.nan_to_num(np.nanmax(np.vstack([*asks, rotation, disposable]), axis=0))


def _fit(
    cols: Columns, edges: pa.Table, a: np.ndarray, b: np.ndarray, cl: np.ndarray
) -> np.ndarray:
    """How much of its cluster's risk an account inherits, in [0, 1].

    A community can sweep in bystanders that share a few sentences or a campus subnet with a
    campaign. An account inherits the cluster's risk only as far as it shows extraction-specific
    evidence itself, or is strongly linked to a member that does: cover accounts of a hydra are
    strongly linked to its working accounts; a benchmark team next to it is not.
    """
    own = own_evidence(cols)
    # Network links carry no guilt (residential proxy exits are real people's lines), nor does
    # resembling someone (twins): only shared content, timing or identity does.
    incidental = sum(_edge_column(edges, v) for v in ("w_ip", "w_subnet", "w_twin"))
    shared = edges["weight"].to_numpy() - incidental
    strong = (cl[a] == cl[b]) & (shared >= STRONG_LINK)
    via = own.copy()
    np.maximum.at(via, a[strong], own[b[strong]])
    np.maximum.at(via, b[strong], own[a[strong]])
    return np.maximum(ramp(via, FIT_LO, FIT_HI), _content_corroboration(edges, a, b, cl, own))


CONTENT_LO, CONTENT_HI = 0.05, 0.15
CONTENT_LINK_MIN = 0.03  # below this, overlap is shared boilerplate, however many partners


def _content_corroboration(
    edges: pa.Table, a: np.ndarray, b: np.ndarray, cl: np.ndarray, own: np.ndarray
) -> np.ndarray:
    """Fit from prompt content shared with members of the cluster that show evidence.

    A careful campaign's cover accounts ask for almost nothing extraction-specific, but they
    draw on the same prompt library as the campaign's working accounts: 5-15% of their
    traffic, summed over those partners. Bystanders swept into the community by an address
    or a resemblance share next to none of it: only pairs sharing at least 3% count, so
    common boilerplate shared with many partners does not add up.
    """
    overlap = _content_overlap(edges)
    inside = (cl[a] == cl[b]) & (overlap >= CONTENT_LINK_MIN)
    total = np.zeros(len(cl))
    to_b = inside & (own[b] >= FIT_HI)
    to_a = inside & (own[a] >= FIT_HI)
    np.add.at(total, a[to_b], overlap[to_b])
    np.add.at(total, b[to_a], overlap[to_a])
    return ramp(total, CONTENT_LO, CONTENT_HI)


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
    a, b = edge_endpoints(edges, ids)
    partners = _internal_partner_counts(edges, a, b, cl)
    ccols = _cluster_evidence(cl, partners)
    k = len(ccols["size"])
    ccols["density_ratio"] = _density_ratio(edges, a, b, cl, k)
    ccols.update(_cluster_rates(cl, cols, k))
    coordination, c_contrib = noisy_or(CLUSTER_INDICATORS, ccols, k)
    group_behaviour, g_contrib = noisy_or(CLUSTER_BEHAVIOUR, ccols, k)
    cluster_behaviour = np.maximum(_upper_quartile_by(cl, behaviour, k), group_behaviour)
    # Behaviour decides; coordination raises confidence (a lone account gets half weight).
    cluster_risk = cluster_behaviour * (0.5 + 0.5 * coordination)
    c_contrib = np.hstack([c_contrib, g_contrib * coordination[:, None]])

    fit = _fit(cols, edges, a, b, cl)
    risk = 1.0 - (1.0 - cluster_risk[cl] * fit) * (1.0 - SOLO_WEIGHT * behaviour)
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
