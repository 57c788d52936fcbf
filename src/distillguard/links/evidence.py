"""Shared evidence keys: what two accounts can have in common, one view at a time.

Each view turns requests (or sign-up records) into `(account_id, view, key, share)` rows, where
`share` is the fraction of the account's traffic that carries the key (1 for sign-up records).
Two accounts that hold the same key are candidates for a link. Written once in ibis so DuckDB
and Spark run the same definitions.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

SYNC_WINDOW_MS = 15 * 60_000
LINK_BANDS = 4
SIGNUP_WINDOW_MS = 60 * 60_000

# View name -> weight of the view in an edge. Payment and device fingerprints are strong
# (hard to share by accident); sub-networks and paraphrase bands are weak on their own.
VIEW_WEIGHTS: dict[str, float] = {
    "ip": 1.0,
    "subnet": 0.5,
    "template": 1.0,
    "wrapper": 0.5,
    "sentence": 1.0,
    "system": 1.0,
    "sync": 1.0,
    "payment": 2.0,
    "device": 2.0,
    "signup": 1.0,
}
VIEWS = tuple(VIEW_WEIGHTS)
NETWORK_VIEWS = ("ip", "subnet")
# Views whose weight is the overlap of two accounts' traffic (histogram intersection).
OVERLAP_VIEWS = ("template", "wrapper", "sentence", "system", "sync")
ACCOUNT_VIEWS = ("payment", "device", "signup")


def view_codes(names: tuple[str, ...]) -> list[int]:
    """The integer codes (positions in `VIEWS`) of these views, as evidence rows carry them."""
    return [VIEWS.index(name) for name in names]


# Integer keys: an entity's dense rank in the high bits, a time bucket in the low ones.
TIME_BITS = 24  # days or hours: 2^24 of them is over 1,900 years
SYNC_SHIFT = 37  # a 15-minute window above the low 37 bits of the (hashed) template prefix
SYNC_WINDOWS = 2**26


def wide(rank: ir.IntegerValue) -> ir.IntegerValue:
    """A window rank as a real int64, safe to shift: ibis types ranks as int64 and drops a
    cast to it, but Spark's ranks are 32-bit ints, which Java shifts modulo 32."""
    return rank.cast("int32").cast("int64")


def _code(view: str) -> ir.IntegerValue:
    return ibis.literal(VIEWS.index(view), type="int8")


def _rows(t: ir.Table, view: str, key: ir.IntegerValue) -> ir.Table:
    """One evidence row per request (or list element), to be counted by `_with_share`."""
    return t.select(ord=t.ord, v=_code(view), key=key, c=ibis.literal(1, type="int64"))


def _network_rows(e: ir.Table, column: str, view: str) -> ir.Table:
    """Rows of an address view, counted per (account, address, day) before the address gets
    its integer rank: the rank join then runs on the counts, not on every request."""
    c = e.group_by(["ord", column, "day"]).aggregate(c=e.count())
    r = _ranked(e, column)
    j = c.left_join(r, c[column] == r.value)
    return j.select(ord=j.ord, v=_code(view), key=_bucketed(j.rank, j.day), c=j.c)


def _account_rows(a: ir.Table, view: str, key: ir.IntegerValue) -> ir.Table:
    return a.select(ord=a.ord, v=_code(view), key=key, share=ibis.literal(1.0, type="float64"))


def _with_share(rows: ir.Table) -> ir.Table:
    """Count each (account, view, key) and divide by the account's total in that view.

    The totals are summed from the counts, not counted from the rows again: the rows are
    several per request, the counts a third of that. Rows without a key count in the total
    (a request without a template dilutes its account's template shares) but are not kept.
    """
    c = rows.group_by(["ord", "v", "key"]).aggregate(c=rows.c.sum())
    totals = c.group_by(["ord", "v"]).aggregate(total=c.c.sum()).rename(tord="ord", tv="v")
    j = c.join(totals, [c.ord == totals.tord, c.v == totals.tv])
    ev = j.select(c.ord, c.v, c.key, share=c.c.cast("float64") / j.total)
    return ev.filter(ev.key.notnull())


