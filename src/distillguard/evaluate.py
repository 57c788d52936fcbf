"""`distillguard evaluate`: score a detection run against the simulator's ground truth.

Inputs: TRUTH/labels.parquet (+ TRUTH/events.parquet or TRUTH/events/ for request counts,
TRUTH/truth.json for each campaign's main capability) and PRED/accounts.parquet +
PRED/campaigns.parquet (contract section 6). Accounts in the labels but missing from the
predictions count as not flagged. An attacker account that is flagged without a campaign, or not
flagged, is its own singleton cluster for the adjusted Rand index.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import typer
from rich.console import Console
from rich.table import Table

from distillguard.errors import UserError


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_command)


def _read(path: Path, columns: list[str], what: str) -> pa.Table:
    if not path.exists():
        raise UserError(f"missing {what}: {path}")
    try:
        schema = pq.read_schema(path) if path.is_file() else pq.ParquetDataset(path).schema
    except Exception as exc:  # unreadable parquet is the user's input problem
        raise UserError(f"cannot read {what} {path}: {exc}") from exc
    missing = [c for c in columns if c not in schema.names]
    if missing:
        raise UserError(f"{what} {path} lacks column(s): {', '.join(missing)}")
    return pq.read_table(path, columns=columns)


def _events_path(truth: Path) -> Path:
    for cand in (truth / "events.parquet", truth / "events"):
        if cand.exists():
            return cand
    raise UserError(f"missing events in {truth} (events.parquet or events/)")


def _request_counts(truth: Path) -> dict[str, int]:
    path = _events_path(truth)
    glob = str(path / "**" / "*.parquet") if path.is_dir() else str(path)
    try:
        rows = duckdb.sql(
            f"SELECT account_id, count(*) FROM read_parquet('{glob}') GROUP BY 1"
        ).fetchall()
    except duckdb.Error as exc:
        raise UserError(f"cannot read events {path}: {exc}") from exc
    return dict(rows)


def _ratio(a: float, b: float) -> float:
    return float(a) / float(b) if b else 0.0


def evaluate(truth_dir: str | Path, pred_dir: str | Path) -> dict[str, Any]:
    """All metrics as a JSON-ready dict (see module docstring)."""
    truth, pred = Path(truth_dir), Path(pred_dir)
    labels = _read(truth / "labels.parquet", ["account_id", "persona", "campaign_id"], "labels")
    accounts = _read(
        pred / "accounts.parquet", ["account_id", "flagged", "campaign_id"], "predicted accounts"
    )
    campaigns = _read(
        pred / "campaigns.parquet",
        ["campaign_id", "requests", "capabilities"],
        "predicted campaigns",
    )
    meta = json.loads((truth / "truth.json").read_text()) if (truth / "truth.json").exists() else {}
    counts = _request_counts(truth)

    ids = labels["account_id"].to_pylist()
    persona = np.array(labels["persona"].to_pylist(), dtype=object)
    true_c = np.array(labels["campaign_id"].to_pylist(), dtype=object)
    pred_map = dict(
        zip(
            accounts["account_id"].to_pylist(),
            zip(accounts["flagged"].to_pylist(), accounts["campaign_id"].to_pylist(), strict=True),
            strict=True,
        )
    )
    flagged = np.array([bool(pred_map.get(a, (False, None))[0]) for a in ids])
    pred_c = np.array([pred_map.get(a, (False, None))[1] for a in ids], dtype=object)
    requests = np.array([counts.get(a, 0) for a in ids], dtype=np.int64)
    attacker = np.array([c is not None for c in true_c])
    benign = ~attacker

    tp = int((flagged & attacker).sum())
    fp = int((flagged & benign).sum())
    fn = int((~flagged & attacker).sum())
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    f1 = _ratio(2 * precision * recall, precision + recall)
    result: dict[str, Any] = {
        "accounts": len(ids),
        "attacker_accounts": int(attacker.sum()),
        "benign_accounts": int(benign.sum()),
        "flagged": int(flagged.sum()),
        "true_positives": tp,
        "false_positives": fp,
        "false_negatives": fn,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "false_positive_rate": _ratio(fp, benign.sum()),
        "volume_recall": _ratio(requests[flagged & attacker].sum(), requests[attacker].sum()),
        "fpr_by_persona": {
            p: _ratio((flagged & (persona == p)).sum(), (persona == p).sum())
            for p in sorted(set(persona[benign].tolist()))
        },
    }
    result["campaigns"] = _campaign_metrics(
        true_c, pred_c, flagged, requests, attacker, campaigns, meta
    )
    result["adjusted_rand_index"] = _ari(true_c, pred_c, flagged, attacker, ids)
    return result


def _ari(
    true_c: np.ndarray,
    pred_c: np.ndarray,
    flagged: np.ndarray,
    attacker: np.ndarray,
    ids: list[str],
) -> float | None:
    from sklearn.metrics import adjusted_rand_score  # slow import: only when used

    idx = np.flatnonzero(attacker)
    if len(idx) < 2:
        return None
    pred = [
        f"c:{pred_c[i]}" if flagged[i] and pred_c[i] is not None else f"single:{ids[i]}"
        for i in idx
    ]
    return float(adjusted_rand_score(true_c[idx].tolist(), pred))


def _campaign_metrics(
    true_c: np.ndarray,
    pred_c: np.ndarray,
    flagged: np.ndarray,
    requests: np.ndarray,
    attacker: np.ndarray,
    campaigns: pa.Table,
    meta: dict,
) -> dict[str, dict[str, Any]]:
    detected = {
        c: (r, caps or [])
        for c, r, caps in zip(
            campaigns["campaign_id"].to_pylist(),
            campaigns["requests"].to_pylist(),
            campaigns["capabilities"].to_pylist(),
            strict=True,
        )
    }
    out: dict[str, dict[str, Any]] = {}
    for camp in sorted({c for c in true_c[attacker].tolist()}):
        members = true_c == camp
        true_requests = int(requests[members].sum())
        assigned = pred_c[members & flagged]
        assigned = (
            assigned[np.array([a is not None for a in assigned], dtype=bool)]
            if len(assigned)
            else assigned
        )
        best, share = None, 0.0
        if len(assigned):
            names, n = np.unique(assigned.astype(str), return_counts=True)
            best = str(names[np.argmax(n)])
            share = float(n.max()) / int(members.sum())
        main = meta.get("campaigns", {}).get(camp, {}).get("main_capability")
        det_requests, det_caps = detected.get(best, (None, [])) if best is not None else (None, [])
        out[camp] = {
            "accounts": int(members.sum()),
            "requests": true_requests,
            "recall": _ratio((members & flagged).sum(), members.sum()),
            "volume_recall": _ratio(requests[members & flagged].sum(), true_requests),
            "best_match": best,
            "best_match_share": share,
            "requests_relative_error": (
                abs(int(det_requests) - true_requests) / true_requests
                if det_requests is not None and true_requests
                else None
            ),
            "main_capability": main,
            "capability_in_top3": (main in list(det_caps)[:3])
            if best in detected and main
            else None,
        }
    return out


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def render(result: dict[str, Any], console: Console) -> None:
    top = Table(title="Detection vs ground truth")
    top.add_column("metric")
    top.add_column("value", justify="right")
    for key in (
        "accounts",
        "attacker_accounts",
        "flagged",
        "precision",
        "recall",
        "f1",
        "false_positive_rate",
        "volume_recall",
        "adjusted_rand_index",
    ):
        top.add_row(key, _fmt(result[key]))
    console.print(top)
    camp = Table(title="Per campaign")
    cols = {
        "accounts": "accounts", "requests": "requests", "recall": "recall",
        "volume_recall": "vol. recall", "best_match": "best match",
        "best_match_share": "share in best", "requests_relative_error": "req. rel. err",
        "main_capability": "main cap.", "capability_in_top3": "cap. in top 3",
    }  # fmt: skip
    camp.add_column("campaign")
    for header in cols.values():
        camp.add_column(header, justify="right")
    for name, m in result["campaigns"].items():
        camp.add_row(name, *(_fmt(m[c]) for c in cols))
    console.print(camp)
    fpr = Table(title="False-positive rate by benign persona")
    fpr.add_column("persona")
    fpr.add_column("fpr", justify="right")
    for name, v in result["fpr_by_persona"].items():
        fpr.add_row(name, _fmt(v))
    console.print(fpr)


def evaluate_command(
    truth: Path = typer.Option(..., "--truth", help="simulator output directory (labels, events)"),
    pred: Path = typer.Option(..., "--pred", help="detect output directory (accounts, campaigns)"),
    json_out: Path = typer.Option(None, "--json", help="also write the metrics to this JSON file"),
) -> None:
    """Score detection output against simulator ground truth."""
    result = evaluate(truth, pred)
    render(result, Console())
    if json_out is not None:
        json_out.write_text(json.dumps(result, indent=2), encoding="utf-8")
