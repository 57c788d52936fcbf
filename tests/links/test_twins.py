"""Behavioural twins: mutual nearest neighbours of standardised fingerprints."""

import numpy as np
import pyarrow as pa

from distillguard.links import twins
from distillguard.links.twins import twin_edges, with_twins


def _fingerprints(x: np.ndarray) -> pa.Table:
    """Accounts whose every fingerprint feature is 0 except the first, which is `x`."""
    names = twins.SHARE_FEATURES + twins.PLAIN_FEATURES + twins.LOG_FEATURES
    cols = {name: np.zeros(len(x)) for name in names}
    cols[twins.SHARE_FEATURES[0]] = x
    ids = [f"u{i:03d}" for i in range(len(x))]
    return pa.table({"account_id": ids, "requests": np.full(len(x), 100), **cols})


def test_near_identical_scripted_accounts_are_linked_as_twins():
    rng = np.random.default_rng(0)
    population = rng.uniform(0, 10, 60)
    pair = np.array([20.0, 20.001])  # two script-run accounts, far from everyone else
    t = twin_edges(_fingerprints(np.concatenate([population, pair])), k=3)
    got = set(zip(t["a"].to_pylist(), t["b"].to_pylist(), strict=True))
    assert ("u060", "u061") in got
    assert all(a < b for a, b in got)


def test_one_sided_neighbours_are_not_twins():
    # u001 is u000's nearest neighbour but u000 is not among u001's (a tight trio is closer);
    # the population is sparse, so 3.0 is well below the typical neighbour distance.
    x = np.array([3.0, 0.0, -0.01, -0.02, -0.03, *np.linspace(50, 850, 40)])
    t = twin_edges(_fingerprints(x), k=2)
    got = set(zip(t["a"].to_pylist(), t["b"].to_pylist(), strict=True))
    assert ("u000", "u001") not in got


def _reference_with_twins(edges: pa.Table, twins: pa.Table) -> pa.Table:
    """The same merge written as the obvious SQL (outer union, sum per pair, sort)."""
    import duckdb

    views = [c for c in edges.column_names if c.startswith(("n_", "w_"))]
    zeros = ", ".join(f"0 AS {v}" for v in views)
    kind = {v: "BIGINT" if v.startswith("n_") else "DOUBLE" for v in views}
    sums = ", ".join(f"sum({v})::{kind[v]} AS {v}" for v in views)
    return duckdb.sql(
        f"""
        WITH e AS (SELECT a, b, weight, {", ".join(views)}, 0.0 AS w_twin FROM edges
                   UNION ALL SELECT a, b, w_twin AS weight, {zeros}, w_twin FROM twins)
        SELECT a, b, sum(weight) AS weight, {sums}, sum(w_twin) AS w_twin
        FROM e GROUP BY a, b ORDER BY a, b
        """
    ).to_arrow_table()


def test_twin_weights_are_added_to_linked_pairs_and_new_pairs_appended():
    rng = np.random.default_rng(3)
    names = [f"acc{i:03d}" for i in range(60)]
    pairs = {tuple(sorted(rng.choice(names, 2, replace=False))) for _ in range(300)}
    pairs = sorted(pairs)
    edges = pa.table({
        "a": [p[0] for p in pairs], "b": [p[1] for p in pairs],
        "weight": rng.uniform(0, 1, len(pairs)),
        "n_ip": rng.integers(0, 5, len(pairs)), "w_ip": rng.uniform(0, 1, len(pairs)),
    })  # fmt: skip
    # Half the twin pairs are already linked, half are not.
    linked = [pairs[i] for i in rng.choice(len(pairs), 20, replace=False)]
    fresh = sorted({tuple(sorted(rng.choice(names, 2, replace=False))) for _ in range(40)})
    fresh = [p for p in fresh if p not in set(pairs)][:20]
    both = linked + fresh
    twins = pa.table({"a": [p[0] for p in both], "b": [p[1] for p in both],
                      "w_twin": rng.uniform(0.1, 1, len(both))})  # fmt: skip
    got = with_twins(edges, twins)
    want = _reference_with_twins(edges, twins)
    assert got.num_rows == edges.num_rows + len(fresh)
    for name in want.column_names:
        g, w = got[name].to_numpy(zero_copy_only=False), want[name].to_numpy(zero_copy_only=False)
        if g.dtype.kind == "f":
            np.testing.assert_allclose(g, w, err_msg=name)
        else:
            assert (g == w).all(), name
