"""Time igraph's Leiden and leidenalg's on the link graph of an existing `detect` run.

    .venv/bin/python bench/leiden_speed.py bench/out/full/detect-1.0/work

Both until stable, modularity objective, the graph `clusters.leiden.communities` builds (links
of weight >= MIN_EDGE_WEIGHT). Prints seconds, modularity and how alike the partitions are
(adjusted Rand index). Timings are one run each: compare them as a ratio.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.metrics import adjusted_rand_score

from distillguard.clusters import leiden


def _tables(work: Path) -> tuple[pa.ChunkedArray, pa.Table]:
    fp = pq.read_table(work / "fingerprints.parquet", columns=["account_id"])
    return fp["account_id"], pq.read_table(work / "edges.parquet", columns=["a", "b", "weight"])


def _timed(work: Path, use_leidenalg: bool) -> tuple[np.ndarray, float]:
    accounts, edges = _tables(work)
    leiden.LEIDENALG = use_leidenalg
    start = time.perf_counter()
    clusters = leiden.communities(accounts, edges)
    return clusters["cluster"].to_numpy(), time.perf_counter() - start


def _modularity(work: Path, membership: np.ndarray) -> float:
    _, graph = leiden.strong_graph(*_tables(work))
    return graph.modularity(membership.tolist(), weights="weight")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("work", type=Path, help="a detect run's work/ folder")
    work = p.parse_args().work
    default = leiden.LEIDENALG
    fast, fast_s = _timed(work, use_leidenalg=False)
    slow, slow_s = _timed(work, use_leidenalg=True)
    leiden.LEIDENALG = default
    print("| implementation | seconds | modularity | communities |")
    print("|---|---|---|---|")
    for name, m, s in (("igraph", fast, fast_s), ("leidenalg", slow, slow_s)):
        print(f"| {name} | {s:.1f} | {_modularity(work, m):.4f} | {int(m.max()) + 1} |")
    ari = adjusted_rand_score(fast, slow)
    print(f"\nleidenalg / igraph time: {slow_s / fast_s:.1f}x; ARI {ari:.3f}")


if __name__ == "__main__":
    main()
