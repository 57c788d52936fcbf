"""Indicator helpers: the fast ramp and NaN filling keep the meaning of their NumPy originals."""

from __future__ import annotations

import numpy as np

from distillguard.scoring.indicators import ACCOUNT_INDICATORS, filled, noisy_or, ramp

EDGES = np.array([np.nan, -np.inf, np.inf, -5.0, 0.0, 0.1, 0.15, 0.3, 0.45, 0.6, 0.61, 7.0, 1e308])


def _reference_ramp(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.clip((np.nan_to_num(x.astype(float), nan=lo) - lo) / (hi - lo), 0.0, 1.0)


def test_ramp_matches_the_nan_to_num_definition_on_nan_infinities_and_bounds() -> None:
    rng = np.random.default_rng(7)
    x = np.concatenate([EDGES, rng.normal(0.3, 0.5, 500)])
    for lo, hi in [(0.15, 0.6), (0.0, 1.0), (3.0, 30.0), (4.1, 4.45)]:
        np.testing.assert_array_equal(ramp(x, lo, hi), _reference_ramp(x, lo, hi))


def test_filled_replaces_only_nan() -> None:
    out = filled(EDGES, 999.0)
    assert out[0] == 999.0
    np.testing.assert_array_equal(out[1:], EDGES[1:])
    assert filled(np.array([1, 2], dtype=np.int64), 0.0).dtype == float


def test_account_indicators_score_nan_columns_as_no_evidence() -> None:
    # An account the live state knows nothing about (every column NaN) scores zero.
    cols = {name: np.full(3, np.nan) for name in _column_names()}
    score, contrib = noisy_or(ACCOUNT_INDICATORS, cols, 3)
    np.testing.assert_array_equal(contrib, np.zeros_like(contrib))
    np.testing.assert_array_equal(score, np.zeros(3))


def _column_names() -> list[str]:
    return [
        "requests", "output_tokens", "cot_share", "rubric_share", "censor_share",
        "train_shaped_share", "ips", "subnets", "ips_per_request", "home_ips",
        "home_ips_per_request", "anon_share", "proxy_share", "vpn_share", "hosted_share",
        "top_template_share", "templates", "followup_share", "hour_entropy", "age_days",
        "disposable", "adopt_lag_h",
    ]  # fmt: skip
