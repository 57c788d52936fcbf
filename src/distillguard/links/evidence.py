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


def _rows(t: ir.Table, view: str, key: ir.StringValue, share: float | None = None) -> ir.Table:
    cols = {"account_id": t.account_id, "view": ibis.literal(view), "key": key}
    if share is not None:
        cols["share"] = ibis.literal(share, type="float64")
    return t.select(**cols)


def _with_share(rows: ir.Table) -> ir.Table:
    """Count each (account, view, key) and divide by the account's total in that view.

    The totals are summed from the counts, not counted from the rows again: the rows are
    several per request, the counts a third of that.
    """
    c = rows.group_by(["account_id", "view", "key"]).aggregate(c=rows.count())
    totals = c.group_by(["account_id", "view"]).aggregate(total=c.c.sum()).rename(tview="view")
    j = c.join(totals, [c.account_id == totals.account_id, c["view"] == totals.tview])
    return j.select(c.account_id, c["view"], c.key, share=c.c.cast("float64") / j.total)


def _s(v: ir.Value) -> ir.StringValue:
    return v.cast("string")


def request_evidence(e: ir.Table) -> ir.Table:
    """Evidence from requests: addresses per day, templates, wrappers, system prompts, timing.

    The share of a wrapper band is divided by the bands per request, so one template's many
    bands count as one template, not as many independent coincidences.
    """
    # Four of the sixteen paraphrase bands: enough to meet reworded wrappers across an account's
    # many requests, at a quarter of the rows (exact templates and sentences cover the rest).
    bands = e.filter(e.tpl_bands.notnull()).select(
        "account_id", band=e.tpl_bands[:LINK_BANDS].unnest()
    )
    sents = e.filter(e.sent_ids.notnull()).select("account_id", sent=e.sent_ids.unnest())
    rows = ibis.union(
        _rows(e, "ip", e.client_ip + "@" + _s(e.day)),
        _rows(e, "subnet", e.subnet + "@" + _s(e.day)),
        _rows(e, "template", _s(e.tpl_id)),
        _rows(bands, "wrapper", _s(bands.band)),
        _rows(sents, "sentence", _s(sents.sent)),
        _rows(e, "system", _s(e.sys_id).fill_null("none")),
        _rows(e, "sync", _s(e.tpl_prefix) + "@" + _s(e.ts_ms // SYNC_WINDOW_MS)),
        distinct=False,
    )
    ev = _with_share(rows)
    # Requests without a system prompt share nothing.
    return ev.filter(~((ev["view"] == "system") & (ev.key == "none")))


def account_evidence(accounts: ir.Table) -> ir.Table:
    """Evidence from sign-up records: payment and device fingerprints, batch sign-ups."""
    a = accounts
    signup_key = a.email_domain.fill_null("?") + "@" + _s(a.created_ms // SIGNUP_WINDOW_MS)
    parts = [
        _rows(a.filter(a.payment_fingerprint.notnull()), "payment", a.payment_fingerprint, 1.0),
        _rows(a.filter(a.device_fingerprint.notnull()), "device", a.device_fingerprint, 1.0),
        _rows(a.filter(a.created_ms.notnull()), "signup", signup_key, 1.0),
    ]
    return ibis.union(*parts, distinct=True)


def evidence(e: ir.Table, accounts: ir.Table | None) -> ir.Table:
    """All evidence rows, each (account, view, key) once."""
    ev = request_evidence(e)
    if accounts is not None:
        # The two sets have no view in common and each is distinct already: a DISTINCT union
        # here would hash every request row again (and ran out of memory at full scale).
        ev = ibis.union(ev, account_evidence(accounts), distinct=False)
    return ev
