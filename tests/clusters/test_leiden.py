import pyarrow as pa

from distillguard.clusters.leiden import MIN_EDGE_WEIGHT, communities


def _clique(prefix: str, n: int, w: float) -> list[tuple[str, str, float]]:
    ids = [f"{prefix}{i:02d}" for i in range(n)]
    return [(a, b, w) for i, a in enumerate(ids) for b in ids[i + 1 :]]


def _edges(rows: list[tuple[str, str, float]]) -> pa.Table:
    a, b, w = zip(*rows, strict=True)
    return pa.table({"a": list(a), "b": list(b), "weight": list(w)})


def test_two_groups_and_a_weak_bridge_give_two_communities():
    rows = _clique("x", 12, 2.0) + _clique("y", 9, 2.0) + [("x00", "y00", 0.6)]
    ids = pa.array([f"x{i:02d}" for i in range(12)] + [f"y{i:02d}" for i in range(9)] + ["z"])
    c = communities(ids, _edges(rows))
    of = dict(zip(c["account_id"].to_pylist(), c["cluster"].to_pylist(), strict=True))
    assert len({of[f"x{i:02d}"] for i in range(12)}) == 1
    assert len({of[f"y{i:02d}"] for i in range(9)}) == 1
    assert of["x00"] != of["y00"]
    assert of["z"] not in {of["x00"], of["y00"]}  # unlinked account is a singleton


def test_weak_edges_do_not_shape_communities():
    rows = _clique("x", 5, MIN_EDGE_WEIGHT / 2)  # below the minimum edge weight
    ids = pa.array([f"x{i:02d}" for i in range(5)])
    c = communities(ids, _edges(rows))
    assert len(set(c["cluster"].to_pylist())) == 5


def test_same_edges_same_communities():
    rows = _clique("x", 8, 1.5) + _clique("y", 8, 1.0) + [("x01", "y03", 0.9)]
    ids = pa.array(sorted({r[0] for r in rows} | {r[1] for r in rows}))
    first = communities(ids, _edges(rows))
    second = communities(ids, _edges(list(reversed(rows))))
    assert first.equals(second)
