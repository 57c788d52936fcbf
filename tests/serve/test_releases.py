"""Model releases from the config feed the live adoption-lag indicator."""

from __future__ import annotations

import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from distillguard.errors import UserError
from distillguard.serve.app import create_app
from distillguard.serve.config import release_times
from tests.serve.conftest import READ, WRITE, make_config
from tests.serve.traffic import CASUAL, MINUTE, T0, event

HOUR = 3_600_000
REASON = "used a newly released model"


def _events(account: str, model: str, start: int) -> list[dict]:
    """Six ordinary requests a minute apart from `start`."""
    return [
        dict(event(f"{account}-{i}", account, start + i * MINUTE, "81.2.1.11", CASUAL[i]),
             model=model)
        for i in range(6)
    ]  # fmt: skip


def _reasons(client, events: list[dict]) -> list[str]:
    r = client.post("/v1/events", json={"events": events}, headers=WRITE)
    assert r.status_code == 200, r.text
    return r.json()["decisions"][-1]["reasons"]


RELEASES = {"models": [{"model": "atlas-4", "released_at": "2026-01-01T10:00:00Z"}]}


def test_fast_adopter_gets_the_reason_and_a_late_one_does_not(client_factory):
    _check_adoption(client_factory(releases=RELEASES))


def test_adoption_lag_with_the_redis_backend(tmp_path, redis_url):
    state = {
        "backend": "redis",
        "redis_url": redis_url,
        "redis_prefix": f"r{uuid.uuid4().hex[:8]}:",
    }
    cfg = make_config(tmp_path, state=state, releases=RELEASES)
    with TestClient(create_app(cfg)) as client:
        _check_adoption(client)


def _check_adoption(client) -> None:
    released = T0 + 10 * HOUR
    fast = _reasons(client, _events("early", "atlas-4", released + 2 * HOUR))
    assert any(r.startswith(f"{REASON} 2 h after release") for r in fast), fast
    # 5 days after the release: past the indicator's 96 h ramp, so no reason.
    late = _reasons(client, _events("late", "atlas-4", released + 120 * HOUR))
    assert not any(REASON in r for r in late), late
    # The old model has no release time: its users are never "fast adopters".
    old = _reasons(client, _events("steady", "atlas-3", released + 121 * HOUR))
    assert not any(REASON in r for r in old), old
    view = client.get("/v1/accounts/early", headers=READ).json()
    assert view["windows"]["168h"]["distinct_models"] == 1


def test_without_releases_the_indicator_stays_silent(client):
    reasons = _reasons(client, _events("early", "atlas-4", T0 + 2 * HOUR))
    assert not any(REASON in r for r in reasons)


def test_release_times_from_entries_and_a_parquet_file(tmp_path):
    path = tmp_path / "releases.parquet"
    pq.write_table(
        pa.table(
            {
                "model": ["atlas-4", "atlas-5"],
                "released_at": pa.array([T0, T0 + HOUR], pa.timestamp("ms", "UTC")),
            }
        ),
        path,
    )
    cfg = make_config(
        tmp_path,
        releases={"models": [{"model": "atlas-4", "released_at": T0 - HOUR}], "file": str(path)},
    )
    assert release_times(cfg) == {"atlas-4": T0 - HOUR, "atlas-5": T0 + HOUR}
    bad = make_config(tmp_path, releases={"models": [{"model": "x", "released_at": "soon"}]})
    with pytest.raises(UserError, match="released_at"):
        release_times(bad)
