import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from distillguard.links.evidence import VIEWS, evidence
from distillguard.links.graph import FULL_PAIRS_MAX, account_order, edges, keyed_members
from tests.enriched_factory import enriched


def _edges(table: pa.Table) -> pa.Table:
    be = ibis.duckdb.connect()
    e = be.create_table("e", table)
    ids = pc.unique(table["account_id"])
    order = be.create_table("o", account_order(ids))
    return edges(evidence(e, None, order), order, len(ids)).to_pyarrow()


def test_hydra_accounts_are_linked_by_content_and_timing():
    hydra = enriched(
        [f"h{i:02d}" for i in range(20)],
        40,
        templates=[11, 12, 13],
        ips=[f"203.0.113.{i}" for i in range(30)],
        synced=True,
    )
    g = _edges(hydra)
    linked = set(g["a"].to_pylist()) | set(g["b"].to_pylist())
    assert len(linked) == 20
    by_template = g.filter(pc.greater_equal(g["n_template"], 1))
    assert set(by_template["a"].to_pylist()) | set(by_template["b"].to_pylist()) == linked
    assert pc.mean(pc.greater(g["n_sync"], 0)).as_py() > 0.5


def test_nat_alone_links_strangers_weakly():
    # 40 employees behind one NAT address, each writing their own prompts.
    nat = enriched([f"n{i:02d}" for i in range(40)], 30, ips=["198.51.100.1"], seed=1)
    hydra = enriched(
        [f"h{i:02d}" for i in range(20)],
        40,
        templates=[11, 12, 13],
        ips=[f"203.0.113.{i}" for i in range(30)],
        synced=True,
        seed=2,
    )
    g = _edges(pa.concat_tables([nat, hydra]))
    is_nat = pc.starts_with(g["a"], "n")
    nat_w = pc.mean(g.filter(is_nat)["weight"]).as_py()
    hydra_w = pc.mean(g.filter(pc.invert(is_nat))["weight"]).as_py()
    assert pc.sum(g.filter(is_nat)["n_template"]).as_py() == 0
    assert nat_w < hydra_w / 2


def test_large_group_is_linked_sparsely_but_in_one_piece():
    n = 300
    assert n > FULL_PAIRS_MAX
    big = enriched([f"b{i:03d}" for i in range(n)], 3, templates=[5], seed=3)
    others = enriched([f"o{i:03d}" for i in range(n)], 3, seed=5)  # unrelated population
    g = _edges(pa.concat_tables([big, others]))
    g = g.filter(pc.and_(pc.starts_with(g["a"], "b"), pc.starts_with(g["b"], "b")))
    assert g.num_rows < n * 20  # O(n log n), not n^2/2 = 44850
    ids = {k: i for i, k in enumerate(sorted(set(big["account_id"].to_pylist())))}
    a = np.array([ids[x] for x in g["a"].to_pylist()])
    b = np.array([ids[x] for x in g["b"].to_pylist()])
    m = coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
    assert connected_components(m, directed=False)[0] == 1


def test_pairs_are_stored_once_in_order():
    hydra = enriched([f"h{i:02d}" for i in range(10)], 10, templates=[1], seed=4)
    g = _edges(hydra)
    pairs = list(zip(g["a"].to_pylist(), g["b"].to_pylist(), strict=True))
    assert len(pairs) == len(set(pairs))
    assert not any((b, a) in set(pairs) for a, b in pairs)


def _wrapper_members(shares: list[float]) -> pa.Table:
    be = ibis.duckdb.connect()
    ev = be.create_table(
        "ev",
        pa.table(
            {
                "ord": pa.array(range(len(shares)), pa.int64()),
                "v": pa.array([VIEWS.index("wrapper")] * len(shares), pa.int8()),
                "key": pa.array([12345] * len(shares), pa.int64()),
                "share": shares,
            }
        ),
    )
    return keyed_members(ev, len(shares)).to_pyarrow()


def test_reused_paraphrase_band_links_its_accounts():
    members = _wrapper_members([0.25, 0.2, 0.3])
    assert members.num_rows == 3 and set(members["n"].to_pylist()) == {3}


def test_band_on_a_sliver_of_diverse_chat_is_not_linked():
    # Two chat users whose one-off prompts happen to share a band: 1 of 4,000 band slots each.
    members = _wrapper_members([0.00025, 0.00025, 0.25])
    assert members.num_rows == 0  # only one account holds the band at a real share


def _mixed_population() -> tuple[pa.Table, ibis.BaseBackend, ir.Table, ir.Table, int]:
    """A hydra (groups above FULL_PAIRS_MAX) and a NAT crowd: table, backend, events, order, n."""
    hydra = enriched([f"h{i:02d}" for i in range(30)], 20, templates=[7, 8], synced=True, seed=6)
    crowd = enriched([f"c{i:02d}" for i in range(40)], 20, ips=["198.51.100.9"], seed=7)
    table = pa.concat_tables([hydra, crowd])
    be = ibis.duckdb.connect()
    ids = pc.unique(table["account_id"])
    return (
        table,
        be,
        be.create_table("e", table),
        be.create_table("o", account_order(ids)),
        len(ids),
    )


def _assert_same_edges(tables: list[pa.Table], whole: pa.Table) -> None:
    joined = pa.concat_tables(tables).sort_by([("a", "ascending"), ("b", "ascending")])
    assert joined.num_rows == whole.num_rows
    for name in whole.column_names:
        got, want = joined[name].to_numpy(), whole[name].to_numpy()
        if name.startswith("n_") or name in ("a", "b"):
            assert (got == want).all(), name
        else:  # sums of floats: only the order of addition differs
            np.testing.assert_allclose(got, want, rtol=1e-12, err_msg=name)


def test_edges_aggregated_in_parts_equal_the_whole(tmp_path):
    from distillguard.links.graph import pair_edges, pair_part, pair_rows
    from distillguard.pipeline.stages import ParquetStore

    table, be, e, order, n = _mixed_population()
    pairs = ParquetStore(be, tmp_path).put(pair_rows(evidence(e, None, order), n), "p")
    part = pair_part(pairs, 3)
    parts = [pair_edges(pairs.filter(part == p), order).to_pyarrow() for p in range(3)]
    assert all(t.num_rows > 0 for t in parts)  # every part holds some of the pairs
    _assert_same_edges(parts, _edges(table))


def test_expected_pair_rows_counts_the_rows_pair_rows_makes():
    from distillguard.links.graph import expected_pair_rows, key_sizes, pair_rows

    _, _, e, order, n = _mixed_population()
    ev = evidence(e, None, order)
    sizes = key_sizes(ev, n)
    assert int(sizes.n.max().execute()) > FULL_PAIRS_MAX  # both the full and expander paths
    assert expected_pair_rows(sizes) == int(pair_rows(ev, n).count().execute())


def test_pairs_written_in_parts_give_the_whole_graph(tmp_path, monkeypatch):
    import distillguard.pipeline.stages as stages

    table, be, e, order, n = _mixed_population()
    monkeypatch.setattr(stages, "PAIRS_PER_PART", 500)  # several parts from a few thousand rows
    store = stages.ParquetStore(be, tmp_path)
    tables = stages._edges_in_parts(store, store.put(evidence(e, None, order), "ev"), order, n)
    assert len(tables) > 2 and all(t.num_rows > 0 for t in tables)
    assert not (tmp_path / "link_pairs.parquet").exists()  # intermediates are dropped
    _assert_same_edges(tables, _edges(table))
