from __future__ import annotations

import json

from tests.serve.conftest import READ, WRITE, make_config
from tests.serve.traffic import hydra, normal_user


def _post(client, events, headers=WRITE):
    return client.post("/v1/events", json={"events": events}, headers=headers)


def test_every_event_gets_a_decision_in_order(client):
    events = normal_user("alice", 12, seed=3)
    r = _post(client, events)
    assert r.status_code == 200
    body = r.json()
    assert [d["request_id"] for d in body["decisions"]] == [e["request_id"] for e in events]
    assert body["accepted"] == 12 and body["duplicates"] == 0
    for d in body["decisions"]:
        assert d["decision"] in ("allow", "throttle", "challenge", "block")
        assert 0.0 <= d["risk"] <= 1.0 and isinstance(d["reasons"], list)
    assert {d["decision"] for d in body["decisions"]} == {"allow"}


def test_hydra_is_flagged_and_alerted_once_while_a_normal_user_is_allowed(client_factory, receiver):
    client = client_factory(
        alerts={"webhook_url": receiver.url, "webhook_token": "hook-secret"},
        signals={"inline": False, "flush_ms": 600_000},  # one signal pass, below
    )
    svc = client.app.state.service
    users = [e for k in range(6) for e in normal_user(f"user{k}", 30, seed=k)]
    cluster = hydra("hyd", accounts=10, n_each=30)
    for i in range(0, len(users), 200):
        assert _post(client, users[i : i + 200]).status_code == 200
    for i in range(0, len(cluster), 200):
        assert _post(client, cluster[i : i + 200]).status_code == 200

    assert svc.flush_signals() == len(users) + len(cluster)
    result = svc.run_analysis()
    assert result is not None and len(result.campaigns) == 1
    campaign = result.campaigns[0]
    assert campaign["accounts"] == 10
    assert len(receiver.received) == 1
    alert = receiver.received[0]
    assert alert["auth"] == "Bearer hook-secret"
    assert alert["campaign"]["campaign_id"] == campaign["campaign_id"]
    assert sorted(alert["campaign"]["member_accounts"]) == [f"hyd{a:02d}" for a in range(10)]

    later = hydra("hyd", accounts=10, n_each=2, seed=9, start=cluster[-1]["timestamp"] + 60_000)
    later = [dict(e, request_id=e["request_id"] + "-late") for e in later]
    fresh_user = normal_user("user0", 2, seed=0, start=cluster[-1]["timestamp"])
    fresh_user = [dict(e, request_id=e["request_id"] + "-late") for e in fresh_user]
    decisions = _post(client, later + fresh_user).json()["decisions"]
    hydra_d = [d for d in decisions if d["account_id"].startswith("hyd")]
    user_d = [d for d in decisions if d["account_id"] == "user0"]
    assert {d["decision"] for d in hydra_d} <= {"challenge", "block"}
    assert all(d["campaign_id"] == campaign["campaign_id"] for d in hydra_d)
    assert any("linked accounts" in r for r in hydra_d[0]["reasons"])
    assert {d["decision"] for d in user_d} == {"allow"}

    # A second run keeps the campaign's id and does not alert again.
    again = svc.run_analysis()
    assert [c["campaign_id"] for c in again.campaigns] == [campaign["campaign_id"]]
    assert len(receiver.received) == 1
    listed = client.get("/v1/campaigns", headers=READ).json()["campaigns"]
    assert [c["campaign_id"] for c in listed] == [campaign["campaign_id"]]
    assert listed[0]["alerted"] is True and listed[0]["active"] is True


