"""Per-account behavioural fingerprints, written once as ibis expressions.

The same expressions run on DuckDB (embedded default) and on Spark (ibis PySpark backend),
so there is no second copy of this logic. Input is the enriched events table
(`pipeline.enrich`), one row per request with integer epoch-ms time columns.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from distillguard.contract import CAPABILITIES

MS_PER_DAY = 86_400_000
NIGHT_HOURS = (0, 1, 2, 3, 4, 5)
BURST_GAP_MS = 5_000
ANONYMOUS_KINDS = ("vpn", "proxy", "tor")
HOSTED_KINDS = ("datacenter",)
CONTENT_FLAGS = ("cot", "rubric", "censor", "train_shaped", "max_out", "thinking")


def _attach(left: ir.Table, right: ir.Table, how: str = "inner") -> ir.Table:
    """Join `right`'s columns onto `left` by account_id, keeping one account_id column."""
    j = left.join(right, left.account_id == right.account_id, how=how)
    return j.select(left, *[right[c] for c in right.columns if c != "account_id"])


def _share(cond: ir.BooleanValue) -> ir.FloatingValue:
    return cond.cast("float64").mean()


def volume(e: ir.Table) -> ir.Table:
    """Requests, active days, tokens per active day and the output/input ratio."""
    g = e.group_by("account_id").aggregate(
        requests=e.count(),
        active_days=e.day.nunique(),
        first_ms=e.ts_ms.min(),
        last_ms=e.ts_ms.max(),
        input_tokens=e.input_tokens.sum(),
        output_tokens=e.output_tokens.sum(),
        error_share=_share(e.status.isin(("error", "refused", "rate_limited"))),
    )
    return g.mutate(
        req_per_day=g.requests / g.active_days,
        out_tokens_per_day=g.output_tokens / g.active_days,
        out_in_ratio=(g.output_tokens + 1) / (g.input_tokens + 1),
        span_days=(g.last_ms - g.first_ms) / MS_PER_DAY,
    )


def _entropy(e: ir.Table, col: str, name: str) -> ir.Table:
    """Shannon entropy (bits) of an account's distribution over `col`."""
    counts = e.group_by(["account_id", col]).aggregate(c=e.count())
    totals = counts.group_by("account_id").aggregate(t=counts.c.sum())
    j = counts.join(totals, "account_id")
    p = j.c.cast("float64") / j.t
    return j.group_by("account_id").aggregate(**{name: (-(p * p.log2())).sum()})


def timing(e: ir.Table) -> ir.Table:
    """Inter-arrival CV, hour and weekday entropy, night share and burst structure."""
    w = ibis.window(group_by="account_id", order_by=["ts_ms", "request_id"])
    gaps = e.mutate(gap=(e.ts_ms - e.ts_ms.lag().over(w)).cast("float64"))
    gaps = gaps.filter(gaps.gap.notnull())
    g = gaps.group_by("account_id").aggregate(
        gap_mean=gaps.gap.mean(),
        gap_std=gaps.gap.std(how="pop"),
        burst_share=_share(gaps.gap < BURST_GAP_MS),
    )
    g = g.mutate(gap_cv=(g.gap_std / (g.gap_mean + 1.0)))
    night = e.group_by("account_id").aggregate(
        night_share=_share(e.hour.isin(NIGHT_HOURS)),
        weekend_share=_share(e.weekday >= 5),
        active_hours=e.hour.nunique(),
    )
    hours = _entropy(e, "hour", "hour_entropy")
    days = _entropy(e, "weekday", "weekday_entropy")
    out = _attach(night, g.select("account_id", "gap_cv", "burst_share"), "left")
    return _attach(_attach(out, hours, "left"), days, "left")


def conversation(e: ir.Table) -> ir.Table:
    """Conversation depth and follow-ups: extraction is mostly one-shot."""
    turn = e.turn.fill_null(0)
    return e.group_by("account_id").aggregate(
        mean_turn=turn.cast("float64").mean(),
        followup_share=_share(turn > 0),
        conversations=e.conversation_id.nunique(),
    )


