"""`distillguard simulate`: generate a scenario's traffic and ground truth."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from distillguard.simulate.engine import simulate
from distillguard.simulate.scenario import builtin_names, load_scenario


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate_command)


def simulate_command(
    scenario: str = typer.Option(
        "small", "--scenario", help=f"built-in name ({', '.join(builtin_names())}) or a .toml file"
    ),
    scale: float = typer.Option(None, "--scale", help="1.0 = full size; default: the scenario's"),
    seed: int = typer.Option(0, "--seed", help="same seed, same output"),
    out: Path = typer.Option(..., "--out", help="output directory"),
) -> None:
    """Simulate API traffic with labelled distillation campaigns (events, accounts, truth)."""
    console = Console(stderr=True)
    sc = load_scenario(scenario)
    with Progress(
        TextColumn(f"simulating {sc.name} (generate, then time-sort)"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("events", total=None)

        def step(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        result = simulate(sc, scale, seed, out, progress=step)
    table = Table(title=f"{result.scenario} (scale {result.scale:g}, seed {result.seed})")
    for col in ("persona", "campaign", "accounts", "events"):
        table.add_column(col, justify="right" if col in ("accounts", "events") else "left")
    for name, info in result.personas.items():
        table.add_row(
            name, str(info["campaign"] or "-"), f"{info['accounts']:,}", f"{info['events']:,}"
        )
    table.add_row("total", "", f"{result.accounts:,}", f"{result.events:,}", style="bold")
    Console().print(table)
    rate = result.events / max(result.seconds, 1e-9) * 60
    console.print(f"wrote {out} in {result.seconds:.1f}s ({rate:,.0f} events/min)")
