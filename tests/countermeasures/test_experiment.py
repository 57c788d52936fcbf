"""Reduced countermeasures experiment (the full one is bench/countermeasures.py).

2-digit addition, tiny transformers, one seed: a few seconds of training per model. Asserts
the direction with margins: a student distilled from raw teacher traces learns the task, one
distilled from answers whose reasoning was withheld stays near the no-teacher baseline (closes at
most half of the gap), one from summarised traces is worse than the raw one, and the
user-visible answers are unchanged; antidistillation sampling at a large lambda poisons the
traces (and, as the bench shows, the teacher's own answers).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from distillguard.countermeasures.experiment import (  # noqa: E402
    CharVocab,
    CMExperimentConfig,
    full_text,
    make_problems,
    run_countermeasure_experiment,
    split_output,
    trace_correct,
)

CFG = CMExperimentConfig(
    digits=2,
    teacher_examples=4000,
    teacher_epochs=10.0,  # 1250 steps of 32
    teacher_d_model=64,
    distill_examples=1000,
    student_epochs=24.0,  # 750 steps of 32
    proxy_examples=300,
    proxy_epochs=6.0,
    heldout_examples=128,
    test_examples=300,
    lams=(30.0,),
    batch_size=32,
    answer_key=False,
    withheld=True,
    seed=0,
)


@pytest.fixture(scope="module")
def result():
    return run_countermeasure_experiment(CFG)


def test_ground_truth_traces_check_out_and_corruption_is_caught():
    rng = np.random.default_rng(5)
    p = make_problems(200, 3, rng)
    traces = p.traces(rng)
    assert trace_correct(traces) == 1.0
    broken = [t[:-1] + str((int(t[-1]) + 1) % 10) for t in traces]
    assert trace_correct(broken) == 0.0
    vocab = CharVocab()
    text = full_text(p.prompts()[0], traces[0], p.answers()[0])
    assert vocab.decode(vocab.encode(text)[1:]) == text
    assert split_output(text.split("=", 1)[1]) == (traces[0], p.answers()[0])


def test_withheld_reasoning_keeps_answers_and_starves_the_student(result):
    raw, withheld = result.row("raw"), result.row("withheld")
    assert result.teacher_greedy_acc >= 0.6  # the teacher learnt to reason
    assert withheld.teacher_visible_acc == raw.teacher_visible_acc  # the user's answers unchanged
    assert raw.student_acc >= 0.3  # distilling the raw traces works...
    assert result.gap_closed(withheld) <= 0.5  # ...answers alone close at most half the gap
    assert withheld.student_acc <= raw.student_acc - 0.2


def test_summarised_reasoning_keeps_answers_and_hurts_the_student(result):
    # With 2 digits a one-line summary is half the trace (the bench uses 3 digits, where the
    # summary closes under 5% of the gap); here only the direction is asserted.
    raw, summ = result.row("raw"), result.row("summarised")
    assert summ.teacher_visible_acc == raw.teacher_visible_acc
    assert summ.student_acc <= raw.student_acc - 0.05


def test_antidistillation_poisons_the_traces(result):
    raw, anti = result.row("raw"), result.row("antidistillation", 30.0)
    assert anti.trace_correct <= raw.trace_correct - 0.1
    assert anti.student_acc <= raw.student_acc - 0.1
