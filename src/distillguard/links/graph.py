"""The weighted, multi-view account link graph (after SliceNDice, SynchroTrap and CopyCatch).

Two accounts that hold the same evidence key are linked. Each key's weight falls with the
number of accounts that hold it (rarity), so a corporate NAT or a big VPN exit alone links its
users only weakly. Small groups link every pair; a large group (a campaign template used by
thousands of accounts) links each member to a logarithmic set of others in a fixed pseudo-random
order, so the group stays one well-connected piece without a quadratic number of edges. The
order is the same for every key, so different views of the same group produce the same pairs
and their weights add up.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from distillguard.links.evidence import NETWORK_VIEWS, OVERLAP_VIEWS, VIEW_WEIGHTS, VIEWS

FULL_PAIRS_MAX = 12  # groups up to this size link every pair
EXPANDER_OFFSETS = tuple(2**i for i in range(16))  # i -> i + 1, 2, 4, ... (mod n)
VIEW_CAP = 2.0  # one view cannot dominate an edge however many keys it repeats
EDGE_FLOOR = 0.01  # pairs below this total weight are not kept (Leiden ignores < 0.02)
MAX_GROUP_SHARE = 0.5  # a key held by over half of all accounts says nothing...
MIN_POPULATION_FOR_SHARE = 200  # ...once there are enough accounts for "half" to mean anything
MIN_WRAPPER_SHARE = 0.001  # paraphrase bands on less of an account's traffic are not linked


def _pair_weight(
    n: ir.IntegerValue,
    view: ir.StringValue,
    share_a: ir.FloatingValue,
    share_b: ir.FloatingValue,
    total_accounts: int,
) -> ir.FloatingValue:
    """Weight of one shared key for one pair of accounts.

    - Network keys (an address or subnet on a day) share one unit of evidence among all
      holders, 1/(n-1), so a NAT, campus or VPN exit with many users links each pair faintly.
    - Content and timing keys weigh the overlap of the two accounts' traffic, min(share_a,
      share_b), discounted by how common the key is (1 - n/N): summed over keys this is the
      histogram intersection of their template use. A generic phrase that a tenth of two
      users' prompts start with barely links them; a campaign whose accounts send the same
      templates for most of their traffic links strongly, however many accounts it has.
    - System prompts weigh the overlap too, but fall like 1/log2(n+1): a prompt that many
      accounts send is a product or SDK default.
    - Sign-up keys (payment, device, batch) fall like 1/log2(n+1).
    """
    nf = n.cast("float64")
    shared = ibis.least(share_a, share_b)
    rarity = 1.585 / (nf + 1.0).log2()
    overlap = shared * (1.0 - nf / float(max(total_accounts, 1)))
    return ibis.cases(
        (view.isin(NETWORK_VIEWS), 1.0 / (nf - 1.0)),
        # A system prompt many accounts send is a product or SDK default, not a shared operator.
        (view == "system", shared * rarity),
        (view.isin(OVERLAP_VIEWS), overlap),
        else_=rarity,
    )


def keyed_members(ev: ir.Table, order: ir.Table, total_accounts: int) -> ir.Table:
    """Evidence rows of shared keys, by integer account position `ord`, with group size `n`."""
    # A paraphrase band on a sliver of an account's traffic (diverse chat: a different band
    # set per request) can add at most that sliver to any pair, yet these rows are most of
    # the view's rows and pairs. Dropping them keeps wrapper links to the wrappers an
    # account actually reuses.
    ev = ev.filter((ev["view"] != "wrapper") | (ev.share >= MIN_WRAPPER_SHARE))
    sizes = ev.group_by(["view", "key"]).aggregate(n=ev.count())
    limit = total_accounts
    if total_accounts >= MIN_POPULATION_FOR_SHARE:
        limit = int(total_accounts * MAX_GROUP_SHARE)
    sizes = sizes.filter((sizes.n >= 2) & (sizes.n <= limit))
    m = ev.join(sizes, ["view", "key"]).join(order, "account_id")
    return m.select("ord", "view", "key", "share", "n")


def _full_pairs(m: ir.Table, total_accounts: int) -> ir.Table:
    small = m.filter(m.n <= FULL_PAIRS_MAX)
    r = small.view()
    j = small.join(r, [small["view"] == r["view"], small.key == r.key, small.ord < r.ord])
    w = _pair_weight(small.n, small["view"], small.share, r.share, total_accounts)
    return j.select(a=small.ord, b=r.ord, view=small["view"], w=w)


def _expander_pairs(m: ir.Table, total_accounts: int) -> ir.Table:
    big = m.filter(m.n > FULL_PAIRS_MAX)
    big = big.mutate(pos=ibis.row_number().over(group_by=["view", "key"], order_by="ord"))
    offsets = ibis.memtable({"off": list(EXPANDER_OFFSETS)})
    src = big.cross_join(offsets)
    # Offsets below n/2 only: then no two (position, offset) reach the same pair, so every
    # pair of a key appears once and no de-duplication pass is needed.
    src = src.filter(src.off * 2 < src.n).mutate(target=(src.pos + src.off) % src.n)
    dst = big.select(dview=big["view"], dkey=big.key, dpos=big.pos, dord=big.ord, dshare=big.share)
    j = src.join(dst, [src["view"] == dst.dview, src.key == dst.dkey, src.target == dst.dpos])
    return j.select(
        a=ibis.least(j.ord, j.dord),
        b=ibis.greatest(j.ord, j.dord),
        view=j["view"],
        w=_pair_weight(j.n, j["view"], j.share, j.dshare, total_accounts),
    )


def pair_rows(ev: ir.Table, order: ir.Table, total_accounts: int) -> ir.Table:
    """One row per (pair, view, shared key): `a < b` account positions, the view's index `v`
    in `VIEWS` and the key's weight `w`."""
    m = keyed_members(ev, order, total_accounts)
    rows = ibis.union(
        _full_pairs(m, total_accounts), _expander_pairs(m, total_accounts), distinct=False
    )
    # A small integer per view: grouping and pivoting hundreds of millions of rows on it is
    # about twice as fast as on the view's name.
    code = ibis.cases(*[(rows["view"] == v, i) for i, v in enumerate(VIEWS)], else_=-1)
    return rows.select("a", "b", v=code.cast("int8"), w=rows.w)


