"""Commands of the report stage: `report`, `explain`, `export stix`, `export actions`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich import box
from rich.console import Console
from rich.table import Table

out_console = Console()
err_console = Console(stderr=True)

export_app = typer.Typer(
    name="export",
    help="Share campaigns (STIX 2.1) and export enforcement actions.",
    no_args_is_help=True,
)


def report(
    run: Path = typer.Option(..., "--run", help="Output directory of `distillguard detect`."),
    redact: bool = typer.Option(False, "--redact", help="Hide prompt text (show template ids)."),
) -> None:
    """(Re)write DIR/report.html, the self-contained analyst report of a detect run."""
    from distillguard.report.html import write_report

    with err_console.status("writing report"):
        path = write_report(run, redact=redact)
    err_console.print(f"report -> {path}")


def explain(
    account: str = typer.Argument(..., help="Account id."),
    run: Path = typer.Option(..., "--run", help="Output directory of `distillguard detect`."),
) -> None:
    """Show one account: score, reasons, fingerprint, linked accounts and timeline."""
    from distillguard.report.explain import explain_account, render

    render(explain_account(run, account), out_console)


@export_app.command("stix")
def export_stix(
    run: Path = typer.Option(..., "--run", help="Output directory of `distillguard detect`."),
    out: Path = typer.Option(None, "--out", help="Bundle file (default DIR/intel.stix.json)."),
    tlp: str = typer.Option("amber", "--tlp", help="TLP marking: clear, green, amber or red."),
    producer: str = typer.Option("distillguard", "--producer", help="Your organisation's name."),
    max_ips: int = typer.Option(200, "--max-ips", min=0, help="IP indicators per campaign."),
) -> None:
    """Write the run's campaigns as a STIX 2.1 bundle for sharing with other providers."""
    from collections import Counter

    from distillguard.report.stix_export import ExportLimits, build_bundle, write_bundle

    with err_console.status("building STIX bundle"):
        bundle = build_bundle(run, tlp=tlp, producer=producer, limits=ExportLimits(ips=max_ips))
        path = write_bundle(bundle, out or run / "intel.stix.json")
    kinds = Counter(o["type"] for o in bundle.objects)
    summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    err_console.print(f"STIX 2.1 bundle (TLP:{tlp.upper()}): {summary} -> {path}")


@export_app.command("actions")
def export_actions(
    run: Path = typer.Option(..., "--run", help="Output directory of `distillguard detect`."),
    policy: Path = typer.Option(
        None, "--policy", help="Policy TOML (default: the shipped conservative policy)."
    ),
    out: Path = typer.Option(None, "--out", help="Output prefix (default DIR/actions)."),
) -> None:
    """Per-account enforcement actions (CSV + JSON) and sign-up advice, from a policy file."""
    from distillguard.report.actions import ACTIONS, decide, load_policy, write_plan
    from distillguard.report.rundir import RunDir

    plan = decide(RunDir(run), load_policy(policy))
    csv_path, json_path = write_plan(plan, out or run / "actions")
    t = Table(title="Actions", box=box.SIMPLE_HEAD, title_justify="left")
    t.add_column("action")
    t.add_column("accounts", justify="right")
    for a in reversed(ACTIONS):
        t.add_row(a, f"{plan.counts.get(a, 0):,}")
    out_console.print(f"policy: {plan.policy.source}", style="dim")
    for warning in plan.warnings:
        err_console.print(f"[bold yellow]warning:[/] {warning}")
    out_console.print(t)
    _print_access(plan.access)
    err_console.print(f"actions -> {csv_path}, {json_path}")


def _print_access(access: dict) -> None:
    t = Table(
        title=f"Sign-up paths of the {access['campaign_accounts']} campaign accounts",
        box=box.SIMPLE_HEAD,
        title_justify="left",
    )
    t.add_column("tier")
    t.add_column("campaign accounts", justify="right")
    t.add_column("share", justify="right")
    t.add_column("share of all accounts", justify="right")
    for r in access["tiers"]:
        t.add_row(
            r["tier"],
            str(r["accounts"]),
            f"{100 * r['share']:.0f}%",
            f"{100 * r['share_of_all_accounts']:.0f}%",
        )
    if access["tiers"]:
        out_console.print(t)
    if access["disposable_accounts"]:
        out_console.print(
            f"disposable e-mail domains: {access['disposable_accounts']} campaign accounts"
        )
    out_console.print("[bold]Access-control advice[/]")
    for line in access["advice"]:
        out_console.print(f" • {line}")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
    app.command("explain")(explain)
    app.add_typer(export_app, name="export")
