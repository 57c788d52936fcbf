"""The report's "Sign-up paths" section: campaign accounts per tier, the check that stops them."""

from __future__ import annotations

from pathlib import Path

import pytest

from distillguard.report.html import render_report
from distillguard.report.rundir import RunDir
from distillguard.signup.paths import signup_paths
from tests.report.rundir_factory import build_run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("paths")
    return build_run_dir(root / "run").path, build_run_dir(
        root / "quiet", with_campaigns=False
    ).path


def test_paths_count_campaign_accounts_and_what_stops_them(runs: tuple[Path, Path]) -> None:
    rows = {r["tier"]: r for r in signup_paths(RunDir(runs[0]))}
    # the synthetic hydra signed up half edu, half startup, all on mailinator.com
    assert rows["edu"]["campaign_accounts"] == 12 and rows["startup"]["campaign_accounts"] == 12
    assert rows["edu"]["check"] == "institutional e-mail verification"
    assert rows["edu"]["stopped"] == 12  # a disposable domain is no institution's
    assert rows["startup"]["check"] == "organisation verification"
    assert rows["startup"]["stopped"] == 12  # no organisation id
    assert sum(r["share_of_campaign"] for r in rows.values()) == pytest.approx(1.0)
    html = render_report(runs[0])
    assert 'id="signup-paths"' in html and "institutional e-mail verification" in html


def test_no_section_without_campaigns(runs: tuple[Path, Path]) -> None:
    assert signup_paths(RunDir(runs[1])) == []
    assert 'id="signup-paths"' not in render_report(runs[1])