def _ranked(t: ir.Table, column: str) -> ir.Table:
    """`value -> rank` for the distinct non-null values of `column`: a dense integer id that
    every engine computes alike (hashes differ between engines, and Spark's are 32-bit)."""
    d = t.select(value=t[column]).distinct()
    d = d.filter(d.value.notnull())
    return d.mutate(rank=wide(ibis.dense_rank().over(order_by=d.value)))


def _with_rank(t: ir.Table, column: str, name: str) -> ir.Table:
    """`t` with the rank of its `column` as `name` (for small tables: accounts)."""
    r = _ranked(t, column)
    j = t.left_join(r, t[column] == r.value)
    return j.drop("value").rename(**{name: "rank"})


def _bucketed(rank: ir.IntegerValue, bucket: ir.IntegerValue) -> ir.IntegerValue:
    return (rank << TIME_BITS) | (bucket % 2**TIME_BITS)


def request_evidence(e: ir.Table) -> ir.Table:
    """Evidence from requests (with account position `ord`): addresses per day, templates,
    wrappers, system prompts, timing. Keys are int64; views are codes into `VIEWS`.

    The share of a wrapper band is divided by the bands per request, so one template's many
    bands count as one template, not as many independent coincidences.
    """
    # Four of the sixteen paraphrase bands: enough to meet reworded wrappers across an account's
    # many requests, at a quarter of the rows (exact templates and sentences cover the rest).
    bands = e.filter(e.tpl_bands.notnull()).select("ord", band=e.tpl_bands[:LINK_BANDS].unnest())
    sents = e.filter(e.sent_ids.notnull()).select("ord", sent=e.sent_ids.unnest())
    window = (e.ts_ms // SYNC_WINDOW_MS) % SYNC_WINDOWS
    rows = ibis.union(
        _network_rows(e, "client_ip", "ip"),
        _network_rows(e, "subnet", "subnet"),
        _rows(e, "template", e.tpl_id),
        _rows(bands, "wrapper", bands.band),
        _rows(sents, "sentence", sents.sent),
        _rows(e, "system", e.sys_id),
        _rows(e, "sync", e.tpl_prefix ^ (window << SYNC_SHIFT)),
        distinct=False,
    )
    return _with_share(rows)


def account_evidence(accounts: ir.Table) -> ir.Table:
    """Evidence from sign-up records (with `ord`): payment and device fingerprints, batch
    sign-ups (the same e-mail domain within the hour)."""
    a = accounts.mutate(domain=accounts.email_domain.fill_null("?"))
    a = _with_rank(
        _with_rank(a, "payment_fingerprint", "payment_rank"), "device_fingerprint", "device_rank"
    )
    a = _with_rank(a, "domain", "domain_rank")
    parts = [
        _account_rows(a.filter(a.payment_rank.notnull()), "payment", a.payment_rank),
        _account_rows(a.filter(a.device_rank.notnull()), "device", a.device_rank),
        _account_rows(
            a.filter(a.created_ms.notnull()),
            "signup",
            _bucketed(a.domain_rank, a.created_ms // SIGNUP_WINDOW_MS),
        ),
    ]
    return ibis.union(*parts, distinct=True)


def evidence(e: ir.Table, accounts: ir.Table | None, order: ir.Table) -> ir.Table:
    """All evidence rows `(ord, v, key, share)` of the accounts in `order` (account_id ->
    ord), each (account, view, key) once. Integer columns only: at full scale the string
    keys and account ids were most of this step's time and memory."""
    ev = request_evidence(e.join(order, "account_id"))
    if accounts is not None:
        # The two sets have no view in common and each is distinct already: a DISTINCT union
        # here would hash every request row again (and ran out of memory at full scale).
        acc = account_evidence(accounts.join(order, "account_id"))
        ev = ibis.union(ev, acc, distinct=False)
    return ev
