"""`distillguard signup-check`: decisions on a synthetic run, exit code 2 on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_runner import run_cli
from tests.report.rundir_factory import build_run_dir

SIGNUPS = [
    # from the synthetic hydra's proxy exits, on the edu path, in a burst of templated names
    *[
        {"account_id": f"new{i}", "created_at": f"2026-01-20T10:0{i}:00Z", "tier": "edu",
         "signup_ip": f"203.0.113.{i + 1}", "email": f"evalteam{4000 + i}@mailinator.com"}
        for i in range(4)
    ],
    {"account_id": "ordinary", "created_at": "2026-01-20T10:05:00Z", "tier": "pro",
     "signup_ip": "100.64.3.4", "email": "maria.garcia@example.org"},
]  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_run_dir(tmp_path_factory.mktemp("signup-run") / "run").path


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_signup_check_decides_and_writes_rejects(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    rows = [*SIGNUPS, {"account_id": "broken", "signup_ip": "not-an-ip", "email": "b@c.example"}]
    new = _write_jsonl(tmp_path / "new.jsonl", rows)
    out = tmp_path / "decisions.jsonl"
    code, stdout, err = run_cli(
        ["signup-check", "--accounts", str(new), "--run", str(run_dir), "--out", str(out)],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    decided = {d["account_id"]: d for d in map(json.loads, out.read_text().splitlines())}
    assert set(decided) == {r["account_id"] for r in SIGNUPS}  # the broken one is rejected
    for i in range(4):
        d = decided[f"new{i}"]
        assert d["decision"] == "require_verification", d
        assert d["verification"] == "institutional_email"
        assert "ip" in d["evidence"] and "disposable" in d["evidence"]
    assert "naming" in decided["new3"]["evidence"] and "burst" in decided["new3"]["evidence"]
    assert decided["ordinary"]["decision"] == "allow"
    rejects = (tmp_path / "decisions.jsonl.rejects.jsonl").read_text()
    assert "signup_ip" in rejects and "b@c.example" not in rejects
    assert "require_verification" in stdout


def test_history_links_new_names_to_flagged_series(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:

    import pyarrow.parquet as pq

    ids = pq.read_table(run_dir / "accounts.parquet", columns=["account_id", "campaign_id"])
    hydra = [a for a, c in zip(*ids.to_pydict().values(), strict=True) if c][:5]
    earlier = [{"account_id": a, "email": f"gradeset{100 + i * 13}@mailinator.com"}
               for i, a in enumerate(hydra)]  # fmt: skip
    hist = _write_jsonl(tmp_path / "earlier.jsonl", earlier)
    new = _write_jsonl(
        tmp_path / "new.jsonl",
        [{"account_id": "late", "email": "gradeset777@gmail.com", "signup_ip": "100.64.3.9"}],
    )
    out = tmp_path / "d.json"
    base = ["signup-check", "--accounts", str(new), "--run", str(run_dir), "--out", str(out)]
    assert run_cli(base, monkeypatch, capsys)[0] == 0
    [without] = json.loads(out.read_text())["decisions"]
    assert run_cli([*base, "--history", str(hist)], monkeypatch, capsys)[0] == 0
    [with_history] = json.loads(out.read_text())["decisions"]
    assert "pattern" not in without["evidence"]
    assert "pattern" in with_history["evidence"]
    assert with_history["decision"] == "require_verification"
    assert "gradeset" not in out.read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--accounts", "{tmp}/missing.jsonl", "--run", "{run}"], "missing.jsonl"),
        (["--accounts", "{tmp}/new.jsonl", "--run", "{tmp}"], "not a detect run directory"),
        (["--accounts", "{tmp}/new.jsonl", "--run", "{run}", "--out", "{tmp}/d.txt"], "--out"),
        (["--accounts", "{tmp}/new.jsonl", "--run", "{run}", "--policy", "{tmp}/bad.toml"],
         "signup.verify_scor"),
    ],
)  # fmt: skip
def test_bad_input_exits_2_with_one_line(
    args: list[str],
    message: str,
    run_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    _write_jsonl(tmp_path / "new.jsonl", SIGNUPS)
    (tmp_path / "bad.toml").write_text("[signup]\nverify_scor = 0.5\n")
    filled = [a.format(tmp=tmp_path, run=run_dir) for a in args]
    code, _, err = run_cli(["signup-check", *filled], monkeypatch, capsys)
    assert code == 2
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_policy_signup_section_is_validated_and_shared_with_actions(tmp_path: Path) -> None:
    from distillguard.errors import UserError
    from distillguard.report.actions import load_policy
    from distillguard.signup.policy import load_signup_policy

    shipped = load_signup_policy(None)
    assert shipped.verify_score < shipped.deny_score
    assert shipped.checks["edu"] == "institutional_email"
    assert load_policy(None).rules  # export actions still reads the shared file
    custom = tmp_path / "p.toml"
    custom.write_text(
        '[[rule]]\naction = "review"\n[signup]\nverify_score = 0.4\n'
        '[signup.weights]\nburst = 0.9\n[signup.checks]\nfree = "organisation"\n'
    )
    p = load_signup_policy(custom)
    assert (p.verify_score, p.weights["burst"], p.checks["free"]) == (0.4, 0.9, "organisation")
    assert p.weights["payment"] == shipped.weights["payment"]
    for bad, key in [
        ("[signup.weights]\nemail = 1\n", "signup.weights.email"),
        ('[signup.checks]\nedu = "phone"\n', "signup.checks.edu"),
        ("[signup]\nip_campaign_share = 2\n", "signup.ip_campaign_share"),
    ]:
        custom.write_text(bad)
        with pytest.raises(UserError, match=key):
            load_signup_policy(custom)
