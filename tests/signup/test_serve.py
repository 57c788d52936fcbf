"""`POST /v1/signups`: scopes, validation, and sign-ups judged against the service's campaigns."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from tests.serve.conftest import READ, WRITE
from tests.serve.traffic import T0, hydra, normal_user


def _post(client: TestClient, accounts: list[dict[str, Any]], headers: dict = WRITE) -> Any:
    return client.post("/v1/signups", json={"accounts": accounts}, headers=headers)


def test_scopes_validation_and_empty_state(client: TestClient) -> None:
    assert client.post("/v1/signups", json={"accounts": []}).status_code == 401
    assert _post(client, [], headers=READ).status_code == 403
    assert client.post("/v1/signups", content=b"{", headers=WRITE).status_code == 400
    assert client.post("/v1/signups", json={"nope": 1}, headers=WRITE).status_code == 422
    bad = _post(
        client,
        [
            {"account_id": "a1", "signup_ip": "999.1.1.1", "email": "x@y.example"},
            {"account_id": "a2", "tier": "platinum", "created_at": "yesterday"},
            {"tier": "pro"},
        ],
    )
    assert bad.status_code == 422
    detail = bad.json()["detail"]
    assert {(d["index"], d["field"], d["reason"]) for d in detail} == {
        (0, "signup_ip", "bad_ip"),
        (1, "tier", "unknown_value"),
        (1, "created_at", "bad_timestamp"),
        (2, "account_id", "missing_field"),
    }
    # nothing stored from a rejected batch; an ordinary sign-up on a fresh service is allowed
    ok = _post(client, [{"account_id": "a9", "email": "ana.silva@gmail.com", "tier": "pro"}])
    assert ok.status_code == 200
    [d] = ok.json()["decisions"]
    assert d["decision"] == "allow" and d["reasons"]
    assert ok.json()["known"]["signups_seen"] == 1


def test_signups_linked_to_a_live_campaign(client_factory: Callable[..., TestClient]) -> None:
    client = client_factory()
    svc = client.app.state.service
    cluster = hydra("hyd", accounts=10, n_each=30)
    users = [e for k in range(4) for e in normal_user(f"user{k}", 30, seed=k)]
    # the hydra's accounts signed up first, with one card and a farm device between them
    first = [
        {"account_id": f"hyd{a:02d}", "created_at": T0 - 86_400_000 + a * 60_000,
         "payment_fingerprint": "pm_hydra", "device_fingerprint": "dev_farm",
         "email": f"reasonkit{1000 + a * 37}@mailbox.example", "tier": "edu",
         "org_id": "org_front"}
        for a in range(10)
    ] + [
        {"account_id": f"user{k}", "created_at": T0 - 200 * 86_400_000,
         "payment_fingerprint": f"pm_user{k}", "email": f"user{k}@example.org"}
        for k in range(4)
    ]  # fmt: skip
    assert _post(client, first).status_code == 200
    for i in range(0, len(cluster + users), 200):
        batch = (cluster + users)[i : i + 200]
        assert client.post("/v1/events", json={"events": batch}, headers=WRITE).status_code == 200
    svc.flush_signals()
    result = svc.run_analysis()
    assert result is not None and len(result.campaigns) == 1
    campaign = result.campaigns[0]["campaign_id"]
    hydra_ip = cluster[0]["client_ip"]
    user_ip = users[0]["client_ip"]
    now = T0 + 5 * 86_400_000
    decisions = _post(
        client,
        [
            # a replacement: same card, same device, from the hydra's proxy exit
            {"account_id": "new-bad", "created_at": now, "payment_fingerprint": "pm_hydra",
             "device_fingerprint": "dev_farm", "signup_ip": hydra_ip,
             "email": "reasonkit9999@mailbox.example", "tier": "edu"},
            # only the proxy exit: verification, naming the check of the edu path
            {"account_id": "new-edu", "created_at": now, "signup_ip": hydra_ip, "tier": "edu",
             "email": "l.chen@gmail.com"},
            # only membership of the organisation the hydra's accounts named at sign-up
            {"account_id": "new-org", "created_at": now, "tier": "team", "org_id": "org_front",
             "email": "k.tanaka@gmail.com"},
            # an ordinary sign-up from an ordinary user's address
            {"account_id": "new-ok", "created_at": now, "signup_ip": user_ip, "tier": "pro",
             "email": "maria.garcia@example.org", "payment_fingerprint": "pm_new"},
        ],
    ).json()["decisions"]  # fmt: skip
    by_id = {d["account_id"]: d for d in decisions}
    assert by_id["new-bad"]["decision"] == "deny"
    assert by_id["new-bad"]["campaign_id"] == campaign
    assert {"payment", "device", "ip"} <= set(by_id["new-bad"]["evidence"])
    assert by_id["new-edu"]["decision"] == "require_verification"
    assert by_id["new-edu"]["verification"] == "institutional_email"
    assert by_id["new-org"]["decision"] == "require_verification"
    assert by_id["new-org"]["evidence"] == ["org"]
    assert by_id["new-org"]["verification"] == "organisation"
    assert by_id["new-ok"]["decision"] == "allow"


def test_history_stored_before_org_id_was_kept_still_loads(client: TestClient) -> None:
    from distillguard.serve.features import to_ipc
    from distillguard.serve.signups import HISTORY_KEY, REVISION_KEY
    from distillguard.signup.known import HISTORY_SCHEMA

    first = _post(client, [{"account_id": "old1", "email": "bo.li@gmail.com", "tier": "pro"}])
    assert first.status_code == 200
    desk = client.app.state.signups
    stored = desk.history()
    assert stored.num_rows == 1 and "org_id" in stored.column_names
    # Store it again as an older version did: without the org_id column.
    desk.svc.store.put_kv(HISTORY_KEY, to_ipc(stored.drop_columns(["org_id"])))
    desk.svc.store.put_kv(REVISION_KEY, b"older")
    reloaded = desk.history()
    assert reloaded.schema == HISTORY_SCHEMA and reloaded["account_id"].to_pylist() == ["old1"]
    later = _post(client, [{"account_id": "new1", "email": "cy.wu@gmail.com", "tier": "pro"}])
    assert later.status_code == 200 and later.json()["known"]["signups_seen"] == 2
