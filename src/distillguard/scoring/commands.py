"""`distillguard train` and `distillguard rescore`: the optional supervised mode.

distillguard train --run DIR[,DIR...] --labels FILE[,FILE...] --out MODEL
distillguard rescore --run DIR --model MODEL [--threshold 0.5] [--replace]
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
import typer
from rich import box
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from distillguard.errors import UserError

out_console = Console()
err_console = Console(stderr=True)


def _split(values: list[str] | None, what: str) -> list[Path]:
    """Paths from repeated options and/or comma-separated lists."""
    paths = [Path(p.strip()) for v in values or [] for p in v.split(",") if p.strip()]
    if not paths:
        raise UserError(f"give at least one {what}")
    return paths


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )


CV_COLUMNS = ("folds", "grouped_by", "accounts", "positives", "auc", "precision", "recall")


def _cv_table(cv: dict) -> Table:
    keys = [k for k in CV_COLUMNS if k in cv]
    table = Table(title="cross-validation (out-of-fold)", box=box.SIMPLE)
    for key in keys:
        table.add_column(key, justify="right")
    table.add_row(*(str(cv[k]) for k in keys))
    return table


def train_command(
    run: list[str] = typer.Option(..., "--run", help="Detect output dir(s); comma-separated."),
    labels: list[str] = typer.Option(
        ..., "--labels", help="Labels per run (Parquet/CSV: account_id + label or campaign_id)."
    ),
    out: Path = typer.Option(..., "--out", help="Where to write the model bundle (joblib)."),
    folds: int = typer.Option(
        5, "--folds", help="CV folds (whole clusters held out)."
    ),
    threshold: float = typer.Option(0.5, "--threshold", help="Threshold for CV precision/recall."),
) -> None:
    """Train the supervised model on labelled detect runs; prints cross-validated quality."""
    from distillguard.scoring import supervised as sv

    runs, label_files = _split(run, "--run"), _split(labels, "--labels")
    for path in runs:  # fail on missing input before any progress display
        sv.require_run(path)
    for path in label_files:
        sv.labels_path(path)
    with _progress() as progress:
        progress.add_task("reading runs and labels", total=None)
        ts = sv.training_set(runs, label_files)
    with _progress() as progress:
        progress.add_task(f"cross-validating ({folds} folds)", total=None)
        cv = sv.cross_validate(ts, folds, threshold)
    with _progress() as progress:
        progress.add_task("fitting on all labelled accounts", total=None)
        bundle = sv.fit_bundle(ts, cv)
    sv.save_bundle(bundle, out)
    if cv.get("folds"):
        out_console.print(_cv_table(cv))
    else:
        out_console.print(cv.get("note", "no cross-validation"))
    top = sorted(zip(bundle.importance, bundle.features, strict=True), reverse=True)[:5]
    out_console.print("most important features: " + ", ".join(f"{n} ({v:.2f})" for v, n in top))
    out_console.print(f"model written to {out} ({len(bundle.features)} features)")


def rescore_command(
    run: Path = typer.Option(..., "--run", help="Detect output directory."),
    model: Path = typer.Option(..., "--model", help="Model bundle from `distillguard train`."),
    threshold: float = typer.Option(0.5, "--threshold", help="Flag at or above this probability."),
    replace: bool = typer.Option(
        False,
        "--replace",
        help="Also rewrite accounts.parquet's risk/flagged/reasons (original kept aside).",
    ),
) -> None:
    """Score a detect run with a trained model; writes RUN/supervised.parquet."""
    from distillguard.scoring import supervised as sv

    sv.require_run(run)
    bundle = sv.load_bundle(model)
    with _progress() as progress:
        progress.add_task("scoring accounts", total=None)
        table = sv.rescore(run, bundle, threshold, replace)
    flagged = pc.sum(table["supervised_flagged"]).as_py() or 0
    before = pc.sum(table["flagged"]).as_py() or 0
    out_console.print(
        f"{flagged} of {table.num_rows} accounts at or above {threshold} "
        f"(unsupervised flagged {before}); wrote {run / sv.SUPERVISED_FILE}"
        + (f"; accounts.parquet replaced (original in {sv.UNSUPERVISED_BACKUP})" if replace else "")
    )


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
    app.command("rescore")(rescore_command)