def content(e: ir.Table) -> ir.Table:
    """Prompt diversity, template concentration, capability mix and extraction-shaped asks."""
    per_tpl = e.group_by(["account_id", "tpl_id"]).aggregate(c=e.count())
    top = per_tpl.group_by("account_id").aggregate(
        templates=per_tpl.count(), top_tpl_requests=per_tpl.c.max()
    )
    mask = e.cap_mask.fill_null(0)
    shares = {
        f"cap_{name}": _share((mask // (2**i)) % 2 == 1) for i, name in enumerate(CAPABILITIES)
    }
    flags = {f"{f}_share": _share(e[f].fill_null(False)) for f in CONTENT_FLAGS}
    g = e.group_by("account_id").aggregate(
        n=e.count(),
        systems=e.sys_id.nunique(),
        tool_share=_share(e.tools.fill_null(0) > 0),
        image_share=_share(e.images.fill_null(0) > 0),
        **shares,
        **flags,
    )
    j = _attach(g, top)
    return j.mutate(
        template_diversity=j.templates / j.n, top_template_share=j.top_tpl_requests / j.n
    ).drop("n", "top_tpl_requests")


def network(e: ir.Table) -> ir.Table:
    """IP, subnet and ASN diversity and churn, anonymising-network share, user-agent mix."""
    per_day = e.group_by(["account_id", "day"]).aggregate(day_ips=e.client_ip.nunique())
    churn = per_day.group_by("account_id").aggregate(ips_per_day=per_day.day_ips.mean())
    per_ua = e.group_by(["account_id", "user_agent"]).aggregate(c=e.count())
    ua = per_ua.group_by("account_id").aggregate(
        user_agents=per_ua.count(), top_ua_requests=per_ua.c.max()
    )
    g = e.group_by("account_id").aggregate(
        n=e.count(),
        ips=e.client_ip.nunique(),
        subnets=e.subnet.nunique(),
        asns=e.asn.nunique(),
        anon_share=_share(e.ip_kind.isin(ANONYMOUS_KINDS)),
        proxy_share=_share(e.ip_kind.isin(("proxy", "tor"))),
        vpn_share=_share(e.ip_kind == "vpn"),
        hosted_share=_share(e.ip_kind.isin(HOSTED_KINDS)),
        residential_share=_share(e.ip_kind.isin(("residential", "mobile"))),
        # Home-line addresses change rarely; one per request means a rotating proxy pool.
        # VPN, Tor and hosting exits are excluded: privacy users hop between those by design.
        home_ips=ibis.ifelse(
            e.ip_kind.isin(("datacenter", "vpn", "tor")), ibis.null("string"), e.client_ip
        ).nunique(),
    )
    j = _attach(_attach(g, churn), ua)
    return j.mutate(
        ips_per_request=j.ips / j.n,
        home_ips_per_request=j.home_ips / j.n,
        top_ua_share=j.top_ua_requests / j.n,
    ).drop("n", "top_ua_requests")


def adoption(e: ir.Table, releases: ir.Table) -> ir.Table:
    """Hours from a model's release to the account's first request to it (min over releases)."""
    firsts = e.group_by(["account_id", "model"]).aggregate(first_use=e.ts_ms.min())
    j = firsts.join(releases, "model")
    lag_h = (j.first_use - j.released_ms) / 3_600_000.0
    j = j.filter(lag_h >= 0).mutate(lag_h=lag_h)
    return j.group_by("account_id").aggregate(adopt_lag_h=j.lag_h.min())


def account_profile(accounts: ir.Table, first_seen: ir.Table) -> ir.Table:
    """Age at first request, tier and disposable sign-up domain."""
    j = _attach(
        first_seen, accounts.select("account_id", "created_ms", "tier", "disposable"), "left"
    )
    return j.mutate(
        age_days=((j.first_ms - j.created_ms) / MS_PER_DAY),
    ).drop("first_ms", "created_ms")


def account_fingerprints(
    e: ir.Table, accounts: ir.Table | None = None, releases: ir.Table | None = None
) -> ir.Table:
    """One row per account with every fingerprint column (nulls where inputs are absent)."""
    fp = volume(e)
    for part in (timing(e), conversation(e), content(e), network(e)):
        fp = _attach(fp, part)
    if releases is not None:
        fp = _attach(fp, adoption(e, releases), "left")
    else:
        fp = fp.mutate(adopt_lag_h=ibis.null("float64"))
    if accounts is not None:
        fp = _attach(fp, account_profile(accounts, fp.select("account_id", "first_ms")), "left")
    else:
        fp = fp.mutate(
            age_days=ibis.null("float64"),
            tier=ibis.null("string"),
            disposable=ibis.null("boolean"),
        )
    return fp.order_by("account_id")
