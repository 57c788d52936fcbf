"""Plotly figures of the report (built here, rendered in the page by the one embedded plotly.js)."""

from __future__ import annotations

import math
from typing import Any

import igraph as ig
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from distillguard.report.data import MS_PER_DAY, day_to_date

FONT = "system-ui, -apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif"
PALETTE = ("#1f4e79", "#c0504d", "#4f9d69", "#e3a23b", "#7b5ea7", "#2a9d8f", "#8c564b", "#999999")
KIND_COLOURS = {
    "proxy": "#c0504d",
    "vpn": "#e07b39",
    "tor": "#7b2d26",
    "datacenter": "#e3a23b",
    "residential": "#4f9d69",
    "mobile": "#2a9d8f",
    "unknown": "#b0b0b0",
}
# Evidence views grouped the way analysts read them, with the colour of their edges.
EDGE_GROUPS = {
    "shared content": (("n_template", "n_wrapper", "n_sentence", "n_system"), "#1f4e79"),
    "shared network": (("n_ip", "n_subnet"), "#c0504d"),
    "synchronised": (("n_sync",), "#7b5ea7"),
    "shared identity": (("n_payment", "n_device", "n_signup"), "#e3a23b"),
}


def _layout(fig: go.Figure, height: int, **extra: Any) -> go.Figure:
    settings: dict[str, Any] = {
        "template": "plotly_white",
        "height": height,
        "margin": {"l": 50, "r": 20, "t": 40, "b": 40},
        "font": {"family": FONT, "size": 12, "color": "#222"},
        "legend": {"orientation": "h", "y": -0.18},
    }
    fig.update_layout(**{**settings, **extra})
    return fig


def daily_figure(daily: list[dict[str, Any]], releases: list[dict[str, Any]]) -> go.Figure:
    """Requests per day, stacked by model, with a dashed marker at each model release."""
    fig = go.Figure()
    models = sorted({str(r["model"]) for r in daily})
    for i, model in enumerate(models):
        rows = [r for r in daily if str(r["model"]) == model]
        fig.add_bar(
            x=[day_to_date(r["day"]) for r in rows],
            y=[r["requests"] for r in rows],
            name=model,
            marker_color=PALETTE[i % len(PALETTE)],
        )
    if daily:
        lo, hi = min(r["day"] for r in daily), max(r["day"] for r in daily)
        for rel in releases:
            day = rel["released_ms"] / MS_PER_DAY
            if lo - 1 <= day <= hi + 1:
                x = day_to_date(math.floor(day))
                fig.add_vline(x=x, line_dash="dash", line_color="#333", line_width=1.5)
                fig.add_annotation(
                    x=x,
                    y=1.0,
                    yref="paper",
                    text=f"{rel['model']} released",
                    yanchor="bottom",
                    showarrow=False,
                    font={"size": 11},
                    xanchor="left",
                )
    return _layout(
        fig,
        300,
        barmode="stack",
        title={"text": "Daily requests by model", "x": 0},
        yaxis_title="requests",
        xaxis={"type": "date"},
    )


def capability_figure(shares: list[dict[str, Any]]) -> go.Figure:
    """Share of the campaign's requests per targeted capability."""
    shares = list(reversed(shares[:9]))
    fig = go.Figure(
        go.Bar(
            x=[100 * s["share"] for s in shares],
            y=[s["capability"] for s in shares],
            orientation="h",
            marker_color="#1f4e79",
            text=[f"{100 * s['share']:.0f}%" for s in shares],
            textposition="outside",
            cliponaxis=False,
        )
    )
    return _layout(
        fig,
        300,
        title={"text": "Capability mix (% of requests)", "x": 0},
        xaxis={"range": [0, 115], "ticksuffix": "%"},
    )


