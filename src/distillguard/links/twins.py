"""Behavioural twins: accounts whose fingerprints are near-identical (mutual nearest neighbours).

An operator that runs hundreds of accounts from one script gives them the same capability
mix, the same extraction asks, the same token lengths and timing habits, even when it rotates
wording, addresses and schedules so that no key is shared. Accounts are compared on robustly
standardised fingerprints; a pair is linked when each is among the other's nearest neighbours
and their distance is well below the population's typical neighbour distance.

This view runs on the driver (scikit-learn), after the relational fingerprints: one row per
account, so it is small whatever the log size.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sklearn.neighbors import NearestNeighbors

from distillguard.links.graph import edge_endpoints

K = 10
MIN_REQUESTS = 20  # too few requests for a stable fingerprint
WEIGHT = 1.0

SHARE_FEATURES = (
    "cap_coding", "cap_math", "cap_reasoning", "cap_tool_use", "cap_agentic", "cap_vision",
    "cap_creative", "cap_chitchat", "cap_sensitive", "cot_share", "rubric_share",
    "censor_share", "train_shaped_share", "max_out_share", "thinking_share", "tool_share",
    "image_share", "proxy_share", "vpn_share", "hosted_share", "residential_share",
    "followup_share", "night_share", "weekend_share", "burst_share", "template_diversity",
    "top_template_share", "top_ua_share", "home_ips_per_request",
)  # fmt: skip
LOG_FEATURES = ("req_per_day", "out_tokens_per_day", "out_in_ratio", "ips_per_day", "user_agents")
PLAIN_FEATURES = ("hour_entropy", "weekday_entropy", "gap_cv", "mean_turn")


def feature_matrix(fp: pa.Table) -> np.ndarray:
    """Fingerprint columns as a float matrix: shares as they are, counts on a log scale."""
    cols = []
    for name in SHARE_FEATURES + PLAIN_FEATURES:
        cols.append(fp[name].to_numpy(zero_copy_only=False).astype(float))
    for name in LOG_FEATURES:
        cols.append(np.log1p(fp[name].to_numpy(zero_copy_only=False).astype(float)))
    x = np.nan_to_num(np.column_stack(cols), nan=0.0)
    # Robust scale per column; shares keep a floor so a column that is 0 almost everywhere
    # does not blow up tiny differences.
    med = np.median(x, axis=0)
    q75, q25 = np.percentile(x, [75, 25], axis=0)
    scale = np.maximum(q75 - q25, 0.05)
    return (x - med) / scale


def twin_edges(fp: pa.Table, k: int = K) -> pa.Table:
    """Edges a, b (a < b), w_twin in (0, 1] between mutual nearest neighbours."""
    fp = fp.sort_by("account_id")
    ids = np.asarray(fp["account_id"].to_pylist(), dtype=object)
    eligible = np.flatnonzero(fp["requests"].to_numpy() >= MIN_REQUESTS)
    empty = pa.table({"a": pa.array([], pa.string()), "b": pa.array([], pa.string()),
                      "w_twin": pa.array([], pa.float64())})  # fmt: skip
    if len(eligible) <= k + 1:
        return empty
    x = feature_matrix(fp)[eligible]
    dist, nbr = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
    dist, nbr = dist[:, 1:], nbr[:, 1:]
    # Typical distance to a k-th neighbour: twins are far closer than that.
    ref = float(np.median(dist[:, -1]))
    src = np.repeat(np.arange(len(eligible)), k)
    dst = nbr.ravel()
    d = dist.ravel()
    # (a, b) is mutual when (b, a) is also a neighbour pair: compare packed pair codes.
    n = np.int64(len(eligible))
    mutual = np.isin(dst.astype(np.int64) * n + src, src.astype(np.int64) * n + dst)
    weight = np.clip(1.0 - d / max(ref, 1e-9), 0.0, 1.0) * WEIGHT
    keep = mutual & (src < dst) & (weight > 0)
    a, b = ids[eligible[src[keep]]], ids[eligible[dst[keep]]]
    return pa.table({"a": a.tolist(), "b": b.tolist(), "w_twin": weight[keep]})


def with_twins(edges: pa.Table, twins: pa.Table) -> pa.Table:
    """Edges plus the twin view, sorted by (a, b): `w_twin` is added to a linked pair's weight,
    and twin pairs without other evidence are appended with zero counts.

    Both inputs hold each pair once with a < b. Vectorised on integer pair codes: at full scale
    `edges` has millions of rows and `twins` a few thousand.
    """
    names = (
        pc.unique(
            pa.chunked_array([edges["a"], edges["b"], twins["a"], twins["b"]]).cast(pa.string())
        )
        .sort()
        .to_pylist()
    )
    edge_code, twin_code = _pair_codes(edges, names), _pair_codes(twins, names)
    hit, row = _find(edge_code, twin_code)
    twin_w = twins["w_twin"].to_numpy(zero_copy_only=False).astype(float)
    w_twin = np.zeros(edges.num_rows)
    w_twin[row[hit]] = twin_w[hit]
    views = [c for c in edges.column_names if c.startswith(("n_", "w_"))]
    linked = edges.select(["a", "b", "weight", *views])
    linked = linked.set_column(2, "weight", pc.add(linked["weight"], pa.array(w_twin)))
    linked = linked.append_column("w_twin", pa.array(w_twin))
    extra = twins.filter(pa.array(~hit))
    zeros = pa.array(np.zeros(extra.num_rows))
    alone = {"a": extra["a"], "b": extra["b"], "weight": extra["w_twin"]}
    alone |= {v: pc.cast(zeros, linked.schema.field(v).type) for v in views}
    alone["w_twin"] = extra["w_twin"]
    merged = pa.concat_tables([linked, pa.table(alone).cast(linked.schema)])
    order = np.argsort(np.concatenate([edge_code, twin_code[~hit]]), kind="stable")
    return merged.take(pa.array(order))


def _pair_codes(t: pa.Table, names: list[str]) -> np.ndarray:
    """a * len(names) + b over positions in the sorted `names`: sorts like (a, b) by name."""
    a, b = edge_endpoints(t, names)
    return a * len(names) + b


def _find(codes: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(found, row): whether each wanted code is among the unique `codes`, and at which row."""
    if len(codes) == 0:
        return np.zeros(len(wanted), bool), np.zeros(len(wanted), np.int64)
    order = np.argsort(codes, kind="stable")
    at = np.minimum(np.searchsorted(codes[order], wanted), len(codes) - 1)
    return codes[order][at] == wanted, order[at]
