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

from distillguard.links.evidence import (
    NETWORK_VIEWS,
    OVERLAP_VIEWS,
    VIEW_WEIGHTS,
    VIEWS,
    view_codes,
    wide,
)

FULL_PAIRS_MAX = 12  # groups up to this size link every pair
EXPANDER_OFFSETS = tuple(2**i for i in range(16))  # i -> i + 1, 2, 4, ... (mod n)
VIEW_CAP = 2.0  # one view cannot dominate an edge however many keys it repeats
EDGE_FLOOR = 0.01  # pairs below this total weight are not kept (Leiden ignores < 0.02)
MAX_GROUP_SHARE = 0.5  # a key held by over half of all accounts says nothing...
MIN_POPULATION_FOR_SHARE = 200  # ...once there are enough accounts for "half" to mean anything
MIN_WRAPPER_SHARE = 0.001  # paraphrase bands on less of an account's traffic are not linked


# Pair rows carry one int64 key `pk = a << 32 | b << 4 | v`: grouping hundreds of millions of
# rows on one integer is much cheaper than on (a, b, view). Positions must fit in 28 bits.
PAIR_A_SHIFT = 32
PAIR_B_SHIFT = 4
PAIR_B_BITS = 28
MAX_ACCOUNTS = 2**PAIR_B_BITS
VIEW_MASK = 2**PAIR_B_SHIFT - 1


