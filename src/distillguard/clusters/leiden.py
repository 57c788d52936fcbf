"""Communities of the account link graph, found with igraph's Leiden on the driver.

The account graph is small next to the request log (one node per account, sparse edges), so it
is clustered in one process whichever engine built it. Edges are sorted before the graph is
built and Leiden runs with a fixed seed, so the same edges give the same communities.

igraph's own Leiden (C, `Graph.community_leiden`) optimises the same objective as leidenalg's
`RBConfigurationVertexPartition` (modularity with a resolution); on the full-scale graph it was
many times faster, and it found partitions of higher modularity. `LEIDENALG` keeps the
leidenalg path for comparison (bench/leiden_iterations.py).
"""

from __future__ import annotations

import random
import threading

import igraph as ig
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from distillguard.links.graph import edge_endpoints

DEFAULT_RESOLUTION = 1.0
MIN_EDGE_WEIGHT = 0.02  # fainter links are kept as evidence but do not shape communities
SEED = 20240223
# Leiden passes until stable (-1). Fewer are faster but lost attackers on a held-out evasive
# seed with leidenalg (bench/leiden_iterations.py).
ITERATIONS = -1
LEIDENALG = False  # True: leidenalg's implementation instead of igraph's
# igraph draws from one process-wide generator: seeded per call, under a lock.
_RNG_LOCK = threading.Lock()


def communities(
    accounts: pa.Array,
    edges: pa.Table,
    resolution: float = DEFAULT_RESOLUTION,
    min_weight: float = MIN_EDGE_WEIGHT,
) -> pa.Table:
    """`account_id -> cluster` (int64); accounts without strong links form singletons.

    Uses modularity (the RB configuration model): a community must hold more link weight than
    its members' degrees predict. Unlike a fixed density bar (CPM), this keeps a small
    campaign apart from a large one that it touches through a few faint links, and still
    gathers a campaign whose members are bound only by many faint links. Pieces of one
    operation that Leiden cuts apart are rejoined by `campaigns.assemble` when strongly linked.
    """
    ids, graph = strong_graph(accounts, edges, min_weight)
    membership = _leidenalg(graph, resolution) if LEIDENALG else _igraph_leiden(graph, resolution)
    return pa.table({"account_id": ids, "cluster": _canonical(membership)})


def strong_graph(
    accounts: pa.Array, edges: pa.Table, min_weight: float = MIN_EDGE_WEIGHT
) -> tuple[pa.Array, ig.Graph]:
    """Sorted distinct account ids and the weighted igraph graph of their links of at least
    `min_weight` (vertex i is ids[i]; edges in (a, b) order, so the same edges give the same
    graph)."""
    ids = pc.unique(accounts.cast(pa.string())).sort()
    strong = edges.filter(pc.greater_equal(edges["weight"], min_weight))
    strong = strong.sort_by([("a", "ascending"), ("b", "ascending")])
    src, dst = edge_endpoints(strong, ids.to_pylist())
    graph = ig.Graph(n=len(ids), edges=np.column_stack([src, dst]), directed=False)
    graph.es["weight"] = strong["weight"].to_numpy(zero_copy_only=False)
    return ids, graph


def _igraph_leiden(graph: ig.Graph, resolution: float) -> np.ndarray:
    with _RNG_LOCK:
        ig.set_random_number_generator(random.Random(SEED))
        try:
            found = graph.community_leiden(
                objective_function="modularity",
                weights="weight",
                resolution=resolution,
                n_iterations=ITERATIONS,
            )
        finally:
            ig.set_random_number_generator(random)
    return np.asarray(found.membership, dtype=np.int64)


def _leidenalg(graph: ig.Graph, resolution: float) -> np.ndarray:
    import leidenalg

    partition = leidenalg.find_partition(
        graph,
        leidenalg.RBConfigurationVertexPartition,
        weights="weight",
        resolution_parameter=resolution,
        seed=SEED,
        n_iterations=ITERATIONS,
    )
    return np.asarray(partition.membership, dtype=np.int64)


def _canonical(membership: np.ndarray) -> np.ndarray:
    """Renumber clusters by first appearance so ids do not depend on Leiden's internal order."""
    _, first = np.unique(membership, return_index=True)
    order = np.argsort(first)
    remap = np.empty_like(order)
    remap[order] = np.arange(len(order))
    labels = np.searchsorted(np.unique(membership), membership)
    return remap[labels]
