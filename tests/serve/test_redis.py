from __future__ import annotations

import uuid

from fastapi.testclient import TestClient

from distillguard.serve.app import create_app
from tests.serve.conftest import READ, WRITE, make_config
from tests.serve.traffic import hydra, normal_user


def _replica(tmp_path, redis_url: str, prefix: str) -> TestClient:
    cfg = make_config(
        tmp_path, state={"backend": "redis", "redis_url": redis_url, "redis_prefix": prefix}
    )
    return TestClient(create_app(cfg))


def test_replicas_share_counts_and_idempotency(tmp_path, redis_url):
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    events = normal_user("ana", 6)
    with _replica(tmp_path, redis_url, prefix) as a, _replica(tmp_path, redis_url, prefix) as b:
        before = b.app.state.service.store.version()
        first = a.post("/v1/events", json={"events": events[:4]}, headers=WRITE).json()
        assert first["accepted"] == 4
        # B's analysis would see that A committed something (it runs only when so).
        assert b.app.state.service.store.version() != before
        # Replica B sees A's request ids as known and adds only the new ones.
        second = b.post("/v1/events", json={"events": events[2:]}, headers=WRITE).json()
        assert second["accepted"] == 2 and second["duplicates"] == 2
        by_id = {d["request_id"]: d["decision"] for d in first["decisions"]}
        for d in second["decisions"]:
            if d["duplicate"]:
                assert d["decision"] == by_id[d["request_id"]]
        view = a.get("/v1/accounts/ana", headers=READ).json()
        assert view["windows"]["168h"]["requests"] == 6
        assert view["windows"]["168h"]["distinct_ips"] == 1


def test_redis_backend_runs_the_analysis_and_survives_a_restart(tmp_path, redis_url):
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    users = [e for k in range(4) for e in normal_user(f"u{k}", 24, seed=k)]
    cluster = hydra("rh", accounts=8, n_each=25)
    with _replica(tmp_path, redis_url, prefix) as a:
        for i in range(0, len(users + cluster), 250):
            chunk = (users + cluster)[i : i + 250]
            assert a.post("/v1/events", json={"events": chunk}, headers=WRITE).status_code == 200
    with _replica(tmp_path, redis_url, prefix) as b:  # a new process: all state from Redis
        result = b.app.state.service.run_analysis()
        assert result is not None and len(result.campaigns) == 1
        assert result.campaigns[0]["accounts"] == 8
        view = b.get("/v1/accounts/rh03", headers=READ).json()
        assert view["windows"]["168h"]["requests"] == 25
        assert view["cluster"]["campaign_id"] == result.campaigns[0]["campaign_id"]
