"""`distillguard detect`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from distillguard.scoring import DEFAULT_THRESHOLD

console = Console(stderr=True)


def _paths(values: list[Path] | None) -> list[Path] | None:
    return list(values) if values else None


def detect(
    events: list[Path] = typer.Option(..., "--events", help="Event files or directories."),
    out: Path = typer.Option(..., "--out", help="Output directory."),
    accounts: list[Path] = typer.Option(None, "--accounts", help="Account records."),
    releases: list[Path] = typer.Option(None, "--releases", help="Model releases."),
    ip_intel: list[Path] = typer.Option(None, "--ip-intel", help="IP intelligence CSV."),
    intel: list[Path] = typer.Option(None, "--intel", help="STIX bundle(s) from other providers."),
    threshold: float = typer.Option(DEFAULT_THRESHOLD, help="Flag accounts at or above this risk."),
    input_format: str = typer.Option("contract", "--format", help="contract, otel or litellm."),
    memory_limit: str = typer.Option("4GB", help="DuckDB memory limit; spills to disk beyond."),
    redact: bool = typer.Option(False, "--redact", help="Hide prompt text in the report."),
    report: bool = typer.Option(True, "--report/--no-report", help="Write report.html."),
    engine: str = typer.Option("duckdb", "--engine", help="duckdb (one machine) or spark."),
    spark_master: str = typer.Option(
        None, "--spark-master", help="Spark master URL (default: spark-submit's, else local[*])."
    ),
    state: Path = typer.Option(
        None, "--state", help="Keep enriched requests by day in DIR for later --since runs."
    ),
    since: str = typer.Option(
        None, "--since", help="YYYY-MM-DD: enrich only events from this UTC day on (needs --state)."
    ),
) -> None:
    """Find extraction campaigns in request logs; writes contract section 6 files to OUT."""
    from distillguard.pipeline.detect import DetectConfig, run_detect

    cfg = DetectConfig(
        events=list(events),
        out=out,
        accounts=_paths(accounts),
        releases=_paths(releases),
        ip_intel=_paths(ip_intel),
        intel_bundles=_paths(intel),
        threshold=threshold,
        input_format=input_format,
        memory_limit=memory_limit,
        redact=redact,
        engine=engine,
        spark_master=spark_master,
        state=state,
        since=since,
    )
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("detect", total=None)

        def note(stage: str, n: int | None) -> None:
            if stage == "signals+":
                bar.advance(task, n or 0)
            else:
                bar.update(task, description=stage, total=n, completed=0)

        result = run_detect(cfg, progress=note)
        if report:
            bar.update(task, description="report", total=None)
            _write_report(cfg, result.out)
    console.print(
        f"[bold]{result.accounts:,}[/] accounts, [bold red]{result.flagged:,}[/] flagged, "
        f"[bold]{result.campaigns}[/] campaigns -> {result.out}"
    )


def _write_report(cfg, out: Path) -> None:
    try:
        from distillguard.report.html import write_report
    except ModuleNotFoundError:
        return  # the report stage is optional until it exists
    write_report(out, redact=cfg.redact)


def register(app: typer.Typer) -> None:
    app.command("detect")(detect)