def network_figure(kinds: list[dict[str, Any]], asns: list[dict[str, Any]]) -> go.Figure:
    """Network kind of the requests (donut) and the busiest ASNs (bars)."""
    fig = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.38, 0.62],
        specs=[[{"type": "domain"}, {"type": "xy"}]],
        subplot_titles=("Network kind of requests", "Top ASNs (requests)"),
    )
    fig.add_trace(
        go.Pie(
            labels=[k["kind"] for k in kinds],
            values=[k["requests"] for k in kinds],
            hole=0.55,
            marker={"colors": [KIND_COLOURS.get(k["kind"], "#999") for k in kinds]},
            textinfo="percent",
            textposition="inside",
            sort=False,
            showlegend=True,
        ),
        row=1,
        col=1,
    )
    top = list(reversed(asns[:8]))
    fig.add_trace(
        go.Bar(
            x=[a["requests"] for a in top],
            y=[a["value"] for a in top],
            orientation="h",
            marker_color="#c0504d",
            text=[f"{a['ips']} IPs" for a in top],
            textposition="auto",
            showlegend=False,
        ),
        row=1,
        col=2,
    )
    fig.update_layout(uniformtext={"minsize": 10, "mode": "hide"})
    return _layout(fig, 300, legend={"orientation": "v", "x": 0.0, "y": 0.5, "xanchor": "right"})


def _edge_group(edge: dict[str, Any]) -> str:
    best, best_n = "shared network", -1.0
    for name, (views, _) in EDGE_GROUPS.items():
        n = sum(float(edge.get(v) or 0) for v in views)
        if n > best_n:
            best, best_n = name, n
    return best


def graph_figure(
    nodes: list[dict[str, Any]], edges: list[dict[str, Any]], total: int, links: int | None = None
) -> go.Figure:
    """The campaign's account graph: igraph Fruchterman-Reingold layout, coloured by evidence."""
    index = {n["account_id"]: i for i, n in enumerate(nodes)}
    g = ig.Graph(n=len(nodes), edges=[(index[e["a"]], index[e["b"]]) for e in edges])
    g.es["weight"] = [float(e.get("weight") or 1.0) for e in edges]
    # A fixed starting circle makes the layout the same on every run.
    angles = [2 * math.pi * i / max(len(nodes), 1) for i in range(len(nodes))]
    start = [[math.cos(a), math.sin(a)] for a in angles]
    layout = g.layout_fruchterman_reingold(weights="weight", seed=start, niter=500) if nodes else []
    xy = [tuple(p) for p in layout]
    fig = go.Figure()
    for name, (_, colour) in EDGE_GROUPS.items():
        xs: list[float | None] = []
        ys: list[float | None] = []
        for e in edges:
            if _edge_group(e) != name:
                continue
            (x0, y0), (x1, y1) = xy[index[e["a"]]], xy[index[e["b"]]]
            xs += [x0, x1, None]
            ys += [y0, y1, None]
        if xs:
            fig.add_scatter(
                x=xs,
                y=ys,
                mode="lines",
                name=name,
                hoverinfo="skip",
                line={"width": 1.0, "color": colour},
                opacity=0.55,
            )
    req = [float(n.get("requests") or 0) for n in nodes]
    top = max(req, default=1.0) or 1.0
    fig.add_scatter(
        x=[p[0] for p in xy],
        y=[p[1] for p in xy],
        mode="markers",
        name="account",
        text=[
            f"{n['account_id']}<br>risk {float(n['risk']):.2f}<br>{int(r):,} requests"
            for n, r in zip(nodes, req, strict=True)
        ],
        hoverinfo="text",
        marker={
            "size": [7 + 13 * math.sqrt(r / top) for r in req],
            "color": [float(n["risk"]) for n in nodes],
            "colorscale": [[0, "#f2d0a9"], [0.5, "#e07b39"], [1, "#8b1a1a"]],
            "cmin": 0.0,
            "cmax": 1.0,
            "colorbar": {"title": {"text": "risk"}, "thickness": 10, "len": 0.7},
            "line": {"width": 0.6, "color": "#fff"},
        },
    )
    shown = f"{len(nodes)} of {total}" if total > len(nodes) else f"{len(nodes)}"
    links = len(edges) if links is None else links
    drawn = f"; the strongest {len(edges):,} are drawn" if links > len(edges) else ""
    return _layout(
        fig,
        420,
        title={
            "text": f"Account graph<br><sup>{shown} accounts, {links:,} links{drawn}</sup>",
            "x": 0,
        },
        margin={"l": 20, "r": 20, "t": 64, "b": 30},
        xaxis={"visible": False},
        yaxis={"visible": False, "scaleanchor": "x"},
    )
