"""`[signups].policy` in the service config, and sign-up decisions counted in `/metrics`."""

from __future__ import annotations

import pytest

from distillguard.errors import UserError
from distillguard.serve.app import create_app
from distillguard.serve.config import load_config, signup_policy
from tests.serve.conftest import READ, WRITE, make_config

ORDINARY = {"account_id": "a1", "email": "ana.silva@gmail.com", "tier": "pro"}


def _decide(client, account: dict) -> str:
    r = client.post("/v1/signups", json={"accounts": [account]}, headers=WRITE)
    assert r.status_code == 200
    return r.json()["decisions"][0]["decision"]


def _signup_counts(client) -> dict[str, float]:
    text = client.get("/metrics", headers=READ).text
    prefix = "distillguard_signup_decisions_total{"
    out = {}
    for line in text.splitlines():
        if line.startswith(prefix):
            labels, value = line.rsplit(" ", 1)
            out[labels.split('decision="')[1].split('"')[0]] = float(value)
    return out


def test_policy_key_changes_decisions_and_metrics_count_them(client_factory, tmp_path):
    default = client_factory()
    assert _signup_counts(default) == {"allow": 0, "require_verification": 0, "deny": 0}
    assert _decide(default, ORDINARY) == "allow"
    assert _decide(default, dict(ORDINARY, account_id="a2")) == "allow"
    assert _signup_counts(default) == {"allow": 2, "require_verification": 0, "deny": 0}

    strict = tmp_path / "strict.toml"
    strict.write_text("[signup]\nverify_score = 0.0\n")  # every sign-up must verify
    verify = client_factory(state={"path": str(tmp_path / "v.db")}, signups={"policy": str(strict)})
    assert _decide(verify, ORDINARY) == "require_verification"
    assert _signup_counts(verify) == {"allow": 0, "require_verification": 1, "deny": 0}

    closed = tmp_path / "closed.toml"
    closed.write_text(
        "[signup]\ndeny_score = 0.0\ndeny_min_evidence = 0\ndeny_requires_identity = false\n"
    )
    deny = client_factory(state={"path": str(tmp_path / "d.db")}, signups={"policy": str(closed)})
    assert _decide(deny, ORDINARY) == "deny"
    assert _signup_counts(deny) == {"allow": 0, "require_verification": 0, "deny": 1}


def test_policy_path_is_relative_to_the_config_and_checked_at_start(tmp_path):
    (tmp_path / "policy.toml").write_text("[signup]\nverify_score = 1.25\n")
    config = tmp_path / "serve.toml"
    config.write_text('[auth]\ndisabled = true\n[signups]\npolicy = "policy.toml"\n')
    assert signup_policy(load_config(config)).verify_score == 1.25

    (tmp_path / "policy.toml").write_text("[signup]\nverify_scor = 1.25\n")  # a typo
    with pytest.raises(UserError, match="verify_scor"):
        create_app(make_config(tmp_path, signups={"policy": str(tmp_path / "policy.toml")}))
    with pytest.raises(UserError, match="cannot read policy"):
        create_app(make_config(tmp_path, signups={"policy": str(tmp_path / "missing.toml")}))


def _intel_file(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "intel.parquet"
    pq.write_table(pa.table({"cidr": ["198.18.0.0/24"], "kind": ["proxy"]}), path)
    return path


def test_ip_intel_file_classifies_live_signups_and_requests(client_factory, tmp_path):
    from fastapi.testclient import TestClient

    signup = {"account_id": "p1", "email": "li.wei@gmail.com", "tier": "pro",
              "signup_ip": "198.18.0.7"}  # fmt: skip
    event = {"request_id": "r1", "timestamp": 1_770_000_000_000, "account_id": "p1",
             "client_ip": "198.18.0.9", "model": "m", "prompt": "hi", "input_tokens": 3,
             "output_tokens": 5}  # fmt: skip
    results = {}
    for name, section in [("without", {}), ("with", {"file": str(_intel_file(tmp_path))})]:
        cfg = make_config(tmp_path / name, ip_intel=section)
        with TestClient(create_app(cfg)) as client:
            r = client.post("/v1/signups", json={"accounts": [signup]}, headers=WRITE)
            evidence = r.json()["decisions"][0]["evidence"]
            client.post("/v1/events", json={"events": [event]}, headers=WRITE)
            window = client.get("/v1/accounts/p1", headers=READ).json()["windows"]["168h"]
            results[name] = ("proxy_exit" in evidence, window["proxy"])
    assert results == {"without": (False, 0), "with": (True, 1)}


def test_a_bad_ip_intel_file_is_a_config_error(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    with pytest.raises(UserError, match=r"\[ip_intel\]"):
        create_app(make_config(tmp_path, ip_intel={"file": str(tmp_path / "missing.parquet")}))
    pq.write_table(pa.table({"cidr": ["198.18.0.0/24"]}), tmp_path / "nokind.parquet")
    with pytest.raises(UserError, match="no column kind"):
        create_app(make_config(tmp_path, ip_intel={"file": str(tmp_path / "nokind.parquet")}))
