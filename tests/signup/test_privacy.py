"""No e-mail address in any output: detect, report, exports, signup-check, the service and its log.

One simulated run (scenario `small`, every account with an e-mail address) goes through every
command that writes files; every file they write is decoded (Parquet column by column, JSON and
text as text) and searched for the simulated addresses. A control file proves the scan finds one.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from distillguard.simulate import simulate
from tests.cli_runner import run_cli

ADDRESS = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


def decoded_text(path: Path) -> str:
    """A file's content as text: Parquet decoded to its values, anything else as UTF-8."""
    if path.suffix == ".parquet":
        return json.dumps(pq.read_table(path).to_pylist(), default=str)
    return path.read_bytes().decode("utf-8", errors="replace")


def leaked(paths: list[Path], emails: set[str]) -> dict[str, set[str]]:
    found = {}
    for path in paths:
        hits = {m.lower() for m in ADDRESS.findall(decoded_text(path))} & emails
        if hits:
            found[str(path)] = hits
    return found


def files_under(*roots: Path) -> list[Path]:
    return sorted(p for root in roots for p in root.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def pipeline_outputs(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, Path, Path, set[str], set[str]]:
    root = tmp_path_factory.mktemp("privacy")
    sim = root / "sim"
    simulate("small", seed=7, scale=0.3, out=sim)  # 87 accounts, 2.7k events: a quick detect
    accounts = pq.read_table(sim / "accounts.parquet")
    emails = {e.lower() for e in accounts["email"].to_pylist()}
    locals_ = {e.split("@")[0] for e in emails if len(e.split("@")[0]) >= 10}
    return root, sim, root / "det", emails, locals_


def test_no_email_in_detect_report_exports_or_signup_check(
    pipeline_outputs: tuple[Path, Path, Path, set[str], set[str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root, sim, det, emails, locals_ = pipeline_outputs
    assert len(emails) > 80
    logs: list[str] = []
    cli_args = [
        ["detect", "--events", str(sim / "events.parquet"), "--accounts",
         str(sim / "accounts.parquet"), "--releases", str(sim / "releases.parquet"),
         "--ip-intel", str(sim / "ip_intel.csv"), "--out", str(det)],
        ["report", "--run", str(det)],
        ["export", "stix", "--run", str(det)],
        ["export", "actions", "--run", str(det)],
        ["signup-check", "--accounts", str(sim / "accounts.parquet"), "--run", str(det)],
        ["signup-check", "--accounts", str(sim / "accounts.parquet"), "--run", str(det),
         "--out", str(root / "checked" / "decisions.csv"),
         "--history", str(sim / "accounts.parquet")],
        ["signup-check", "--accounts", str(sim / "accounts.parquet"), "--run", str(det),
         "--out", str(root / "checked" / "decisions.parquet")],
    ]  # fmt: skip
    for args in cli_args:
        code, out, err = run_cli(args, monkeypatch, capsys)
        assert code == 0, (args, err)
        logs += [out, err]
    written = files_under(det, root / "checked")
    assert any(p.name == "signup-decisions.jsonl" for p in written)
    assert any(p.name == "report.html" for p in written)
    assert any(p.name == "intel.stix.json" for p in written)
    assert leaked(written, emails) == {}
    assert not ({m.lower() for m in ADDRESS.findall("\n".join(logs))} & emails)
    # the sign-up outputs do not even carry the names before the @
    signup_files = [p for p in written if "decisions" in p.name]
    text = "\n".join(decoded_text(p) for p in signup_files)
    assert not [x for x in locals_ if x in text]
    # control: the scan finds an address where there is one
    assert leaked([sim / "accounts.parquet"], emails)


def test_no_email_in_service_responses_state_or_log(
    pipeline_outputs: tuple[Path, Path, Path, set[str], set[str]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from fastapi.testclient import TestClient

    from distillguard.serve.app import create_app
    from tests.serve.conftest import WRITE, make_config

    _, sim, _, emails, locals_ = pipeline_outputs
    rows = pq.read_table(sim / "accounts.parquet").to_pylist()
    for r in rows:
        r["created_at"] = int(r["created_at"].timestamp() * 1000)
    caplog.set_level(logging.DEBUG)
    bodies = []
    with TestClient(create_app(make_config(tmp_path))) as client:
        for i in range(0, len(rows), 40):
            resp = client.post("/v1/signups", json={"accounts": rows[i : i + 40]}, headers=WRITE)
            assert resp.status_code == 200
            bodies.append(resp.text)
        bad = [dict(rows[0], email=12345, tier="platinum")]
        resp = client.post("/v1/signups", json={"accounts": bad}, headers=WRITE)
        assert resp.status_code == 422
        bodies.append(resp.text)
        resp = client.post(
            "/v1/signups", content=b'{"accounts": [{"email": "a@b.co"', headers=WRITE
        )
        assert resp.status_code == 400
        bodies.append(resp.text)
    text = "\n".join(bodies) + "\n" + caplog.text
    assert not ({m.lower() for m in ADDRESS.findall(text)} & emails)
    assert not [x for x in locals_ if x in text]
    state = files_under(tmp_path)
    assert any(p.name.startswith("state.db") for p in state)
    blob = b"".join(p.read_bytes() for p in state).decode("latin-1").lower()
    assert not [e for e in emails if e in blob]
    assert not [x for x in locals_ if x in blob]
