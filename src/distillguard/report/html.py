"""The analyst report: one self-contained HTML file (`DIR/report.html`) for a detection run.

Self-contained means it opens offline: CSS, the page script and plotly.js are inlined (plotly.js
exactly once), figures are embedded as JSON and drawn by `Plotly.newPlot`; nothing is fetched.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from distillguard import __version__
from distillguard.report import data, figures
from distillguard.report.rundir import RunDir
from distillguard.signup.paths import signup_paths

MAX_ACCOUNT_ROWS = 2000  # the accounts table shows the riskiest accounts up to this many
MAX_GRAPH_NODES = 150  # larger campaigns are drawn from their busiest accounts


def _asset(name: str) -> str:
    return resources.files("distillguard.report").joinpath("assets", name).read_text("utf-8")


def pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def human(n: float) -> str:
    """1234567 -> '1.2M' (for headline numbers)."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:,.0f}"


def _figure_json(fig: go.Figure) -> dict[str, Any]:
    return json.loads(fig.to_json())


def _script_safe(text: str) -> str:
    """JSON text that cannot close its <script> element."""
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _campaign_section(
    run: RunDir, c: data.Campaign, i: int, releases: list[dict], redact: bool
) -> dict[str, dict]:
    """Fill a campaign's section data; return its figures keyed by element id."""
    c.cap_shares = data.capability_shares(run, c.campaign_id) if "enriched" in run.views else []
    c.daily = data.daily_volume(run, c.campaign_id)
    c.reasons = data.reason_counts(run, c.campaign_id)
    c.adaptation = data.adaptation_sentences(run, c.campaign_id)
    c.prompts = data.example_prompts(run, c.campaign_id, redact)
    c.tiers = data.signup_tiers(run, c.campaign_id)
    nodes, edges, links = data.graph(run, c.campaign_id, MAX_GRAPH_NODES)
    return {
        f"fig-{i}-daily": _figure_json(figures.daily_figure(c.daily, releases)),
        f"fig-{i}-caps": _figure_json(figures.capability_figure(c.cap_shares)),
        f"fig-{i}-net": _figure_json(figures.network_figure(c.kinds, c.top_asns)),
        f"fig-{i}-graph": _figure_json(figures.graph_figure(nodes, edges, c.accounts, links)),
    }


def render_report(run_dir: Path, redact: bool = False) -> str:
    """The report's HTML text for the run in `run_dir`."""
    run = RunDir(run_dir)
    campaigns = data.campaigns(run)
    sections = campaigns[: data.MAX_CAMPAIGN_SECTIONS]
    releases = data.releases(run)
    figs: dict[str, dict] = {}
    for i, c in enumerate(sections, start=1):
        figs.update(_campaign_section(run, c, i, releases, redact))
    accounts, accounts_total = data.accounts_table(run, MAX_ACCOUNT_ROWS)
    summary = data.run_summary(run)
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = env.from_string(_asset("report.html.j2"))
    return template.render(
        version=__version__,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        run_name=run.path.resolve().name,
        redact=redact,
        campaigns=campaigns,
        sections=sections,
        totals=data.totals(run),
        campaign_requests=sum(c.requests for c in campaigns),
        campaign_tokens=sum(c.output_tokens for c in campaigns),
        threshold=summary["thresholds"].get("flag", ""),
        accounts=accounts,
        accounts_total=accounts_total,
        summary=summary,
        signup_paths=signup_paths(run),  # issue 9: sign-up paths the campaigns used
        fmt_time=data.fmt_time,
        pct=pct,
        human=human,
        css=jinja2.utils.markupsafe.Markup(_asset("report.css")),
        plotly_js=jinja2.utils.markupsafe.Markup(get_plotlyjs()),
        page_js=jinja2.utils.markupsafe.Markup(_asset("report.js")),
        figures_json=jinja2.utils.markupsafe.Markup(_script_safe(json.dumps(figs))),
    )


def write_report(run_dir: Path, redact: bool = False) -> Path:
    """Write `run_dir/report.html` (self-contained, offline) and return its path."""
    run_dir = Path(run_dir)
    html = render_report(run_dir, redact=redact)
    out = run_dir / "report.html"
    out.write_text(html, encoding="utf-8")
    return out