def _pair_weight(
    n: ir.IntegerValue,
    v: ir.IntegerValue,
    share_a: ir.FloatingValue,
    share_b: ir.FloatingValue,
    total_accounts: int,
) -> ir.FloatingValue:
    """Weight of one shared key (of view code `v`) for one pair of accounts.

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
        (v.isin(view_codes(NETWORK_VIEWS)), 1.0 / (nf - 1.0)),
        # A system prompt many accounts send is a product or SDK default, not a shared operator.
        (v == VIEWS.index("system"), shared * rarity),
        (v.isin(view_codes(OVERLAP_VIEWS)), overlap),
        else_=rarity,
    )


def _linkable(ev: ir.Table) -> ir.Table:
    # A paraphrase band on a sliver of an account's traffic (diverse chat: a different band
    # set per request) can add at most that sliver to any pair, yet these rows are most of
    # the view's rows and pairs. Dropping them keeps wrapper links to the wrappers an
    # account actually reuses.
    return ev.filter((ev.v != VIEWS.index("wrapper")) | (ev.share >= MIN_WRAPPER_SHARE))


def key_sizes(ev: ir.Table, total_accounts: int) -> ir.Table:
    """Shared keys `(v, key)` with their holder count `n` and an integer id `kid`.

    Only keys held by 2 to `limit` accounts. `kid` numbers the keys in (v, key) order, so it
    is the same however often an engine evaluates this expression; the pair joins use it as
    their one integer key.
    """
    ev = _linkable(ev)
    sizes = ev.group_by(["v", "key"]).aggregate(n=ev.count())
    limit = total_accounts
    if total_accounts >= MIN_POPULATION_FOR_SHARE:
        limit = int(total_accounts * MAX_GROUP_SHARE)
    sizes = sizes.filter((sizes.n >= 2) & (sizes.n <= limit))
    kid = wide(ibis.row_number().over(order_by=[sizes.v, sizes.key]))
    return sizes.mutate(kid=kid)


def expected_pair_rows(sizes: ir.Table) -> int:
    """How many rows `pair_rows` will produce for these key sizes (from their histogram)."""
    hist = sizes.group_by("n").aggregate(keys=sizes.count()).to_pyarrow()
    total = 0
    for n, keys in zip(hist["n"].to_pylist(), hist["keys"].to_pylist(), strict=True):
        if n <= FULL_PAIRS_MAX:
            total += keys * n * (n - 1) // 2
        else:
            total += keys * n * sum(1 for off in EXPANDER_OFFSETS if off * 2 < n)
    return total


def keyed_members(ev: ir.Table, total_accounts: int, sizes: ir.Table | None = None) -> ir.Table:
    """Evidence rows of shared keys: account position `ord`, key id `kid`, view code `v`,
    `share` and group size `n`. `sizes` is `key_sizes(ev, total_accounts)` if already made."""
    if sizes is None:
        sizes = key_sizes(ev, total_accounts)
    m = _linkable(ev).join(sizes, ["v", "key"])
    return m.select("ord", "kid", "share", "n", "v")


def _full_pairs(m: ir.Table, total_accounts: int) -> ir.Table:
    small = m.filter(m.n <= FULL_PAIRS_MAX)
    r = small.view()
    j = small.join(r, [small.kid == r.kid, small.ord < r.ord])
    w = _pair_weight(small.n, small.v, small.share, r.share, total_accounts)
    return j.select(a=small.ord, b=r.ord, v=small.v, w=w)


def _expander_pairs(m: ir.Table, total_accounts: int) -> ir.Table:
    big = m.filter(m.n > FULL_PAIRS_MAX)
    big = big.mutate(pos=wide(ibis.row_number().over(group_by="kid", order_by="ord")))
    offsets = ibis.memtable({"off": list(EXPANDER_OFFSETS)})
    src = big.cross_join(offsets)
    # Offsets below n/2 only: then no two (position, offset) reach the same pair, so every
    # pair of a key appears once and no de-duplication pass is needed.
    src = src.filter(src.off * 2 < src.n)
    # One integer join key per (key, position): kid in the high bits.
    src = src.mutate(slot=(src.kid << PAIR_A_SHIFT) | ((src.pos + src.off) % src.n))
    dst = big.select(dslot=(big.kid << PAIR_A_SHIFT) | big.pos, dord=big.ord, dshare=big.share)
    j = src.join(dst, src.slot == dst.dslot)
    return j.select(
        a=ibis.least(j.ord, j.dord),
        b=ibis.greatest(j.ord, j.dord),
        v=j.v,
        w=_pair_weight(j.n, j.v, j.share, j.dshare, total_accounts),
    )


def pair_rows(ev: ir.Table, total_accounts: int, sizes: ir.Table | None = None) -> ir.Table:
    """One row per (pair, view, shared key): the pair-and-view key `pk` (`a < b` account
    positions and the view's index in `VIEWS`, see `PAIR_A_SHIFT`) and the key's weight `w`."""
    if total_accounts >= MAX_ACCOUNTS:
        raise ValueError(f"the link graph takes at most {MAX_ACCOUNTS - 1:,} accounts")
    m = keyed_members(ev, total_accounts, sizes)
    rows = ibis.union(
        _full_pairs(m, total_accounts), _expander_pairs(m, total_accounts), distinct=False
    )
    pk = (
        (rows.a.cast("int64") << PAIR_A_SHIFT)
        | (rows.b.cast("int64") << PAIR_B_SHIFT)
        | rows.v.cast("int64")
    )
    return rows.select(pk=pk, w=rows.w)


def pair_part(pairs: ir.Table, parts: int) -> ir.IntegerValue:
    """Which of `parts` parts a pair row falls in: its smaller position modulo `parts`, so all
    rows of a pair fall in one part."""
    return (pairs.pk >> PAIR_A_SHIFT) % parts


def pair_edges(pairs: ir.Table, order: ir.Table) -> ir.Table:
    """Per linked pair: total weight and, per view, the number of keys shared (unsorted).

    `pairs` may be one part of the pair rows (see `pair_part`): a pair's rows all fall in one
    part, so the parts' results concatenate to the whole.
    """
    per_view = pairs.group_by("pk").aggregate(s=pairs.w.sum(), k=pairs.count())
    v = per_view.pk & VIEW_MASK
    capped = per_view.s.clip(upper=VIEW_CAP)
    vw = ibis.cases(*[(v == i, VIEW_WEIGHTS[name]) for i, name in enumerate(VIEWS)], else_=0.0)
    per_view = per_view.mutate(ab=per_view.pk >> PAIR_B_SHIFT, v=v, weight=capped * vw)
    aggs = {"weight": per_view.weight.sum()}
    for i, name in enumerate(VIEWS):
        aggs[f"n_{name}"] = ibis.ifelse(per_view.v == i, per_view.k, 0).sum()
    for i, name in enumerate(VIEWS):
        aggs[f"w_{name}"] = ibis.ifelse(per_view.v == i, per_view.weight, 0.0).sum()
    by_pair = per_view.group_by("ab").aggregate(**aggs)
    # Most pairs share one common key and nothing else; dropping them early keeps the graph
    # (and everything downstream) proportional to the real links, not to the key fan-out.
    by_pair = by_pair.filter(by_pair.weight >= EDGE_FLOOR)
    rest = [c for c in by_pair.columns if c != "ab"]
    by_pair = by_pair.select(
        a=by_pair.ab >> PAIR_B_BITS,
        b=by_pair.ab & (MAX_ACCOUNTS - 1),
        **{c: by_pair[c] for c in rest},
    )
    return _named(by_pair, order)


def edges(ev: ir.Table, order: ir.Table, total_accounts: int) -> ir.Table:
    """One row per linked pair: total weight and, per view, the number of keys shared."""
    return pair_edges(pair_rows(ev, total_accounts), order).order_by(["a", "b"])


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
