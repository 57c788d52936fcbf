"""What the report shows, as plain Python values computed by DuckDB SQL over a run directory.

Every function takes a `RunDir` and returns small lists/dicts (top-N, per-day, per-campaign):
nothing here is per request, so the report stays fast on large runs.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from distillguard.contract import CAPABILITIES
from distillguard.report.rundir import ANONYMOUS_KINDS, EDGE_VIEWS, RunDir, sql_str

MS_PER_DAY = 86_400_000
MAX_CAMPAIGN_SECTIONS = 25  # campaigns beyond this are in the headline table only
MAX_PROMPTS = 5
GRAPH_LINKS_PER_NODE = 4  # links drawn per account in the campaign graph
PROMPT_CHARS = 600
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


@dataclass
class Campaign:
    """One campaign's headline figures plus the data behind its section."""

    campaign_id: str
    accounts: int
    requests: int
    output_tokens: int
    first_seen: datetime | None
    last_seen: datetime | None
    capabilities: list[str]
    models: list[str]
    ips: int
    asns: int
    anon_share: float = 0.0
    hosted_share: float = 0.0
    top_asns: list[dict[str, Any]] = field(default_factory=list)
    top_uas: list[dict[str, Any]] = field(default_factory=list)
    kinds: list[dict[str, Any]] = field(default_factory=list)
    cap_shares: list[dict[str, Any]] = field(default_factory=list)
    daily: list[dict[str, Any]] = field(default_factory=list)
    reasons: list[dict[str, Any]] = field(default_factory=list)
    adaptation: list[str] = field(default_factory=list)
    prompts: list[dict[str, Any]] = field(default_factory=list)
    tiers: list[dict[str, Any]] = field(default_factory=list)


def fmt_time(value: Any) -> str:
    """A timestamp, datetime or epoch-ms as 'YYYY-MM-DD HH:MM UTC' ('' when absent)."""
    if value is None:
        return ""
    if isinstance(value, int | float):
        value = datetime.fromtimestamp(value / 1000, tz=UTC)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return str(value)


def day_to_date(day: int) -> str:
    return datetime.fromtimestamp(int(day) * 86_400, tz=UTC).strftime("%Y-%m-%d")


def reason_kind(reason: str) -> str:
    """A reason with its numbers masked, so the same signal on many accounts counts once."""
    return _NUMBER.sub("N", reason)


def campaigns(run: RunDir, detailed: int | None = MAX_CAMPAIGN_SECTIONS) -> list[Campaign]:
    """Campaigns, largest (by requests) first; the first `detailed` (None: all) with methods."""
    if "campaigns" not in run.views:
        return []
    rows = run.rows("SELECT * FROM campaigns ORDER BY requests DESC, campaign_id")
    out = []
    for r in rows:
        out.append(
            Campaign(
                campaign_id=str(r["campaign_id"]),
                accounts=int(r.get("accounts") or 0),
                requests=int(r.get("requests") or 0),
                output_tokens=int(r.get("output_tokens") or 0),
                first_seen=r.get("first_seen"),
                last_seen=r.get("last_seen"),
                capabilities=list(r.get("capabilities") or []),
                models=list(r.get("models") or []),
                ips=int(r.get("ips") or 0),
                asns=int(r.get("asns") or 0),
            )
        )
    for c in out[:detailed]:
        _methods(run, c)
    return out


def _campaign_requests(run: RunDir, campaign_id: str) -> str:
    """SQL: the enriched requests of one campaign's accounts."""
    return f"(SELECT * FROM enriched WHERE account_id IN {run.account_ids_sql(campaign_id)})"


