"""Radioactivity tests (Sander et al., 2024): was a suspect model trained on watermarked text?

Open weights ("reading mode"): feed the suspect probe texts, take its top-1 next-token
prediction at every position, and score green membership of (actual preceding window,
predicted token), each distinct tuple once. A student fine-tuned on watermarked answers
has learnt to prefer green tokens after the windows it saw, so its predictions are green
more often than `gamma`.

Closed API: score text the suspect generated (completion tokens only), each distinct
(window, token) once; optionally keep only windows that occur in the watermarked answers
the provider served (the "filter" of Sander et al., which concentrates the test on the
windows the student could have learnt from).

Validity: when the suspect and the probe texts do not depend on the key, every distinct
tuple is green with probability gamma independently, so the p-value is exact. Probe texts
must therefore *not* be watermarked with the key under test (use unwatermarked text such
as user prompts or any public text): a model that merely predicts a watermarked text well
would otherwise be credited with its green tokens. `null_calibration` checks this
empirically by re-running a test under random keys.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import kstest

from distillguard.provenance.keys import WatermarkKey
from distillguard.provenance.watermark import (
    Detection,
    GreenList,
    WatermarkConfig,
    score_windows,
    windows_of,
)

LogitsFn = Callable[[np.ndarray], np.ndarray]  # ids (B, T) -> logits (B, T, V)

_FILTER_SEED = np.uint64(0x5DEECE66D)


def reading_mode_rows(
    logits_fn: LogitsFn,
    probe_ids: Sequence[Sequence[int]],
    token_keys: np.ndarray,
    context_width: int,
    pad_id: int = 0,
    batch_size: int = 64,
) -> np.ndarray:
    """(n, k+1) token-key rows: k actual probe tokens, then the suspect's top-1 prediction."""
    k = context_width
    rows = []
    for start in range(0, len(probe_ids), batch_size):
        batch = [list(s) for s in probe_ids[start : start + batch_size]]
        t = max(len(s) for s in batch)
        ids = np.full((len(batch), t), pad_id, dtype=np.int64)
        lengths = np.array([len(s) for s in batch])
        for i, s in enumerate(batch):
            ids[i, : len(s)] = s
        top1 = np.asarray(logits_fn(ids)).argmax(axis=-1)  # (B, T): prediction for position t+1
        if t < k:
            continue
        # Window ending at position j (j = k-1 .. len-1) and the prediction made there.
        win = np.lib.stride_tricks.sliding_window_view(ids, k, axis=1)  # (B, t-k+1, k)
        pred = top1[:, k - 1 :]
        valid = np.arange(k - 1, t)[None, :] < lengths[:, None]
        rows.append(
            np.concatenate([token_keys[win[valid]], token_keys[pred[valid]][:, None]], axis=1)
        )
    if not rows:
        return np.zeros((0, k + 1), dtype=np.uint64)
    return np.concatenate(rows).astype(np.uint64)


def window_fingerprints(windows: np.ndarray) -> np.ndarray:
    """Unkeyed 64-bit fingerprint of each context window row (for the context filter)."""
    from distillguard.provenance.watermark import mix64

    windows = np.asarray(windows, dtype=np.uint64)
    h = np.full(windows.shape[0], _FILTER_SEED, dtype=np.uint64)
    for j in range(windows.shape[1]):
        h = mix64(h ^ mix64(windows[:, j]))
    return h


def served_windows(served: Sequence[np.ndarray], context_width: int) -> np.ndarray:
    """Fingerprints of the context windows in watermarked answers the provider served."""
    parts = [windows_of(s, context_width)[:, :-1] for s in served]
    if not parts:
        return np.zeros(0, dtype=np.uint64)
    return np.unique(window_fingerprints(np.concatenate(parts)))


def filter_rows(rows: np.ndarray, allowed_windows: np.ndarray | None) -> np.ndarray:
    if allowed_windows is None:
        return rows
    return rows[np.isin(window_fingerprints(rows[:, :-1]), allowed_windows)]


@dataclass(frozen=True)
class RadioactivityResult:
    mode: str  # "open" or "closed"
    detection: Detection

    @property
    def p_value(self) -> float:
        return self.detection.p_value


