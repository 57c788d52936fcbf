"""Shared machinery of the prompt-wording signals (cot, rubric, censor, training_shaped)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from distillguard.signals.text import prompt_text


def texts_flagged(batch: pa.RecordBatch, gate: str, pattern: str) -> tuple[np.ndarray, object]:
    """Per distinct masked prompt: does it match `pattern`? Returns (flags, PromptText).

    Only texts holding a word that matches `gate` (a cheap regex over the batch vocabulary)
    are scanned with `pattern`, so diverse chat without any trigger word costs one vocabulary
    pass instead of one full-text regex pass.
    """
    pt = prompt_text(batch)
    gated = pt.texts_with_word(pt.vocab_matches(gate))
    return pt.texts_matching(pattern, gated), pt


def rows_flagged(batch: pa.RecordBatch, gate: str, pattern: str) -> np.ndarray:
    """Bool per row: the row's masked prompt matches `pattern` (see texts_flagged)."""
    flags, pt = texts_flagged(batch, gate, pattern)
    return pt.to_rows(flags, False)
