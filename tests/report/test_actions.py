"""Enforcement export: policy validation, rule order, protected tiers, thresholds, advice."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from distillguard.contract import DETECTED_ACCOUNTS
from distillguard.errors import UserError
from distillguard.report.actions import decide, load_policy, parse_policy, write_plan
from distillguard.report.commands import register
from distillguard.report.rundir import RunDir
from tests.report.rundir_factory import FakeRun

RULE = {"action": "review", "min_risk": 0.5}


def _by_account(plan) -> dict[str, dict]:
    return {r["account_id"]: r for r in plan.rows}


def test_default_policy_is_conservative(fake_run: FakeRun) -> None:
    plan = decide(RunDir(fake_run.path), load_policy(None))
    rows = _by_account(plan)
    blocked = [r for r in plan.rows if r["action"] == "block"]
    assert blocked and all(
        r["risk"] >= 0.95 and r["campaign_id"] and len(r["reasons"]) >= 3 for r in blocked
    )
    # The enterprise account would be blocked by the rules, but is only sent to review.
    ent = rows[fake_run.enterprise]
    assert ent["action"] == "review" and "lowered from block" in ent["policy_reason"]
    # Campaign C2 (risk 0.8, 2 reasons) is throttled, not blocked.
    assert {rows[a]["action"] for a in fake_run.small} == {"throttle"}
    assert all(rows[a]["requests_per_minute"] == 10 for a in fake_run.small)
    # Benign, unflagged accounts get nothing and are not listed.
    assert not set(fake_run.benign) & set(rows)
    assert plan.counts["none"] == len(fake_run.benign)
    assert sum(plan.counts.values()) == plan.total_accounts


def test_risk_exactly_at_threshold_matches(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    accounts = pa.table(
        {
            "account_id": ["at", "below", "above"],
            "risk": [0.7, 0.7 - 1e-9, 0.71],
            "flagged": [True, True, True],
            "campaign_id": [None, None, None],
            "reasons": [["r1"], ["r1"], ["r1"]],
        },
        schema=DETECTED_ACCOUNTS,
    )
    pq.write_table(accounts, run / "accounts.parquet")  # a minimal run: contract output only
    policy = parse_policy({"rule": [{"action": "throttle", "min_risk": 0.7}]})
    rows = _by_account(decide(RunDir(run), policy))
    assert rows["at"]["action"] == "throttle" and rows["above"]["action"] == "throttle"
    assert "below" not in rows
    assert rows["at"]["tier"] == "unknown"
    assert (
        "protected tiers (enterprise) cannot be recognised"
        in decide(RunDir(run), policy).warnings[0]
    )


def test_first_matching_rule_wins_and_tier_filters(fake_run: FakeRun) -> None:
    policy = parse_policy(
        {
            "rule": [
                {
                    "name": "verify-edu",
                    "action": "require_verification",
                    "min_risk": 0.5,
                    "tiers": ["edu"],
                },
                {"name": "block-rest", "action": "block", "min_risk": 0.5},
            ],
            "protected": {"tiers": [], "max_action": "review"},
        }
    )
    rows = _by_account(decide(RunDir(fake_run.path), policy))
    edu = [a for i, a in enumerate(fake_run.hydra) if i % 2]
    startup = [a for i, a in enumerate(fake_run.hydra) if not i % 2]
    assert {rows[a]["action"] for a in edu} == {"require_verification"}
    assert {rows[a]["action"] for a in startup} == {"block"}
    assert rows[fake_run.enterprise]["action"] == "block"  # nothing protected in this policy


def test_no_campaigns(quiet_run: FakeRun, tmp_path: Path) -> None:
    plan = decide(RunDir(quiet_run.path), load_policy(None))
    assert plan.rows == [] and plan.counts["none"] == plan.total_accounts
    assert plan.access["campaign_accounts"] == 0
    assert "No campaign was detected" in plan.access["advice"][0]
    csv_path, json_path = write_plan(plan, tmp_path / "out" / "actions")
    assert csv_path.read_text().startswith("account_id,action,")
    assert json.loads(json_path.read_text())["actions"] == []


def test_access_control_advice(fake_run: FakeRun) -> None:
    access = decide(RunDir(fake_run.path), load_policy(None)).access
    tiers = {t["tier"]: t["accounts"] for t in access["tiers"]}
    assert tiers == {"edu": 12, "startup": 12, "research": 4, "enterprise": 1}
    assert access["disposable_accounts"] == len(fake_run.hydra)
    text = " ".join(access["advice"])
    assert "signed up as edu" in text and "signed up as startup" in text
    assert "mailinator.com" in text
    assert "signed up as research" in text  # 14%, 2.4x its share of all accounts
    assert "signed up as enterprise" not in text  # 3% < the 10% call-out share


def test_outputs_csv_and_json(fake_run: FakeRun, tmp_path: Path) -> None:
    plan = decide(RunDir(fake_run.path), load_policy(None))
    csv_path, json_path = write_plan(plan, tmp_path / "enf")
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == len(plan.rows)
    assert {r["action"] for r in rows} == {"block", "throttle", "review"}
    assert all(r["reasons"] for r in rows)
    doc = json.loads(json_path.read_text())
    assert doc["counts"] == plan.counts and doc["access_control"]["tiers"]


@pytest.mark.parametrize(
    "raw, key",
    [
        ({}, "rule"),
        ({"rule": [{"min_risk": 0.5}]}, "rule[1].action"),
        ({"rule": [{"action": "ban", "min_risk": 0.5}]}, "rule[1].action"),
        ({"rule": [RULE, {"action": "review", "min_risk": 1.5}]}, "rule[2].min_risk"),
        ({"rule": [{"action": "review", "min_risk": "high"}]}, "rule[1].min_risk"),
        ({"rule": [{**RULE, "colour": "red"}]}, "rule[1].colour"),
        ({"rule": [RULE], "default_action": "nuke"}, "default_action"),
        ({"rule": [RULE], "protected": {"max_action": "smite"}}, "protected.max_action"),
        ({"rule": [RULE], "protected": {"tier": ["enterprise"]}}, "protected.tier"),
        ({"rule": [RULE], "throttle": {"requests_per_minute": 0}}, "throttle.requests_per_minute"),
        ({"rule": [RULE], "thresholds": {}}, "thresholds"),
        ({"rule": [{**RULE, "tiers": "edu"}]}, "rule[1].tiers"),
        ({"rule": [{**RULE, "require_campaign": "yes"}]}, "rule[1].require_campaign"),
    ],
)
def test_bad_policy_names_the_key(raw: dict, key: str) -> None:
    with pytest.raises(UserError, match="policy " + re.escape(key) + ":"):
        parse_policy(raw)


def test_bad_policy_file_is_a_user_error(fake_run: FakeRun, tmp_path: Path) -> None:
    bad = tmp_path / "p.toml"
    bad.write_text('[[rule]]\naction = "obliterate"\nmin_risk = 0.9\n')
    app = typer.Typer()
    register(app)
    args = ["export", "actions", "--run", str(fake_run.path), "--policy", str(bad)]
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, UserError)  # the CLI maps it to exit code 2
    assert "rule[1].action" in str(result.exception)
    bad.write_text("rule = [ not toml")
    with pytest.raises(UserError, match="not valid TOML"):
        load_policy(bad)