def reading_mode_test(
    logits_fn: LogitsFn,
    probe_ids: Sequence[Sequence[int]],
    token_keys: np.ndarray,
    key: WatermarkKey,
    config: WatermarkConfig,
    pad_id: int = 0,
    allowed_windows: np.ndarray | None = None,
) -> RadioactivityResult:
    """Open-weights test. `probe_ids` must not be watermarked with `key` (see module doc)."""
    rows = reading_mode_rows(logits_fn, probe_ids, token_keys, config.context_width, pad_id)
    return RadioactivityResult(
        "open", score_windows(filter_rows(rows, allowed_windows), key, config)
    )


def closed_mode_rows(
    generated: Sequence[np.ndarray], context_width: int, starts: Sequence[int] | None = None
) -> np.ndarray:
    """Token-key rows of generated sequences, skipping prompt tokens (`starts[i]`)."""
    parts = [
        windows_of(s, context_width, 0 if starts is None else starts[i])
        for i, s in enumerate(generated)
    ]
    if not parts:
        return np.zeros((0, context_width + 1), dtype=np.uint64)
    return np.concatenate(parts)


def closed_mode_test(
    generated: Sequence[np.ndarray],
    key: WatermarkKey,
    config: WatermarkConfig,
    starts: Sequence[int] | None = None,
    allowed_windows: np.ndarray | None = None,
) -> RadioactivityResult:
    """Closed-API test on token-key sequences the suspect generated."""
    rows = closed_mode_rows(generated, config.context_width, starts)
    return RadioactivityResult(
        "closed", score_windows(filter_rows(rows, allowed_windows), key, config)
    )


def null_calibration(
    rows: np.ndarray, config: WatermarkConfig, n_keys: int = 100, seed: int = 12345
) -> tuple[np.ndarray, float]:
    """p-values of the same scored rows under `n_keys` unrelated keys, and their KS p-value.

    Under the null these p-values are (super-)uniform; a small KS p-value would mean the
    test is miscalibrated for this kind of text.
    """
    pvals = np.array(
        [
            score_windows(rows, WatermarkKey.from_seed(seed + i), config).p_value
            for i in range(n_keys)
        ]
    )
    return pvals, float(kstest(pvals, "uniform").pvalue)


def weighted_bernoulli_sf(total: float, weights: np.ndarray, gamma: float) -> float:
    """P[sum_i w_i B_i >= total], B_i iid Bernoulli(gamma): Lugannani-Rice saddlepoint.

    Accurate far into the tail (relative error of a few percent at p ~ 1e-10) for sums of
    many small non-lattice weights, which is what the soft reading mode produces.
    """
    from scipy.optimize import brentq
    from scipy.stats import norm

    w = np.asarray(weights, dtype=np.float64)
    w = w[w > 0]
    mean = gamma * w.sum()
    var = gamma * (1 - gamma) * float((w * w).sum())
    if var == 0.0:
        return 1.0 if total <= mean else 0.0
    if total >= w.sum():
        return float(gamma ** len(w)) if total == w.sum() else 0.0
    if abs(total - mean) < 1e-6 * np.sqrt(var):
        return 0.5

    def q_of(s: float) -> np.ndarray:  # tilted success probabilities, overflow-safe
        return 1.0 / (1.0 + (1 - gamma) / gamma * np.exp(-s * w))

    def k(s: float) -> float:
        return float(np.sum(np.logaddexp(np.log1p(-gamma), np.log(gamma) + s * w)))

    def k1(s: float) -> float:
        return float(np.sum(w * q_of(s)))

    lo, hi = -1.0, 1.0
    while k1(lo) > total:
        lo *= 2
    while k1(hi) < total:
        hi *= 2
    s = brentq(lambda x: k1(x) - total, lo, hi, xtol=1e-14)
    q = q_of(s)
    k2 = float(np.sum(w * w * q * (1 - q)))
    r = np.sign(s) * np.sqrt(max(2.0 * (s * total - k(s)), 0.0))
    u = s * np.sqrt(k2)
    if abs(r) < 1e-8 or abs(u) < 1e-8:
        return float(norm.sf((total - mean) / np.sqrt(var)))
    p = float(norm.sf(r) + norm.pdf(r) * (1.0 / u - 1.0 / r))
    return min(max(p, 0.0), 1.0)


@dataclass(frozen=True)
class SoftDetection:
    n_windows: int  # distinct context windows scored
    green_mass: float  # sum over windows of the suspect's probability on green tokens
    expected: float  # gamma * n_windows
    z: float
    p_value: float