def pair_edges(pairs: ir.Table, order: ir.Table, part: int = 0, parts: int = 1) -> ir.Table:
    """Per linked pair: total weight and, per view, the number of keys shared (unsorted).

    With `parts` > 1, only the pairs whose smaller position is `part` modulo `parts`: a pair's
    rows all fall in one part, so the parts' results concatenate to the whole, and each part's
    hash aggregation is a `parts`-th of the size (hundreds of millions of pair rows at full
    scale do not fit in memory at once).
    """
    if parts > 1:
        pairs = pairs.filter(pairs.a % parts == part)
    per_view = pairs.group_by(["a", "b", "v"]).aggregate(s=pairs.w.sum(), k=pairs.count())
    capped = per_view.s.clip(upper=VIEW_CAP)
    vw = ibis.cases(*[(per_view.v == i, VIEW_WEIGHTS[v]) for i, v in enumerate(VIEWS)], else_=0.0)
    per_view = per_view.mutate(weight=capped * vw)
    aggs = {"weight": per_view.weight.sum()}
    for i, v in enumerate(VIEWS):
        aggs[f"n_{v}"] = ibis.ifelse(per_view.v == i, per_view.k, 0).sum()
    for i, v in enumerate(VIEWS):
        aggs[f"w_{v}"] = ibis.ifelse(per_view.v == i, per_view.weight, 0.0).sum()
    by_pair = per_view.group_by(["a", "b"]).aggregate(**aggs)
    # Most pairs share one common key and nothing else; dropping them early keeps the graph
    # (and everything downstream) proportional to the real links, not to the key fan-out.
    by_pair = by_pair.filter(by_pair.weight >= EDGE_FLOOR)
    return _named(by_pair, order)


def edges(ev: ir.Table, order: ir.Table, total_accounts: int) -> ir.Table:
    """One row per linked pair: total weight and, per view, the number of keys shared."""
    return pair_edges(pair_rows(ev, order, total_accounts), order).order_by(["a", "b"])


def _named(by_pair: ir.Table, order: ir.Table) -> ir.Table:
    """Replace integer positions by account ids, smaller id first."""
    oa = order.select(a=order.ord, name_a=order.account_id)
    ob = order.select(b=order.ord, name_b=order.account_id)
    j = by_pair.join(oa, "a").join(ob, "b")
    first = j.name_a < j.name_b
    rest = [c for c in by_pair.columns if c not in ("a", "b")]
    return j.select(
        a=ibis.ifelse(first, j.name_a, j.name_b),
        b=ibis.ifelse(first, j.name_b, j.name_a),
        **{c: j[c] for c in rest},
    )


def account_order(ids: pa.Array) -> pa.Table:
    """A fixed pseudo-random order of accounts, the same on every engine.

    `ord` is each account's rank by xxhash of its id: a dense integer key for the pair joins
    and a shuffle that keeps expander neighbourhoods independent of how ids were issued.
    """
    values = ids.to_pylist()
    hashes = np.fromiter((xxhash.xxh64_intdigest(v.encode()) for v in values), np.uint64)
    rank = np.empty(len(values), dtype=np.int64)
    rank[np.lexsort((np.asarray(values, dtype=object).astype(str), hashes))] = np.arange(
        len(values)
    )
    return pa.table({"account_id": pa.array(values, pa.string()), "ord": pa.array(rank)})


def edge_endpoints(edges: pa.Table, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Row positions (in `ids`) of each edge's two accounts, vectorised."""
    value_set = pa.array(ids, pa.string())
    return _positions(edges["a"], value_set), _positions(edges["b"], value_set)


def _positions(names: pa.ChunkedArray, value_set: pa.Array) -> np.ndarray:
    found = pc.index_in(names.cast(pa.string()), value_set=value_set)
    if found.null_count:
        raise KeyError("an edge names an account that is not in the account list")
    return found.to_numpy(zero_copy_only=False).astype(np.int64)
