"""Campaigns: flagged accounts grouped into campaigns, with the contract section-6 fields.

Relational parts are ibis expressions over the enriched events joined to the account ->
campaign assignment, so DuckDB and Spark compute the same figures.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from distillguard.contract import CAPABILITIES
from distillguard.links.evidence import VIEWS, view_codes

MIN_CAPABILITY_SHARE = 0.05  # a capability under 5% of a campaign's requests is not a target
ADOPTION_WINDOW_H = 72


def _assigned(e: ir.Table, assignment: ir.Table) -> ir.Table:
    a = assignment.filter(assignment.campaign_id.notnull()).select("account_id", "campaign_id")
    return e.join(a, "account_id")


def campaign_totals(e: ir.Table, assignment: ir.Table) -> ir.Table:
    """accounts, requests, output tokens, first/last seen, distinct IPs and ASNs per campaign."""
    j = _assigned(e, assignment)
    return j.group_by("campaign_id").aggregate(
        accounts=j.account_id.nunique(),
        requests=j.count(),
        output_tokens=j.output_tokens.sum(),
        first_ms=j.ts_ms.min(),
        last_ms=j.ts_ms.max(),
        ips=j.client_ip.nunique(),
        asns=j.asn.nunique(),
    )


def capability_shares(e: ir.Table, assignment: ir.Table) -> ir.Table:
    """Long table: campaign_id, capability, share of the campaign's requests carrying it."""
    j = _assigned(e, assignment)
    mask = j.cap_mask.fill_null(0)
    aggs = {
        name: ((mask // (2**i)) % 2 == 1).cast("float64").mean()
        for i, name in enumerate(CAPABILITIES)
    }
    wide = j.group_by("campaign_id").aggregate(**aggs)
    parts = [
        wide.select("campaign_id", capability=ibis.literal(name), share=wide[name])
        for name in CAPABILITIES
    ]
    return ibis.union(*parts)


def model_counts(e: ir.Table, assignment: ir.Table) -> ir.Table:
    """Long table: campaign_id, model, requests."""
    j = _assigned(e, assignment)
    return j.group_by(["campaign_id", "model"]).aggregate(requests=j.count())


def daily_volume(e: ir.Table, assignment: ir.Table) -> ir.Table:
    """campaign_id, day, model, requests, output tokens: the daily-volume chart's data."""
    j = _assigned(e, assignment)
    return j.group_by(["campaign_id", "day", "model"]).aggregate(
        requests=j.count(), output_tokens=j.output_tokens.sum()
    )


def release_adaptation(e: ir.Table, assignment: ir.Table, releases: ir.Table) -> ir.Table:
    """How fast each campaign moved to each released model.

    hours from release to the campaign's first request to the model, and the model's share of
    the campaign's traffic in the ADOPTION_WINDOW_H hours after release.
    """
    j = _assigned(e, assignment)
    r = releases.select("model", "released_ms")
    window = j.cross_join(r.rename(release_model="model"))
    after = window.filter(
        (window.ts_ms >= window.released_ms)
        & (window.ts_ms < window.released_ms + ADOPTION_WINDOW_H * 3_600_000)
    )
    on_new = (after.model == after.release_model).cast("float64")
    stats = after.group_by(["campaign_id", "release_model", "released_ms"]).aggregate(
        share_after=on_new.mean(),
        requests_after=after.count(),
    )
    firsts = j.group_by(["campaign_id", "model"]).aggregate(first_ms=j.ts_ms.min())
    firsts = firsts.rename(release_model="model")
    out = stats.join(firsts, ["campaign_id", "release_model"], how="left")
    return out.select(
        "campaign_id",
        model=out.release_model,
        hours_to_first=(out.first_ms - out.released_ms) / 3_600_000.0,
        share_after=out.share_after,
        requests_after=out.requests_after,
    )


# Instruction sentences: exact templates can be generic wrappers that unrelated operations share.
MERGE_VIEWS = ("sentence",)


def cluster_content_similarity(ev: ir.Table, members: ir.Table) -> ir.Table:
    """Histogram intersection of pooled template/sentence use between pairs of clusters.

    `ev` is `links.evidence.evidence`; `members` maps account position `ord` -> cluster
    (flagged accounts only). Two pieces of one operation draw on the same prompt library; two
    campaigns rarely do.
    """
    j = ev.filter(ev.v.isin(view_codes(MERGE_VIEWS))).join(members, "ord")
    k = j.group_by(["cluster", "v", "key"]).aggregate(s=j.share.sum())
    tot = k.group_by(["cluster", "v"]).aggregate(t=k.s.sum())
    p = k.join(tot, ["cluster", "v"])
    p = p.select("cluster", "v", "key", p=p.s / p.t)
    q = p.view()
    pair = p.join(q, [p.v == q.v, p.key == q.key, p.cluster < q.cluster])
    pair = pair.select(c1=p.cluster, c2=q.cluster, v=p.v, m=ibis.least(p.p, q.p))
    sims = pair.group_by(["c1", "c2", "v"]).aggregate(similarity=pair.m.sum())
    name = ibis.cases(*[(sims.v == i, v) for i, v in enumerate(VIEWS)], else_="?")
    return sims.select("c1", "c2", view=name, similarity=sims.similarity)
