"""`distillguard signup-check --accounts NEW --run DIR [--out FILE] [--policy POLICY]`."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import typer
from rich import box
from rich.console import Console
from rich.table import Table

from distillguard.errors import UserError

out_console = Console()
err_console = Console(stderr=True)
OUT_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")


def write_decisions(table: pa.Table, path: Path) -> None:
    """Decisions as JSON Lines, JSON, Parquet or CSV (by extension); never any e-mail."""
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        pq.write_table(table, path)
    elif suffix == ".csv":
        flat = table
        for name, sep in (("reasons", " | "), ("evidence", ",")):
            i = flat.schema.get_field_index(name)
            flat = flat.set_column(i, name, pc.binary_join(flat[name], sep))
        pacsv.write_csv(flat, path)
    elif suffix == ".json":
        path.write_text(json.dumps({"decisions": table.to_pylist()}, indent=1), encoding="utf-8")
    else:
        with path.open("w", encoding="utf-8") as fh:
            for row in table.to_pylist():
                fh.write(json.dumps(row) + "\n")


def run_signup_check(
    accounts: list[Path],
    run: Path,
    out: Path,
    policy: Path | None = None,
    history: list[Path] | None = None,
) -> tuple[pa.Table, int]:
    """Read, validate and judge new sign-ups; writes `out` and `<out>.rejects.jsonl`."""
    from distillguard.ingest.pipeline import read_section
    from distillguard.report.rundir import RunDir
    from distillguard.signup.decide import check_signups
    from distillguard.signup.known import KnownState, run_ip_intel
    from distillguard.signup.policy import load_signup_policy

    if out.suffix.lower() not in OUT_SUFFIXES:
        raise UserError(f"--out must end in one of {', '.join(OUT_SUFFIXES)}: {out}")
    pol = load_signup_policy(policy)
    rundir = RunDir(run)
    rejects = out.with_name(out.name + ".rejects.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    new, counts = read_section("accounts", accounts, rejects_path=rejects)
    earlier = read_section("accounts", history)[0] if history else None
    known = KnownState.from_run(
        rundir, pol, exclude=new["account_id"].combine_chunks(), signups=earlier
    )
    del earlier
    decisions = check_signups(new, known, pol, run_ip_intel(rundir))
    del new  # the e-mail addresses go no further than this function
    write_decisions(decisions, out)
    return decisions, counts.rejected


def signup_check(
    accounts: list[Path] = typer.Option(
        ..., "--accounts", help="New sign-ups (contract accounts: JSONL, Parquet or CSV)."
    ),
    run: Path = typer.Option(..., "--run", help="Output directory of `distillguard detect`."),
    out: Path = typer.Option(
        None,
        "--out",
        help="Decisions file: .jsonl (default DIR/signup-decisions.jsonl), "
        ".json, .parquet or .csv.",
    ),
    policy: Path = typer.Option(
        None, "--policy", help="Policy file with a [signup] section (default: shipped policy)."
    ),
    history: list[Path] = typer.Option(
        None,
        "--history",
        help="Earlier sign-ups with e-mail (e.g. the accounts given to "
        "detect): links new names to the name series of flagged accounts; read in memory only.",
    ),
) -> None:
    """Judge new accounts at sign-up: allow, require verification (which check) or deny."""
    target = out or run / "signup-decisions.jsonl"
    with err_console.status("checking sign-ups"):
        decisions, rejected = run_signup_check(accounts, run, target, policy, history)
    _summary(decisions, rejected, target)


def _summary(decisions: pa.Table, rejected: int, target: Path) -> None:
    counts = Counter(decisions["decision"].to_pylist())
    checks = Counter(v for v in decisions["verification"].to_pylist() if v)
    table = Table(box=box.SIMPLE, title="sign-up decisions")
    table.add_column("decision")
    table.add_column("accounts", justify="right")
    for name in ("allow", "require_verification", "deny"):
        table.add_row(name, str(counts.get(name, 0)))
    out_console.print(table)
    for check, n in sorted(checks.items()):
        out_console.print(f"  verification {check}: {n}")
    if rejected:
        err_console.print(f"{rejected} invalid record(s) -> {target.name}.rejects.jsonl")
    err_console.print(f"decisions -> {target}")


def register(app: typer.Typer) -> None:
    app.command("signup-check")(signup_check)
