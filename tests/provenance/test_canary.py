"""Canary answers: meaning kept, keyed and deterministic, and the check's power and validity."""

from __future__ import annotations

import numpy as np
from scipy.stats import kstest

from distillguard.provenance.canary import (
    canary_check,
    canonical_form,
    find_slots,
    make_canary,
    poisson_binomial_sf,
)
from distillguard.provenance.keys import WatermarkKey

TEMPLATES = (
    "First, make sure you do not {verb} the {thing}. For example, it is wise to choose a large "
    "{thing}; however, it cannot be {adj}.\n- check the {thing}\n- {verb} it quickly\n"
    "In addition, you will need several {thing}s. Finally, it's {adj}, that is, {adj} enough.",
    "It is {adj} to {verb} the {thing} in order to stay {adj}. Therefore you do not need many "
    "{thing}s.\n1. {verb} the {thing}\n2. choose a big one\nIn summary, it isn't {adj}; "
    "also, roughly half of them are {adj}.",
)
WORDS = {
    "verb": ["restart", "inspect", "resize", "clean", "update", "copy"],
    "thing": ["server", "cache", "table", "index", "queue", "bucket"],
    "adj": ["safe", "slow", "cheap", "useful", "fragile", "stable"],
}


def _qa(n: int) -> list[tuple[str, str]]:
    rng = np.random.default_rng(0)
    pairs = []
    for i in range(n):
        template = TEMPLATES[i % len(TEMPLATES)]
        answer = template.format(**{k: v[int(rng.integers(len(v)))] for k, v in WORDS.items()})
        pairs.append((f"question {i}: how do I handle it?", answer))
    return pairs


def test_variants_keep_meaning_and_are_keyed() -> None:
    prompt, answer = _qa(1)[0]
    a1 = make_canary(prompt, answer, WatermarkKey.from_seed(1))
    a1_again = make_canary(prompt, answer, WatermarkKey.from_seed(1))
    a2 = make_canary(prompt, answer, WatermarkKey.from_seed(2))
    assert a1.text == a1_again.text  # deterministic per key
    assert a1.text != a2.text  # distinct across keys
    assert len(a1.slots) >= 12
    for variant in (a1.text, a2.text):  # only equivalent phrasings were swapped
        assert canonical_form(variant) == canonical_form(answer)
    # the canary's own slots read back as the keyed choices
    assert next(s for _, _, s in find_slots(a1.text)).variant == a1.slots[0].variant
    # different prompts get different choices under the same key
    other = make_canary("another question", answer, WatermarkKey.from_seed(1))
    assert other.text != a1.text


def test_check_detects_memorised_canaries_only() -> None:
    key = WatermarkKey.from_seed(3)
    qa = _qa(40)
    served = {p: make_canary(p, a, key).text for p, a in qa}
    original = dict(qa)
    memorised = canary_check(served.__getitem__, served, key)
    assert memorised.p_value < 1e-20 and memorised.match_rate == 1.0
    innocent = canary_check(original.__getitem__, served, key)  # answers in its own style
    assert innocent.p_value > 0.01
    assert 0.3 < innocent.chance_rate < 0.6
    # partly learnt (half the prompts) is still detected
    half = {p: (served[p] if i % 2 else original[p]) for i, p in enumerate(served)}
    assert canary_check(half.__getitem__, served, key).p_value < 1e-6


def test_check_p_values_uniform_for_unrelated_models() -> None:
    qa = _qa(30)
    served_other_key = {p: make_canary(p, a, WatermarkKey.from_seed(999)).text for p, a in qa}
    pvals = [
        canary_check(
            served_other_key.__getitem__, served_other_key, WatermarkKey.from_seed(i)
        ).p_value
        for i in range(80)
    ]
    # discrete p-values are super-uniform; a KS test against uniform must not reject
    assert kstest(pvals, "uniform", alternative="greater").pvalue > 0.01
    assert np.mean(np.array(pvals) < 0.05) < 0.15


def test_poisson_binomial_tail() -> None:
    assert abs(poisson_binomial_sf(0, {0.5: 3}) - 1.0) < 1e-12
    assert abs(poisson_binomial_sf(3, {0.5: 3}) - 0.125) < 1e-12
    assert abs(poisson_binomial_sf(2, {0.5: 1, 0.25: 1}) - 0.125) < 1e-12