def _methods(run: RunDir, c: Campaign) -> None:
    """Network kinds, ASNs and user agents of a campaign (proxy/VPN share, top ASNs, UAs)."""
    if not run.has("enriched", "account_id"):
        return
    req = _campaign_requests(run, c.campaign_id)
    if run.has("enriched", "ip_kind"):
        c.kinds = run.rows(
            f"SELECT coalesce(ip_kind, 'unknown') AS kind, count(*) AS requests, "
            f"count(DISTINCT client_ip) AS ips FROM {req} GROUP BY 1 ORDER BY 2 DESC"
        )
        total = sum(k["requests"] for k in c.kinds) or 1
        c.anon_share = sum(k["requests"] for k in c.kinds if k["kind"] in ANONYMOUS_KINDS) / total
        c.hosted_share = sum(k["requests"] for k in c.kinds if k["kind"] == "datacenter") / total
    if run.has("enriched", "asn"):
        c.top_asns = _top(run, req, "asn", 10)
    if run.has("enriched", "user_agent"):
        c.top_uas = _top(run, req, "user_agent", 5)


def _top(run: RunDir, req: str, column: str, n: int) -> list[dict[str, Any]]:
    rows = run.rows(
        f"SELECT coalesce(CAST({column} AS VARCHAR), 'unknown') AS value, count(*) AS requests, "
        f"count(DISTINCT client_ip) AS ips, count(DISTINCT account_id) AS accounts "
        f"FROM {req} GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {n}"
    )
    total = run.rows(f"SELECT count(*) AS n FROM {req}")[0]["n"] or 1
    for r in rows:
        r["share"] = r["requests"] / total
    return rows


def capability_shares(run: RunDir, campaign_id: str) -> list[dict[str, Any]]:
    """Share of the campaign's requests that carry each capability (a request may carry several)."""
    req = _campaign_requests(run, campaign_id)
    if run.has("enriched", "cap_mask"):
        parts = ", ".join(
            f"avg(((coalesce(cap_mask, 0) >> {i}) & 1)::DOUBLE) AS {sql_ident(name)}"
            for i, name in enumerate(CAPABILITIES)
        )
        row = run.rows(f"SELECT {parts} FROM {req}")[0]
        shares = [{"capability": k, "share": float(v or 0.0)} for k, v in row.items()]
    elif run.has("enriched", "capability"):
        rows = run.rows(
            f"SELECT coalesce(capability, 'other') AS capability, count(*) AS n FROM {req} "
            "GROUP BY 1"
        )
        total = sum(r["n"] for r in rows) or 1
        shares = [{"capability": r["capability"], "share": r["n"] / total} for r in rows]
    else:
        return []
    return sorted((s for s in shares if s["share"] > 0), key=lambda s: -s["share"])


def sql_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def daily_volume(run: RunDir, campaign_id: str) -> list[dict[str, Any]]:
    """Requests per day and model (campaign_daily.parquet, else computed from enriched)."""
    cid = sql_str(campaign_id)
    if run.has("campaign_daily", "campaign_id", "day", "requests"):
        model = run.column_or("campaign_daily", "model", "'all'")
        return run.rows(
            f"SELECT day, {model} AS model, sum(requests) AS requests FROM campaign_daily "
            f"WHERE campaign_id = {cid} GROUP BY 1, 2 ORDER BY 1, 2"
        )
    if run.has("enriched", "ts_ms"):
        req = _campaign_requests(run, campaign_id)
        model = run.column_or("enriched", "model", "'all'")
        return run.rows(
            f"SELECT ts_ms // {MS_PER_DAY} AS day, {model} AS model, count(*) AS requests "
            f"FROM {req} GROUP BY 1, 2 ORDER BY 1, 2"
        )
    return []


def releases(run: RunDir) -> list[dict[str, Any]]:
    """Model releases as (model, epoch ms)."""
    if not run.has("releases", "model", "released_at"):
        return []
    return run.rows(
        "SELECT model, epoch_ms(released_at::TIMESTAMPTZ) AS released_ms FROM releases "
        "ORDER BY released_ms"
    )


