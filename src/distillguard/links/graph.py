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
import pyarrow as pa
import xxhash

from distillguard.links.evidence import NETWORK_VIEWS, VIEW_WEIGHTS, VIEWS

FULL_PAIRS_MAX = 40  # groups up to this size link every pair
EXPANDER_OFFSETS = tuple(2**i for i in range(16))  # i -> i + 1, 2, 4, ... (mod n)
VIEW_CAP = 2.0  # one view cannot dominate an edge however many keys it repeats
MAX_GROUP_SHARE = 0.5  # a key held by over half of all accounts says nothing...
MIN_POPULATION_FOR_SHARE = 200  # ...once there are enough accounts for "half" to mean anything


def _key_weight(n: ir.IntegerValue, view: ir.StringValue) -> ir.FloatingValue:
    """Rarity weight of a key held by n accounts; 1 for a pair.

    Network keys (an address or subnet on a day) share one unit of evidence among all holders,
    1/(n-1), so a NAT, campus or VPN exit with many users links each pair only faintly. Content
    keys fall like 1/log2(n+1): a template shared by a thousand accounts is still evidence.
    """
    nf = n.cast("float64")
    return ibis.ifelse(view.isin(NETWORK_VIEWS), 1.0 / (nf - 1.0), 1.585 / (nf + 1.0).log2())


def keyed_members(ev: ir.Table, order: ir.Table, total_accounts: int) -> ir.Table:
    """Evidence rows of shared keys with group size, key weight and position in the group."""
    sizes = ev.group_by(["view", "key"]).aggregate(n=ev.count())
    limit = total_accounts
    if total_accounts >= MIN_POPULATION_FOR_SHARE:
        limit = int(total_accounts * MAX_GROUP_SHARE)
    sizes = sizes.filter((sizes.n >= 2) & (sizes.n <= limit))
    m = ev.join(sizes, ["view", "key"]).join(order, "account_id")
    w = ibis.window(group_by=["view", "key"], order_by="ord")
    return m.mutate(pos=ibis.row_number().over(w), w=_key_weight(m.n, m["view"]))


def _full_pairs(m: ir.Table) -> ir.Table:
    small = m.filter(m.n <= FULL_PAIRS_MAX)
    r = small.view()
    j = small.join(r, [small["view"] == r["view"], small.key == r.key, small.ord < r.ord])
    return j.select(
        a=small.account_id, b=r.account_id, view=small["view"], key=small.key, w=small.w
    )


def _expander_pairs(m: ir.Table) -> ir.Table:
    big = m.filter(m.n > FULL_PAIRS_MAX)
    offsets = ibis.memtable({"off": list(EXPANDER_OFFSETS)})
    src = big.cross_join(offsets)
    src = src.filter(src.off < src.n).mutate(target=(src.pos + src.off) % src.n)
    dst = big.select(
        dview=big["view"], dkey=big.key, dpos=big.pos, daccount=big.account_id, dord=big.ord
    )
    j = src.join(dst, [src["view"] == dst.dview, src.key == dst.dkey, src.target == dst.dpos])
    # Store each pair once, smaller order first.
    first = j.ord < j.dord
    return j.select(
        a=ibis.ifelse(first, j.account_id, j.daccount),
        b=ibis.ifelse(first, j.daccount, j.account_id),
        view=j["view"],
        key=j.key,
        w=j.w,
    )


def edges(ev: ir.Table, order: ir.Table, total_accounts: int) -> ir.Table:
    """One row per linked pair: total weight and, per view, the number of keys shared."""
    m = keyed_members(ev, order, total_accounts)
    # distinct: an offset and its complement can reach the same pair in a small ring.
    pairs = ibis.union(_full_pairs(m), _expander_pairs(m), distinct=True)
    per_view = pairs.group_by(["a", "b", "view"]).aggregate(s=pairs.w.sum(), k=pairs.count())
    capped = per_view.s.clip(upper=VIEW_CAP)
    vw = ibis.cases(*[(per_view["view"] == v, w) for v, w in VIEW_WEIGHTS.items()], else_=0.0)
    per_view = per_view.mutate(weight=capped * vw)
    aggs = {"weight": per_view.weight.sum()}
    for v in VIEWS:
        aggs[f"n_{v}"] = ibis.ifelse(per_view["view"] == v, per_view.k, 0).sum()
    return per_view.group_by(["a", "b"]).aggregate(**aggs).order_by(["a", "b"])


def account_order(ids: pa.Array) -> pa.Table:
    """A fixed pseudo-random order of accounts (xxhash), the same on every engine."""
    values = ids.to_pylist()
    ords = [xxhash.xxh64_intdigest(v.encode()) >> 1 for v in values]
    return pa.table(
        {"account_id": pa.array(values, pa.string()), "ord": pa.array(ords, pa.int64())}
    )