@dataclass(frozen=True)
class NextTokenProfile:
    """The suspect's mean next-token distribution after each distinct probe window."""

    windows: np.ndarray  # (C, k) token keys
    probs: np.ndarray  # (C, V) mean next-token probabilities


def soft_reading_mode_test(
    logits_fn: LogitsFn,
    probe_ids: Sequence[Sequence[int]],
    token_keys: np.ndarray,
    key: WatermarkKey,
    config: WatermarkConfig,
    pad_id: int = 0,
    max_concentration: float = 0.5,
    batch_size: int = 64,
) -> SoftDetection:
    """Open-weights test on the suspect's whole next-token distribution (not only top-1).

    For each distinct context window in the probe, average the suspect's next-token
    distribution over the window's occurrences, and add up its mass on the window's green
    list. Near-deterministic windows (sum of squared probabilities > max_concentration)
    carry no watermark signal, only noise, and are skipped (a key-independent choice). Each
    (window, token) pair enters once with weight = its probability, so under the null the
    statistic is a weighted sum of iid Bernoulli(gamma); its tail is computed with a
    saddlepoint approximation (validated against uniformity in the tests).
    Memory is (distinct windows x vocabulary): meant for small vocabularies.
    """
    profile = next_token_profile(logits_fn, probe_ids, token_keys, config, pad_id, batch_size)
    return soft_score(profile, token_keys, key, config, max_concentration)


def next_token_profile(
    logits_fn: LogitsFn,
    probe_ids: Sequence[Sequence[int]],
    token_keys: np.ndarray,
    config: WatermarkConfig,
    pad_id: int = 0,
    batch_size: int = 64,
) -> NextTokenProfile:
    """Run the suspect once over the probe (key-independent; reusable for many keys)."""
    k = config.context_width
    rows: list[np.ndarray] = []
    accum: list[np.ndarray] = []
    for start in range(0, len(probe_ids), batch_size):
        batch = [list(s) for s in probe_ids[start : start + batch_size]]
        t = max(len(s) for s in batch)
        if t < k:
            continue
        ids = np.full((len(batch), t), pad_id, dtype=np.int64)
        lengths = np.array([len(s) for s in batch])
        for i, s in enumerate(batch):
            ids[i, : len(s)] = s
        logits = np.asarray(logits_fn(ids), dtype=np.float64)[:, k - 1 :]
        probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
        probs /= probs.sum(axis=-1, keepdims=True)
        win = np.lib.stride_tricks.sliding_window_view(ids, k, axis=1)
        valid = np.arange(k - 1, t)[None, :] < lengths[:, None]
        rows.append(token_keys[win[valid]])
        accum.append(probs[valid])
    if not rows:
        return NextTokenProfile(np.zeros((0, k), np.uint64), np.zeros((0, len(token_keys))))
    windows = np.concatenate(rows).astype(np.uint64)
    probs = np.concatenate(accum)
    uniq, inverse = np.unique(windows, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    mean = np.zeros((len(uniq), probs.shape[1]))
    np.add.at(mean, inverse, probs)
    mean /= np.bincount(inverse, minlength=len(uniq))[:, None]
    return NextTokenProfile(uniq, mean)


def soft_score(
    profile: NextTokenProfile,
    token_keys: np.ndarray,
    key: WatermarkKey,
    config: WatermarkConfig,
    max_concentration: float = 0.5,
) -> SoftDetection:
    """Green probability mass of a profile under `key`, with its null tail probability."""
    uniq, mean = profile.windows, profile.probs
    keep = (mean * mean).sum(axis=1) <= max_concentration
    uniq, mean = uniq[keep], mean[keep]
    green = GreenList(key, config)
    mask = green.is_green(green.context_hash(uniq)[:, None], green.token_part(token_keys)[None, :])
    mass = float((mean * mask).sum())
    expected = config.gamma * float(mean.sum())
    var = config.gamma * (1 - config.gamma) * float((mean * mean).sum())
    z = (mass - expected) / np.sqrt(var) if var > 0 else 0.0
    p = weighted_bernoulli_sf(mass, mean.reshape(-1), config.gamma) if len(uniq) else 1.0
    return SoftDetection(len(uniq), mass, expected, float(z), p)