def adaptation_sentences(run: RunDir, campaign_id: str) -> list[str]:
    """'moved 48% of its traffic to atlas-4 within 72 h of its release (first request 20 h ...)'."""
    if not run.has("campaign_releases", "campaign_id", "model", "share_after"):
        return []
    hours = run.column_or("campaign_releases", "hours_to_first", "NULL")
    rows = run.rows(
        f"SELECT model, share_after, {hours} AS hours_to_first FROM campaign_releases "
        f"WHERE campaign_id = {sql_str(campaign_id)} AND share_after > 0 "
        f"AND {hours} IS NOT NULL AND {hours} >= 0 ORDER BY share_after DESC"
    )
    from distillguard.campaigns.build import ADOPTION_WINDOW_H

    return [
        f"moved {100 * r['share_after']:.0f}% of its traffic to {r['model']} within "
        f"{ADOPTION_WINDOW_H} h of its release (first request {r['hours_to_first']:.0f} h "
        "after release)"
        for r in rows
    ]


def reason_counts(run: RunDir, campaign_id: str | None, limit: int = 8) -> list[dict[str, Any]]:
    """Most common reasons (numbers masked) among a campaign's accounts, with one example each."""
    if not run.has(run.scores_view, "reasons"):
        return []
    where = f"campaign_id = {sql_str(campaign_id)}" if campaign_id else "flagged"
    rows = run.rows(f"SELECT reasons FROM {run.scores_view} WHERE {where}")
    counts: Counter[str] = Counter()
    rank_sum: Counter[str] = Counter()
    example: dict[str, str] = {}
    for r in rows:  # one row per account of one campaign: small
        seen: set[str] = set()
        for rank, reason in enumerate(r["reasons"] or []):
            kind = reason_kind(reason)
            if kind in seen:
                continue
            seen.add(kind)
            counts[kind] += 1
            rank_sum[kind] += rank
            example.setdefault(kind, reason)
    total = len(rows) or 1
    # Most common first; among equally common, the one ranked stronger in the accounts' lists.
    top = sorted(counts, key=lambda k: (-counts[k], rank_sum[k] / counts[k], k))[:limit]
    return [
        {"kind": k, "example": example[k], "accounts": counts[k], "share": counts[k] / total}
        for k in top
    ]


def example_prompts(run: RunDir, campaign_id: str, redact: bool) -> list[dict[str, Any]]:
    """The campaign's most used templates with one example prompt each (no text if redacted)."""
    if not run.has("enriched", "tpl_id", "request_id"):
        return []
    req = _campaign_requests(run, campaign_id)
    tops = run.rows(
        f"SELECT tpl_id, count(*) AS requests, count(DISTINCT account_id) AS accounts, "
        f"min(request_id) AS example_id FROM {req} WHERE tpl_id IS NOT NULL "
        f"GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {MAX_PROMPTS}"
    )
    if any(t["requests"] > 1 for t in tops):  # one-off prompts say little about a campaign
        tops = [t for t in tops if t["requests"] > 1]
    if redact or not run.has("events", "request_id", "prompt") or not tops:
        return [{**t, "prompt": None} for t in tops]
    ids = ", ".join(sql_str(str(t["example_id"])) for t in tops)
    texts = {
        r["request_id"]: r["prompt"]
        for r in run.rows(
            f"SELECT request_id, left(prompt, {PROMPT_CHARS + 1}) AS prompt FROM events "
            f"WHERE request_id IN ({ids})"
        )
    }
    out = []
    for t in tops:
        text = texts.get(t["example_id"])
        if text is not None and len(text) > PROMPT_CHARS:
            text = text[:PROMPT_CHARS] + " …"
        out.append({**t, "prompt": text})
    return out


def signup_tiers(run: RunDir, campaign_id: str) -> list[dict[str, Any]]:
    """Sign-up tier and disposable-domain counts of a campaign's accounts."""
    if not run.has("signup", "account_id", "tier"):
        return []
    return run.rows(
        f"SELECT coalesce(tier, 'unknown') AS tier, count(*) AS accounts FROM signup "
        f"WHERE account_id IN {run.account_ids_sql(campaign_id)} GROUP BY 1 ORDER BY 2 DESC, 1"
    )


