"""`distillguard explain`: a known account's full picture; an unknown account is a user error."""

from __future__ import annotations

import sys

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from distillguard.errors import UserError
from distillguard.report.commands import register
from distillguard.report.explain import explain_account, render, sparkline
from tests.report.rundir_factory import FakeRun


def test_known_account(fake_run_master: FakeRun) -> None:
    account = fake_run_master.hydra[3]
    x = explain_account(fake_run_master.path, account)
    assert x.flagged and x.campaign_id == "C1" and x.risk == pytest.approx(0.94)
    assert x.reasons[0].startswith("used 23 IPs")
    assert dict(x.fingerprint)["requests"] == "60"
    assert dict(x.fingerprint)["via proxy/VPN/Tor"] == "100%"
    # Linked accounts: strongest first, with the evidence they share per view.
    assert x.linked and x.linked[0]["weight"] >= x.linked[-1]["weight"]
    assert {r["partner"] for r in x.linked} <= set(fake_run_master.hydra)
    assert x.linked[0]["n_template"] == 5
    assert sum(n for _, n in x.daily) == 60

    console = Console(record=True, width=140)
    render(x, console)
    text = console.export_text()
    for expected in (
        account,
        "flagged YES",
        "campaign C1",
        "Linked accounts",
        "template 5",
        "Timeline",
        "60 requests on",
    ):
        assert expected in text


def test_unlinked_account_renders(fake_run_master: FakeRun) -> None:
    x = explain_account(fake_run_master.path, fake_run_master.benign[5])
    assert not x.flagged and x.campaign_id is None and x.linked == []
    console = Console(record=True, width=120)
    render(x, console)
    assert "no signal fired" in console.export_text()


def test_unknown_account_is_a_user_error(fake_run_master: FakeRun) -> None:
    with pytest.raises(UserError, match="'nobody' is not in the run"):
        explain_account(fake_run_master.path, "nobody")


def test_cli_exit_codes(
    fake_run_master: FakeRun, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    app = typer.Typer()
    register(app)
    ok = CliRunner().invoke(
        app, ["explain", fake_run_master.hydra[0], "--run", str(fake_run_master.path)]
    )
    assert ok.exit_code == 0, ok.output
    # The real entry point turns the UserError into exit code 2 with one line, no traceback.
    from distillguard import cli

    monkeypatch.setattr(
        sys, "argv", ["distillguard", "explain", "nobody", "--run", str(fake_run_master.path)]
    )
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "nobody" in err and "Traceback" not in err


def test_sparkline() -> None:
    assert sparkline([0, 1, 8]) == " ▁█"
    assert sparkline([]) == "" and sparkline([0, 0]) == ""
