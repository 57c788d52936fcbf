"""`distillguard validate` and `distillguard ingest`."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from distillguard.errors import UserError
from distillguard.ingest.adapters import FORMATS
from distillguard.ingest.pipeline import IngestResult, SectionCounts, run_ingest, validate_paths

KINDS = ("events", "accounts", "releases", "ip-intel")
SHOW_REJECTS = 10


def _counts_table(title: str, sections: dict[str, SectionCounts]) -> Table:
    table = Table(title=title)
    for col in ("section", "read", "accepted", "rejected", "duplicate", "top reasons"):
        table.add_column(col, justify="left" if col in ("section", "top reasons") else "right")
    for name, c in sections.items():
        reasons = ", ".join(f"{k} {v}" for k, v in list(c.by_field.items())[:3])
        table.add_row(
            name, f"{c.read:,}", f"{c.accepted:,}", f"{c.rejected:,}", f"{c.duplicate:,}", reasons
        )
    return table


def _show_rejects(console: Console, path: Path, limit: int = SHOW_REJECTS) -> None:
    if not path.exists():
        return
    with path.open() as fh:
        for i, line in enumerate(fh):
            if i >= limit:
                console.print(f"... see {path} for the rest")
                break
            r = json.loads(line)
            where = f"line {r['line']}" if r.get("line") is not None else f"row {r.get('row')}"
            field = f" ({r['field']})" if r.get("field") else ""
            console.print(f"  {r['file']} {where}: {r['reason']}{field}")


def _check_choice(value: str, choices: tuple[str, ...], option: str) -> str:
    if value not in choices:
        raise UserError(f"{option} must be one of: {', '.join(choices)} (got {value!r})")
    return value


def validate_command(
    paths: list[Path] = typer.Argument(..., help="Input files or directories."),
    kind: str = typer.Option("events", "--kind", help="events | accounts | releases | ip-intel"),
    input_format: str = typer.Option(
        "contract", "--format", help="contract (by extension) | otel | litellm"
    ),
    strict: bool = typer.Option(False, "--strict", help="Exit 2 when any record is rejected."),
    rejects: Path | None = typer.Option(None, "--rejects", help="Also keep all rejects here."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Check inputs against the data contract: counts and the first rejects, no output written."""
    _check_choice(kind, KINDS, "--kind")
    _check_choice(input_format, FORMATS, "--format")
    console = Console()
    with tempfile.TemporaryDirectory(prefix="dg-validate-") as tmp:
        rejects_path = rejects or Path(tmp) / "rejects.jsonl"
        counts, _ = validate_paths(
            list(paths), kind, input_format, rejects_path, progress=not quiet
        )
        console.print(_counts_table("validate", {kind: counts}))
        if counts.rejected:
            console.print(f"first rejects ({counts.rejected:,} in total):")
            _show_rejects(console, rejects_path)
    if strict and counts.rejected:
        raise UserError(f"{counts.rejected} record(s) rejected (--strict)")


def ingest_command(
    events: list[Path] = typer.Option(
        ..., "--events", help="Events file or directory (repeat for several)."
    ),
    accounts: list[Path] = typer.Option([], "--accounts", help="Accounts file(s)."),
    releases: list[Path] = typer.Option([], "--releases", help="Model releases file(s)."),
    ip_intel: list[Path] = typer.Option([], "--ip-intel", help="IP intelligence CSV file(s)."),
    input_format: str = typer.Option(
        "contract", "--format", help="Events format: contract (by extension) | otel | litellm"
    ),
    out: Path = typer.Option(..., "--out", help="Output directory."),
    memory_limit: str | None = typer.Option(
        None, "--memory-limit", help="DuckDB memory limit, e.g. 2GB."
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Validate and normalise inputs into OUT (events/ parts, accounts, releases, rejects)."""
    _check_choice(input_format, FORMATS, "--format")
    result: IngestResult = run_ingest(
        events=list(events),
        accounts=list(accounts) or None,
        releases=list(releases) or None,
        ip_intel=list(ip_intel) or None,
        out=out,
        progress=not quiet,
        input_format=input_format,
        memory_limit=memory_limit,
    )
    console = Console()
    console.print(_counts_table(f"ingest -> {out}", result.sections))
    if result.rejected:
        console.print(f"rejects: {out / 'rejects.jsonl'}")
        _show_rejects(console, out / "rejects.jsonl", limit=5)
    console.print(f"done in {result.seconds:.1f}s; counts in {out / 'ingest.json'}")


def register(app: typer.Typer) -> None:
    """Add `validate` and `ingest` to the distillguard CLI."""
    app.command("validate")(validate_command)
    app.command("ingest")(ingest_command)