def graph(
    run: RunDir, campaign_id: str, max_nodes: int, per_node: int = GRAPH_LINKS_PER_NODE
) -> tuple[list[dict], list[dict], int]:
    """Nodes (the campaign's accounts, busiest first, at most `max_nodes`), the edges drawn
    (each node's `per_node` strongest links: a readable backbone of a dense hydra), and the
    number of links among the nodes."""
    fp = "fingerprints" if run.has("fingerprints", "account_id", "requests") else None
    requests = "coalesce(f.requests, 0)" if fp else "0"
    join = "LEFT JOIN fingerprints f USING (account_id)" if fp else ""
    nodes = run.rows(
        f"SELECT s.account_id, s.risk, {requests} AS requests FROM {run.scores_view} s {join} "
        f"WHERE s.campaign_id = {sql_str(campaign_id)} "
        f"ORDER BY requests DESC, s.risk DESC, s.account_id LIMIT {int(max_nodes)}"
    )
    if not nodes or not run.has("edges", "a", "b"):
        return nodes, [], 0
    ids = ", ".join(sql_str(n["account_id"]) for n in nodes)
    views = [v for v in EDGE_VIEWS if run.has("edges", v)]
    weight = run.column_or("edges", "weight", "1.0")
    extra = "".join(f", {v}" for v in views)
    inner = f"SELECT a, b, {weight} AS weight{extra} FROM edges WHERE a IN ({ids}) AND b IN ({ids})"
    total = run.rows(f"SELECT count(*) AS n FROM ({inner})")[0]["n"]
    edges = run.rows(
        f"WITH e AS ({inner}), ends AS (SELECT a AS node, a, b, weight FROM e "
        f"UNION ALL SELECT b AS node, a, b, weight FROM e), "
        f"ranked AS (SELECT a, b, row_number() OVER (PARTITION BY node "
        f"ORDER BY weight DESC, a, b) AS k FROM ends) "
        f"SELECT e.* FROM e SEMI JOIN (SELECT DISTINCT a, b FROM ranked WHERE k <= {per_node}) "
        f"r USING (a, b) "
        f"ORDER BY weight DESC, a, b"
    )
    return nodes, edges, int(total)


def accounts_table(run: RunDir, limit: int) -> tuple[list[dict[str, Any]], int]:
    """The riskiest `limit` accounts with their key numbers; and the number of accounts."""
    s = run.scores_view
    total = run.rows(f"SELECT count(*) AS n FROM {s}")[0]["n"]
    fp = run.has("fingerprints", "account_id")
    cols = []
    for name in ("requests", "ips", "tier"):
        cols.append(f"f.{name}" if fp and run.has("fingerprints", name) else f"NULL AS {name}")
    join = "LEFT JOIN fingerprints f USING (account_id)" if fp else ""
    campaign = "s.campaign_id" if run.has(s, "campaign_id") else "NULL AS campaign_id"
    reasons = "s.reasons" if run.has(s, "reasons") else "[]::VARCHAR[] AS reasons"
    rows = run.rows(
        f"SELECT s.account_id, s.risk, s.flagged, {campaign}, {reasons}, {', '.join(cols)} "
        f"FROM {s} s {join} ORDER BY s.risk DESC, s.account_id LIMIT {int(limit)}"
    )
    return rows, int(total)


def run_summary(run: RunDir) -> dict[str, Any]:
    """Inputs, ingest counts and rejects, thresholds and stage timings from summary.json."""
    s = run.summary
    ingest = s.get("ingest") or {}
    sections = ingest.get("sections") if isinstance(ingest, dict) else None
    if not isinstance(sections, dict):
        sections = {}
    return {
        "version": s.get("distillguard", ""),
        "inputs": {k: v for k, v in (s.get("inputs") or {}).items() if v},
        "sections": sections,
        "thresholds": s.get("thresholds") or {},
        "counts": s.get("counts") or {},
        "timings": s.get("timings_s") or {},
        "engine": s.get("engine", ""),
    }


def totals(run: RunDir) -> dict[str, int]:
    """Accounts analysed and flagged, requests analysed."""
    s = run.scores_view
    row = run.rows(f"SELECT count(*) AS accounts, count_if(flagged) AS flagged FROM {s}")[0]
    requests = (
        run.rows("SELECT count(*) AS n FROM enriched")[0]["n"] if "enriched" in run.views else 0
    )
    return {"accounts": row["accounts"], "flagged": row["flagged"], "requests": requests}
