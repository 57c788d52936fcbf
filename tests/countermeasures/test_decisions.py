"""The service's decisions name the countermeasures; `allow` never carries any."""

from __future__ import annotations

import numpy as np
import pytest

from distillguard.errors import UserError
from distillguard.serve.config import load_config
from distillguard.serve.decide import Policy, _chosen_measures
from tests.serve.conftest import WRITE, client_factory  # noqa: F401  (fixture)
from tests.serve.traffic import normal_user


def _policy(**measures: float) -> Policy:
    raw = load_config(None, {"auth": {"disabled": True}}).raw
    return Policy.from_config({**raw, "countermeasures": measures})


def test_default_config_names_every_measure_with_thresholds_in_order():
    p = Policy.from_config(load_config(None, {"auth": {"disabled": True}}).raw)
    names = [n for n, _ in p.measures]
    assert set(names) == {"summarise_reasoning", "caps", "watermark", "canary", "antidistillation"}
    assert all(p.throttle <= t for _, t in p.measures)


def test_measures_follow_thresholds_and_never_apply_to_allow():
    p = _policy(a=0.35, b=0.5, off=1.5)
    risk = np.array([0.0, 0.34, 0.35, 0.6, 1.0])
    labels = np.array([0, 0, 1, 2, 3])
    chosen = _chosen_measures(risk, labels, p)
    assert chosen.tolist() == [
        [False, False, False],
        [False, False, False],
        [True, False, False],
        [True, True, False],
        [True, True, False],
    ]
    # a misconfigured threshold below `throttle` still never reaches an allow decision
    low = _policy(a=0.0)
    assert not _chosen_measures(np.array([0.1]), np.array([0]), low).any()


def test_bad_threshold_is_a_user_error():
    with pytest.raises(UserError):
        _policy(a=-0.1)
    with pytest.raises(UserError):
        _policy(a="high")  # type: ignore[arg-type]


def test_service_decisions_carry_the_list(client_factory):  # noqa: F811
    allow_client = client_factory()
    body = allow_client.post("/v1/events", json={"events": normal_user("ana", 3)}, headers=WRITE)
    decisions = body.json()["decisions"]
    assert {d["decision"] for d in decisions} == {"allow"}
    assert all(d["countermeasures"] == [] for d in decisions)

    strict = client_factory(
        decisions={"throttle": 0.0, "challenge": 0.9, "block": 1.0},
        countermeasures={"summarise_reasoning": 0.0, "antidistillation": 1.1},
    )
    body = strict.post("/v1/events", json={"events": normal_user("bo", 3)}, headers=WRITE)
    decisions = body.json()["decisions"]
    assert {d["decision"] for d in decisions} == {"throttle"}
    assert all(d["countermeasures"] == ["summarise_reasoning"] for d in decisions)
