"""Radioactivity: a student distilled from watermarked answers is caught, a control is not."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom, kstest

from distillguard.provenance.keys import WatermarkKey
from distillguard.provenance.radioactivity import (
    closed_mode_test,
    reading_mode_test,
    served_windows,
    soft_reading_mode_test,
    weighted_bernoulli_sf,
)
from distillguard.provenance.watermark import WatermarkConfig, WatermarkProcessor

CFG = WatermarkConfig(gamma=0.25, delta=3.0, context_width=1)
VOCAB = 60


def test_saddlepoint_tail_matches_exact_binomial_and_monte_carlo() -> None:
    ones = np.ones(2000)
    for t in (500, 560, 620):
        exact = binom.sf(t - 1, 2000, 0.25)
        assert abs(np.log(weighted_bernoulli_sf(t - 0.5, ones, 0.25) / exact)) < 0.05
    rng = np.random.default_rng(0)
    w = rng.dirichlet(np.ones(30), size=100).ravel()
    totals = (rng.random((20000, w.size)) < 0.25).astype(float) @ w
    for q in (0.9, 0.99):
        assert abs(weighted_bernoulli_sf(np.quantile(totals, q), w, 0.25) - (1 - q)) < 0.3 * (1 - q)


def _bigram_model(bias: np.ndarray) -> object:
    """A fake open-weights model: next-token logits depend only on the previous token."""

    def logits_fn(ids: np.ndarray) -> np.ndarray:
        return bias[ids]

    return logits_fn


def test_reading_modes_on_a_model_that_learnt_green_lists() -> None:
    key = WatermarkKey.from_seed(1)
    proc = WatermarkProcessor(key, CFG, VOCAB)
    rng = np.random.default_rng(0)
    base = rng.normal(0, 1, size=(VOCAB, VOCAB))
    # "radioactive" model: a small green preference learnt for every context
    learnt = base + 0.3 * proc.green_mask(np.arange(VOCAB)[:, None])
    probe = [list(rng.integers(0, VOCAB, 40)) for _ in range(100)]
    hot = reading_mode_test(_bigram_model(learnt), probe, proc.token_keys, key, CFG)
    cold = reading_mode_test(_bigram_model(base), probe, proc.token_keys, key, CFG)
    assert hot.p_value < cold.p_value and cold.p_value > 1e-3
    soft_hot = soft_reading_mode_test(_bigram_model(learnt), probe, proc.token_keys, key, CFG)
    soft_cold = soft_reading_mode_test(_bigram_model(base), probe, proc.token_keys, key, CFG)
    assert soft_hot.p_value < 1e-6 and soft_cold.p_value > 1e-3
    pvals = [
        soft_reading_mode_test(
            _bigram_model(base), probe, proc.token_keys, WatermarkKey.from_seed(50 + i), CFG
        ).p_value
        for i in range(60)
    ]
    assert kstest(pvals, "uniform").pvalue > 0.01


def test_closed_mode_window_filter_keeps_only_served_windows() -> None:
    key = WatermarkKey.from_seed(2)
    served = [np.arange(10, dtype=np.uint64)]
    allowed = served_windows(served, CFG.context_width)
    generated = [np.array([1, 2, 3, 50, 51, 52], dtype=np.uint64)]
    filtered = closed_mode_test(generated, key, CFG, allowed_windows=allowed)
    assert filtered.detection.n_scored == 3  # windows 1, 2 and 3 were served; 50, 51 were not
    assert closed_mode_test(generated, key, CFG).detection.n_scored == 5


def test_distilled_student_is_radioactive_and_control_is_not() -> None:
    pytest.importorskip("torch")
    from distillguard.provenance.experiment import ExperimentConfig, run_experiment

    result = run_experiment(
        ExperimentConfig(
            fractions=(1.0, 0.0),
            corpus_docs=1500,
            teacher_epochs=4.0,
            student_docs=1500,
            student_epochs=6.0,
            probe_docs=400,
            closed_samples=400,
            d_model=64,
            watermark=CFG,
            null_keys=60,
        )
    )
    assert result.teacher_wm_p < 1e-30  # the served answers themselves carry the mark
    assert result.teacher_plain_p > 1e-3
    student, control = result.students
    assert student.open_p < 1e-6 and student.soft_p < 1e-6 and student.closed_p < 1e-6
    assert control.open_p > 0.01 and control.soft_p > 0.01 and control.closed_p > 0.01
    # the control student's p-values under many unrelated keys are uniform
    assert result.control_null_ks_open > 0.01 and result.control_null_ks_closed > 0.01
    assert result.control_null_ks_soft > 0.01
