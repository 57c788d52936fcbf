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
from sklearn.neighbors import NearestNeighbors

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
    neighbours = set(zip(src.tolist(), dst.tolist(), strict=True))
    mutual = np.array([(b, a) in neighbours for a, b in zip(src, dst, strict=True)])
    weight = np.clip(1.0 - d / max(ref, 1e-9), 0.0, 1.0) * WEIGHT
    keep = mutual & (src < dst) & (weight > 0)
    a, b = ids[eligible[src[keep]]], ids[eligible[dst[keep]]]
    return pa.table({"a": a.tolist(), "b": b.tolist(), "w_twin": weight[keep]})


def with_twins(edges: pa.Table, twins: pa.Table) -> pa.Table:
    """Edges plus the twin view: pairs put in name order, `w_twin` added to the weight."""
    import duckdb

    con = duckdb.connect()
    con.register("edges_in", edges)
    con.register("twins_in", twins)
    views = [c for c in edges.column_names if c.startswith(("n_", "w_"))]
    sums = ", ".join(f"sum({c}) AS {c}" for c in views)
    out = con.sql(
        f"""
        WITH e AS (
            SELECT least(a, b) AS a, greatest(a, b) AS b, weight, {", ".join(views)},
                   0.0 AS w_twin FROM edges_in
            UNION ALL
            SELECT a, b, w_twin AS weight, {", ".join("0" for _ in views)}, w_twin
            FROM twins_in
        )
        SELECT a, b, sum(weight) AS weight, {sums}, sum(w_twin) AS w_twin
        FROM e GROUP BY a, b ORDER BY a, b
        """
    ).to_arrow_table()
    con.close()
    return out