def test_tokens_and_scopes(client):
    events = normal_user("bob", 2)
    assert _post(client, events, headers={}).status_code == 401
    assert _post(client, events, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert _post(client, events, headers=READ).status_code == 403
    assert client.get("/v1/campaigns", headers=WRITE).status_code == 403
    assert client.get("/metrics").status_code == 401
    assert client.get("/healthz").status_code == 200
    assert _post(client, events).status_code == 200
    assert client.get("/v1/accounts/bob", headers=READ).status_code == 200


def test_scrypt_token_is_accepted(tmp_path):
    from fastapi.testclient import TestClient

    from distillguard.serve.app import create_app
    from distillguard.serve.auth import scrypt_hash

    cfg = make_config(tmp_path)
    cfg.tokens.append(
        type(cfg.tokens[0])("person", scrypt_hash("correct horse"), frozenset({"read"}))
    )
    with TestClient(create_app(cfg)) as c:
        assert (
            c.get("/v1/campaigns", headers={"Authorization": "Bearer correct horse"}).status_code
            == 200
        )
        assert (
            c.get("/v1/campaigns", headers={"Authorization": "Bearer wrong horse"}).status_code
            == 401
        )


def test_body_and_batch_limits(client_factory):
    client = client_factory(server={"max_body_bytes": 20_000, "max_batch_events": 10})
    assert _post(client, normal_user("carol", 11)).status_code == 413
    big = normal_user("carol", 3)
    big[0]["prompt"] = "x" * 30_000
    assert _post(client, big).status_code == 413
    assert _post(client, normal_user("carol", 10)).status_code == 200


def test_validation_error_names_field_and_reason_and_stores_nothing(client):
    events = normal_user("dave", 4)
    events[1]["client_ip"] = "300.1.2.3"
    events[2]["output_tokens"] = -5
    del events[3]["timestamp"]
    r = _post(client, events)
    assert r.status_code == 422
    detail = {d["index"]: (d["field"], d["reason"]) for d in r.json()["detail"]}
    assert detail == {
        1: ("client_ip", "bad_ip"),
        2: ("output_tokens", "negative_tokens"),
        3: ("timestamp", "missing_field"),
    }
    assert client.get("/v1/accounts/dave", headers=READ).status_code == 404
    assert client.post("/v1/events", content=b"{not json", headers=WRITE).status_code == 400
    assert client.post("/v1/events", json={"evts": []}, headers=WRITE).status_code == 422


def test_repeated_request_ids_return_the_stored_decision_and_count_once(client):
    events = normal_user("erin", 8)
    first = _post(client, events).json()
    dup_in_batch = events[:3] + events[:1]
    second = _post(client, dup_in_batch).json()
    assert second["accepted"] == 0 and second["duplicates"] == 4
    by_id = {d["request_id"]: d for d in first["decisions"]}
    for d in second["decisions"]:
        assert d["duplicate"] is True
        assert d["decision"] == by_id[d["request_id"]]["decision"]
        assert d["risk"] == by_id[d["request_id"]]["risk"]
    view = client.get("/v1/accounts/erin", headers=READ).json()
    assert view["windows"]["168h"]["requests"] == 8


def test_an_id_twice_in_one_batch_counts_once_and_both_get_its_decision(client):
    events = normal_user("gina", 4, seed=6)
    body = _post(client, [*events, events[1]]).json()
    assert body["accepted"] == 4 and body["duplicates"] == 1
    assert [d["duplicate"] for d in body["decisions"]] == [False] * 4 + [True]
    assert body["decisions"][4] == dict(body["decisions"][1], duplicate=True)
    view = client.get("/v1/accounts/gina", headers=READ).json()
    assert view["windows"]["168h"]["requests"] == 4


def test_a_batch_mixing_known_and_new_ids_counts_only_the_new_ones(client):
    # SQLite first tries the commit as if every id were new; a known one must make it look up
    # the ids and commit only the new rows, with nothing of the failed attempt left behind.
    events = normal_user("frank", 10, seed=5)
    first = _post(client, events[:6]).json()
    mixed = _post(client, events[4:]).json()
    assert mixed["accepted"] == 4 and mixed["duplicates"] == 2
    assert [d["duplicate"] for d in mixed["decisions"]] == [True, True, False, False, False, False]
    assert mixed["decisions"][0] == dict(first["decisions"][4], duplicate=True)
    view = client.get("/v1/accounts/frank", headers=READ).json()
    assert view["windows"]["168h"]["requests"] == 10
    metrics = client.get("/metrics", headers=READ).text
    assert "distillguard_duplicate_events_total 2" in metrics


def test_no_prompt_text_on_disk_unless_configured(client_factory, tmp_path):
    secret = "zebra-marmalade-prompt-4417"

    def disk_bytes() -> bytes:
        return b"".join(p.read_bytes() for p in tmp_path.glob("state.db*"))

    events = normal_user("frank", 5)
    for e in events:
        e["prompt"] = f"Tell me about {secret} please"
        e["system"] = f"system {secret}"
    client = client_factory()
    assert _post(client, events).status_code == 200
    client.app.state.service.run_analysis()
    assert b"frank" in disk_bytes()  # the file holds the state...
    assert secret.encode() not in disk_bytes()  # ...but not the text

    other = client_factory(state={"store_prompts": True, "path": str(tmp_path / "text.db")})
    assert (
        _post(other, [dict(e, request_id=e["request_id"] + "b") for e in events]).status_code == 200
    )
    assert secret.encode() in b"".join(p.read_bytes() for p in tmp_path.glob("text.db*"))


def test_state_survives_a_restart(client_factory, tmp_path):
    from fastapi.testclient import TestClient

    from distillguard.serve.app import create_app

    events = normal_user("gina", 6)
    with TestClient(create_app(make_config(tmp_path))) as c:
        assert _post(c, events).status_code == 200
    with TestClient(create_app(make_config(tmp_path))) as c:
        again = _post(c, events).json()
        assert again["duplicates"] == 6
        assert c.get("/v1/accounts/gina", headers=READ).json()["windows"]["168h"]["requests"] == 6


def test_async_signals_reach_the_windows_after_a_flush(client_factory):
    client = client_factory(signals={"inline": False, "flush_ms": 60_000})
    svc = client.app.state.service
    cluster = hydra("solo", accounts=1, n_each=25)
    assert _post(client, cluster).status_code == 200
    before = client.get("/v1/accounts/solo00", headers=READ).json()["windows"]["168h"]
    assert before["requests"] == 25 and before["signalled"] == 0
    assert svc.flush_signals() == 25
    after = client.get("/v1/accounts/solo00", headers=READ).json()["windows"]["168h"]
    assert after["signalled"] == 25 and after["cot"] == 25


def test_a_flush_commits_its_signal_slices_one_per_transaction(client_factory, monkeypatch):
    # Merged into one commit, a flush's slices held the committer for ~35 ms at 5,000
    # events/s, and every POST arriving meanwhile waited for all of them.
    import distillguard.serve.service as service_module

    client = client_factory(signals={"inline": False, "flush_ms": 60_000})
    svc = client.app.state.service
    assert _post(client, hydra("slice", accounts=3, n_each=20)).status_code == 200
    monkeypatch.setattr(service_module, "SIGNAL_COMMIT_ROWS", 10)
    slices_per_commit: list[int] = []
    commit = svc.store.commit

    def counting_commit(c, decide=None):
        slices_per_commit.append(sum(1 for blob in c.blobs if blob[1] == "signals"))
        return commit(c, decide)

    monkeypatch.setattr(svc.store, "commit", counting_commit)
    assert svc.flush_signals() == 60
    assert slices_per_commit == [1] * 6
    windows = client.get("/v1/accounts/slice00", headers=READ).json()["windows"]["168h"]
    assert windows["signalled"] == 20


def test_metrics_are_prometheus_text(client):
    _post(client, normal_user("hana", 3))
    r = client.get("/metrics", headers=READ)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'distillguard_events_total{decision="allow"} 3' in text
    assert "# TYPE distillguard_batch_seconds histogram" in text
    assert 'distillguard_batch_seconds_bucket{le="+Inf"} 1' in text
    assert 'distillguard_http_requests_total{route="/v1/events",status="200"} 1' in text


def test_volume_limit_throttles_with_numbers_in_the_reason(client_factory):
    client = client_factory(limits={"requests": 5})
    assert {d["decision"] for d in _post(client, normal_user("ivan", 5)).json()["decisions"]} == {
        "allow"
    }
    more = [dict(e, request_id=e["request_id"] + "b") for e in normal_user("ivan", 1)]
    decisions = _post(client, more).json()["decisions"]
    assert {d["decision"] for d in decisions} == {"throttle"}
    assert "6 requests in 24 h (limit 5)" in decisions[0]["reasons"][0]
    assert json.loads(json.dumps(decisions))  # plain JSON


def test_litellm_logging_payloads_are_mapped_and_scored(client):
    def record(i: int, **changes):
        r = {
            "id": f"chatcmpl-{i}",
            "status": "success",
            "prompt_tokens": 31,
            "completion_tokens": 210,
            "startTime": 1770091506.789 + i,
            "model": "atlas-3",
            "end_user": "lite-user",
            "metadata": {"user_api_key_hash": "88dc28d0", "requester_ip_address": "81.2.69.160"},
            "model_parameters": {"max_tokens": 1024},
            "messages": [{"role": "user", "content": f"Write a haiku number {i}."}],
            "response": {"choices": [{"message": {"role": "assistant", "content": "..."}}]},
        }
        r.update(changes)
        return r

    records = [record(i) for i in range(3)] + [record(3, prompt_tokens=-1)]
    r = client.post("/v1/litellm", json={"records": records}, headers=WRITE)
    assert r.status_code == 200
    body = r.json()
    assert [d["request_id"] for d in body["decisions"]] == [
        "chatcmpl-0",
        "chatcmpl-1",
        "chatcmpl-2",
    ]
    assert [(x["index"], x["field"], x["reason"]) for x in body["rejected"]] == [
        (3, "input_tokens", "negative_tokens")
    ]
    view = client.get("/v1/accounts/lite-user", headers=READ).json()
    assert view["windows"]["168h"]["requests"] == 3
    assert view["windows"]["168h"]["distinct_ips"] == 1



def test_an_idle_service_stops_re_running_its_analysis_until_something_is_committed(
    client_factory,
):
    client = client_factory(signals={"inline": False, "flush_ms": 600_000})  # flushed below
    svc = client.app.state.service
    tick = svc._run_analysis_if_changed  # what the analysis loop does at each interval
    runs = svc.run_analysis
    ran: list[int] = []
    svc.run_analysis = lambda: ran.append(1) or runs()  # type: ignore[method-assign]
    assert tick()  # the first run
    assert not tick()  # nothing committed since
    cluster = hydra("idle", accounts=6, n_each=10)
    assert _post(client, cluster).status_code == 200
    assert tick()  # new events: a run (before their signal counts exist)
    assert [tick() for _ in range(3)] == [False] * 3  # idle: nothing in the window changed
    assert svc.flush_signals() == len(cluster)
    assert tick()  # the signal counts landed later: they get a run of their own
    assert not tick()
    assert _post(client, cluster).status_code == 200  # duplicates only: nothing committed
    assert not tick()
    assert len(ran) == 3
