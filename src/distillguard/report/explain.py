"""`distillguard explain ACCOUNT --run DIR`: everything known about one account, in the terminal."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from distillguard.contract import CAPABILITIES
from distillguard.errors import UserError
from distillguard.report.data import MS_PER_DAY, day_to_date, fmt_time
from distillguard.report.rundir import EDGE_VIEWS, RunDir, sql_str

MAX_LINKED = 15
SPARK = "▁▂▃▄▅▆▇█"
# Fingerprint columns shown, with labels and formats, in display order.
FINGERPRINT = (
    ("requests", "requests", "{:,.0f}"),
    ("active_days", "active days", "{:,.0f}"),
    ("output_tokens", "output tokens", "{:,.0f}"),
    ("req_per_day", "requests / active day", "{:,.1f}"),
    ("ips", "distinct IPs", "{:,.0f}"),
    ("subnets", "distinct /24 subnets", "{:,.0f}"),
    ("asns", "distinct ASNs", "{:,.0f}"),
    ("anon_share", "via proxy/VPN/Tor", "pct"),
    ("hosted_share", "via datacenter", "pct"),
    ("cot_share", "chain-of-thought asks", "pct"),
    ("rubric_share", "rubric/grading asks", "pct"),
    ("top_template_share", "top template share", "pct"),
    ("gap_cv", "inter-arrival CV", "{:.2f}"),
    ("night_share", "night-time share", "pct"),
    ("tier", "tier", "{}"),
    ("disposable", "disposable e-mail", "{}"),
    ("age_days", "account age at first request (days)", "{:,.1f}"),
    ("adopt_lag_h", "hours to adopt a new model", "{:,.1f}"),
)


@dataclass
class Explanation:
    account_id: str
    risk: float
    flagged: bool
    campaign_id: str | None
    reasons: list[str]
    cluster: Any = None
    fingerprint: list[tuple[str, str]] = field(default_factory=list)
    capabilities: list[tuple[str, float]] = field(default_factory=list)
    first_seen: str = ""
    last_seen: str = ""
    linked: list[dict[str, Any]] = field(default_factory=list)
    linked_total: int = 0
    daily: list[tuple[int, int]] = field(default_factory=list)
    models: list[tuple[str, int]] = field(default_factory=list)


def _fmt(value: Any, spec: str) -> str:
    if value is None:
        return "—"
    if spec == "pct":
        return f"{100 * float(value):.0f}%"
    try:
        return spec.format(value)
    except (ValueError, TypeError):
        return str(value)


def _fingerprint(run: RunDir, x: Explanation) -> None:
    if not run.has("fingerprints", "account_id"):
        return
    rows = run.rows(f"SELECT * FROM fingerprints WHERE account_id = {sql_str(x.account_id)}")
    if not rows:
        return
    fp = rows[0]
    x.fingerprint = [(label, _fmt(fp[col], spec)) for col, label, spec in FINGERPRINT if col in fp]
    caps = [(c, float(fp.get(f"cap_{c}") or 0.0)) for c in CAPABILITIES if f"cap_{c}" in fp]
    x.capabilities = sorted((c for c in caps if c[1] > 0), key=lambda c: -c[1])
    x.first_seen = fmt_time(fp.get("first_ms"))
    x.last_seen = fmt_time(fp.get("last_ms"))


def _linked(run: RunDir, x: Explanation) -> None:
    if not run.has("edges", "a", "b"):
        return
    me = sql_str(x.account_id)
    views = [v for v in EDGE_VIEWS if run.has("edges", v)]
    weight = run.column_or("edges", "weight", "1.0")
    s = run.scores_view
    camp = "s.campaign_id" if run.has(s, "campaign_id") else "NULL"
    pick = "".join(f", e.{v}" for v in views)
    base = (
        f"SELECT CASE WHEN e.a = {me} THEN e.b ELSE e.a END AS partner, {weight} AS weight{pick} "
        f"FROM edges e WHERE e.a = {me} OR e.b = {me}"
    )
    x.linked_total = run.rows(f"SELECT count(*) AS n FROM ({base})")[0]["n"]
    x.linked = run.rows(
        f"SELECT l.*, s.risk, s.flagged, {camp} AS campaign_id FROM ({base}) l "
        f"LEFT JOIN {s} s ON s.account_id = l.partner "
        f"ORDER BY l.weight DESC, l.partner LIMIT {MAX_LINKED}"
    )


def _timeline(run: RunDir, x: Explanation) -> None:
    if not run.has("enriched", "account_id", "ts_ms"):
        return
    me = sql_str(x.account_id)
    day = "day" if run.has("enriched", "day") else f"ts_ms // {MS_PER_DAY}"
    x.daily = [
        (r["d"], r["n"])
        for r in run.rows(
            f"SELECT {day} AS d, count(*) AS n FROM enriched WHERE account_id = {me} "
            "GROUP BY 1 ORDER BY 1"
        )
    ]
    if run.has("enriched", "model"):
        x.models = [
            (r["model"], r["n"])
            for r in run.rows(
                f"SELECT model, count(*) AS n FROM enriched WHERE account_id = {me} "
                "GROUP BY 1 ORDER BY 2 DESC, 1"
            )
        ]


def explain_account(run_dir: Path, account_id: str) -> Explanation:
    """Collect the score, reasons, fingerprint, links and timeline of one account."""
    run = RunDir(run_dir)
    s = run.scores_view
    rows = run.rows(f"SELECT * FROM {s} WHERE account_id = {sql_str(account_id)}")
    if not rows:
        raise UserError(f"account {account_id!r} is not in the run at {run.path}")
    r = rows[0]
    x = Explanation(
        account_id=account_id,
        risk=float(r["risk"]),
        flagged=bool(r.get("flagged")),
        campaign_id=r.get("campaign_id"),
        reasons=list(r.get("reasons") or []),
        cluster=r.get("cluster"),
    )
    _fingerprint(run, x)
    _linked(run, x)
    _timeline(run, x)
    return x


def sparkline(values: list[int]) -> str:
    top = max(values, default=0)
    if top <= 0:
        return ""
    return "".join(SPARK[min(len(SPARK) - 1, (v * len(SPARK)) // (top + 1))] if v else " "
                   for v in values)  # fmt: skip


def _daily_series(daily: list[tuple[int, int]]) -> list[int]:
    """Requests per day over the whole span, zeros included."""
    if not daily:
        return []
    counts = dict(daily)
    lo, hi = daily[0][0], daily[-1][0]
    return [counts.get(d, 0) for d in range(lo, hi + 1)]


def _header(x: Explanation) -> Panel:
    colour = "red" if x.risk >= 0.75 else "yellow" if x.risk >= 0.5 else "green"
    bar = "█" * round(20 * x.risk) + "░" * (20 - round(20 * x.risk))
    t = Text()
    t.append(f"{x.account_id}\n", style="bold")
    t.append("risk ")
    t.append(f"{x.risk:.3f} {bar}", style=f"bold {colour}")
    t.append("   flagged " + ("YES" if x.flagged else "no"), style="bold red" if x.flagged else "")
    t.append(f"   campaign {x.campaign_id or '—'}")
    if x.cluster is not None:
        t.append(f"   cluster {x.cluster}", style="dim")
    if x.first_seen:
        t.append(f"\nactive {x.first_seen} → {x.last_seen}", style="dim")
    return Panel(t, title="distillguard explain", border_style=colour)


def _reasons_table(x: Explanation) -> Table:
    t = Table(
        title="Reasons (strongest first)", box=box.SIMPLE, show_header=False, title_justify="left"
    )
    t.add_column("#", style="dim", width=3)
    t.add_column("reason")
    for i, r in enumerate(x.reasons, start=1):
        t.add_row(str(i), r)
    if not x.reasons:
        t.add_row("", Text("no signal fired", style="dim"))
    return t


def _fingerprint_table(x: Explanation) -> Table:
    t = Table(title="Fingerprint", box=box.SIMPLE, show_header=False, title_justify="left")
    t.add_column("feature", style="cyan")
    t.add_column("value", justify="right")
    for label, value in x.fingerprint:
        t.add_row(label, value)
    if x.capabilities:
        caps = ", ".join(f"{c} {100 * s:.0f}%" for c, s in x.capabilities[:4])
        t.add_row("capabilities", caps)
    return t


def _linked_table(x: Explanation) -> Table:
    title = f"Linked accounts ({x.linked_total}, strongest first)"
    t = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
    t.add_column("account")
    t.add_column("weight", justify="right")
    t.add_column("risk", justify="right")
    t.add_column("campaign")
    t.add_column("shared evidence (keys per view)")
    for r in x.linked:
        shared = ", ".join(f"{label} {int(r[v])}" for v, label in EDGE_VIEWS.items() if r.get(v))
        risk = "—" if r.get("risk") is None else f"{float(r['risk']):.2f}"
        t.add_row(
            r["partner"], f"{float(r['weight']):.2f}", risk, r.get("campaign_id") or "", shared
        )
    return t


def _timeline_panel(x: Explanation) -> Panel:
    series = _daily_series(x.daily)
    if not series:
        return Panel(Text("no requests recorded", style="dim"), title="Timeline")
    peak_day, peak = max(x.daily, key=lambda d: d[1])
    t = Text()
    t.append(f"{day_to_date(x.daily[0][0])} ", style="dim")
    t.append(sparkline(series), style="bold blue")
    t.append(f" {day_to_date(x.daily[-1][0])}\n", style="dim")
    t.append(
        f"{sum(series):,} requests on {len(x.daily)} of {len(series)} days; "
        f"peak {peak:,} on {day_to_date(peak_day)}"
    )
    if x.models:
        t.append("\nmodels: " + ", ".join(f"{m} {n:,}" for m, n in x.models[:5]))
    return Panel(t, title="Timeline (requests per day)")


def render(x: Explanation, console: Console) -> None:
    """Print an explanation as rich panels and tables."""
    parts: list[Any] = [_header(x), _reasons_table(x)]
    if x.fingerprint:
        parts.append(_fingerprint_table(x))
    if x.linked:
        parts.append(_linked_table(x))
    parts.append(_timeline_panel(x))
    console.print(Group(*parts))
