"""`evaluate` against metrics computed by hand on a tiny hand-built case."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from distillguard import contract
from distillguard.errors import UserError
from distillguard.evaluate import evaluate

# account -> (persona, true campaign, requests)
TRUTH = {
    "a1": ("campaign_a", "A", 10),
    "a2": ("campaign_a", "A", 5),
    "a3": ("campaign_a", "A", 5),
    "b1": ("campaign_b", "B", 4),
    "n1": ("chat_user", None, 3),
    "n2": ("enterprise_batch", None, 20),
}
# a3 is absent from the predictions (counts as not flagged); n2 is a false positive.
PRED = {
    "a1": (True, "X"),
    "a2": (True, "X"),
    "b1": (True, "Y"),
    "n1": (False, None),
    "n2": (True, "X"),
}
CAMPAIGNS = {"X": (35, ["coding", "tool_use"]), "Y": (4, ["vision", "reasoning"])}


def _write_case(root: Path, drop_column: str | None = None) -> tuple[Path, Path]:
    truth, pred = root / "truth", root / "pred"
    truth.mkdir()
    pred.mkdir()
    ids = list(TRUTH)
    pq.write_table(
        pa.table(
            {
                "account_id": ids,
                "persona": [TRUTH[a][0] for a in ids],
                "campaign_id": [TRUTH[a][1] for a in ids],
            },
            schema=contract.LABELS,
        ),
        truth / "labels.parquet",
    )
    rows = [a for a in ids for _ in range(TRUTH[a][2])]
    pq.write_table(
        pa.table({"account_id": rows, "request_id": [f"r{i}" for i in range(len(rows))]}),
        truth / "events.parquet",
    )
    (truth / "truth.json").write_text(
        json.dumps(
            {"campaigns": {"A": {"main_capability": "coding"}, "B": {"main_capability": "agentic"}}}
        )
    )
    accounts = pa.table(
        {
            "account_id": list(PRED),
            "risk": [0.9 if f else 0.1 for f, _ in PRED.values()],
            "flagged": [f for f, _ in PRED.values()],
            "campaign_id": [c for _, c in PRED.values()],
            "reasons": [[] for _ in PRED],
        },
        schema=contract.DETECTED_ACCOUNTS,
    )
    if drop_column:
        accounts = accounts.drop_columns([drop_column])
    pq.write_table(accounts, pred / "accounts.parquet")
    t = datetime(2026, 1, 1, tzinfo=UTC)
    pq.write_table(
        pa.table(
            {
                "campaign_id": list(CAMPAIGNS),
                "accounts": [3, 1],
                "requests": [r for r, _ in CAMPAIGNS.values()],
                "output_tokens": [0, 0],
                "first_seen": [t, t],
                "last_seen": [t, t],
                "capabilities": [c for _, c in CAMPAIGNS.values()],
                "ips": [1, 1],
                "asns": [1, 1],
                "models": [[], []],
            },
            schema=contract.DETECTED_CAMPAIGNS,
        ),
        pred / "campaigns.parquet",
    )
    return truth, pred


def test_metrics_match_hand_computation(tmp_path: Path) -> None:
    r = evaluate(*_write_case(tmp_path))
    # TP a1 a2 b1; FP n2; FN a3
    assert (r["true_positives"], r["false_positives"], r["false_negatives"]) == (3, 1, 1)
    assert r["precision"] == pytest.approx(0.75)
    assert r["recall"] == pytest.approx(0.75)
    assert r["f1"] == pytest.approx(0.75)
    assert r["false_positive_rate"] == pytest.approx(0.5)
    assert r["fpr_by_persona"] == {"chat_user": 0.0, "enterprise_batch": 1.0}
    assert r["volume_recall"] == pytest.approx(19 / 24)
    # contingency A:{X:2, a3 alone:1}, B:{Y:1} -> index 1, expected 0.5, max 2 -> ARI 1/3
    assert r["adjusted_rand_index"] == pytest.approx(1 / 3)
    a, b = r["campaigns"]["A"], r["campaigns"]["B"]
    assert a["recall"] == pytest.approx(2 / 3) and b["recall"] == 1.0
    assert a["best_match"] == "X" and a["best_match_share"] == pytest.approx(2 / 3)
    assert a["requests"] == 20 and a["requests_relative_error"] == pytest.approx(0.75)
    assert b["requests_relative_error"] == pytest.approx(0.0)
    assert a["capability_in_top3"] is True and b["capability_in_top3"] is False
    assert a["volume_recall"] == pytest.approx(15 / 20)


def test_missing_file_or_column_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    truth, pred = _write_case(tmp_path / "one")
    (pred / "campaigns.parquet").unlink()
    with pytest.raises(UserError, match="campaigns"):
        evaluate(truth, pred)
    (tmp_path / "two").mkdir()
    truth2, pred2 = _write_case(tmp_path / "two", drop_column="flagged")
    with pytest.raises(UserError, match="flagged"):
        evaluate(truth2, pred2)
    with pytest.raises(UserError, match="labels"):
        evaluate(tmp_path / "nowhere", pred2)


def test_cli_writes_json_and_exits_2_on_bad_input(tmp_path: Path) -> None:
    from distillguard.cli import app

    truth, pred = _write_case(tmp_path)
    out = tmp_path / "m.json"
    res = CliRunner().invoke(
        app, ["evaluate", "--truth", str(truth), "--pred", str(pred), "--json", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["precision"] == pytest.approx(0.75)
    res = CliRunner().invoke(
        app, ["evaluate", "--truth", str(truth), "--pred", str(tmp_path / "x")]
    )
    assert res.exit_code != 0


def test_perfect_predictions_on_a_simulated_run_score_perfectly(tmp_path: Path) -> None:
    from distillguard.simulate import simulate

    truth = tmp_path / "sim"
    simulate("small", scale=0.5, seed=9, out=truth)
    labels = pq.read_table(truth / "labels.parquet").to_pylist()
    meta = json.loads((truth / "truth.json").read_text())
    pred = tmp_path / "pred"
    pred.mkdir()
    pq.write_table(
        pa.Table.from_pylist(
            [
                {
                    "account_id": r["account_id"],
                    "risk": 1.0 if r["campaign_id"] else 0.0,
                    "flagged": r["campaign_id"] is not None,
                    "campaign_id": r["campaign_id"],
                    "reasons": [],
                }
                for r in labels
            ],
            schema=contract.DETECTED_ACCOUNTS,
        ),
        pred / "accounts.parquet",
    )
    t = datetime(2026, 1, 1, tzinfo=UTC)
    pq.write_table(
        pa.Table.from_pylist(
            [
                {
                    "campaign_id": c,
                    "accounts": m["accounts"],
                    "requests": m["requests"],
                    "output_tokens": 0,
                    "first_seen": t,
                    "last_seen": t,
                    "capabilities": [m["main_capability"]],
                    "ips": 1,
                    "asns": 1,
                    "models": [],
                }
                for c, m in meta["campaigns"].items()
            ],
            schema=contract.DETECTED_CAMPAIGNS,
        ),
        pred / "campaigns.parquet",
    )
    r = evaluate(truth, pred)
    assert r["precision"] == r["recall"] == r["volume_recall"] == 1.0
    assert r["false_positive_rate"] == 0.0 and r["adjusted_rand_index"] == pytest.approx(1.0)
    for m in r["campaigns"].values():
        assert m["requests_relative_error"] == 0.0 and m["capability_in_top3"] is True
