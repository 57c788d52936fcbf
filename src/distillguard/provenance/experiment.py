"""End-to-end radioactivity experiment on CPU (needs torch): teacher -> watermarked samples
-> distilled students -> tests. Shared by `tests/provenance` (small) and `bench/provenance.py`.

1. Train a tiny teacher LM on the synthetic corpus.
2. Sample answers from the teacher with the watermark on, and unwatermarked answers.
3. Distil students from scratch on a fixed number of answers, a fraction of them watermarked.
4. A control student gets only unwatermarked answers from the same teacher.
5. Test every student in open mode (reading mode on unwatermarked probe text) and closed
   mode (its own generations), with dedup; calibrate the control under random keys.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kstest

from distillguard.errors import UserError
from distillguard.provenance.corpus import synthetic_corpus
from distillguard.provenance.keys import WatermarkKey
from distillguard.provenance.radioactivity import (
    closed_mode_rows,
    closed_mode_test,
    next_token_profile,
    null_calibration,
    reading_mode_rows,
    reading_mode_test,
    soft_score,
)
from distillguard.provenance.tinylm import (
    TinyLM,
    TinyLMConfig,
    load_model,
    logits_fn,
    sample,
    save_model,
    train_lm,
)
from distillguard.provenance.tokenizer import WordVocab
from distillguard.provenance.watermark import WatermarkConfig, WatermarkProcessor, detect_ids


@dataclass(frozen=True)
class ExperimentConfig:
    fractions: tuple[float, ...] = (1.0, 0.0)  # 0.0 is the control student
    corpus_docs: int = 3000
    teacher_epochs: float = 4.0
    student_docs: int = 3000
    student_epochs: float = 4.0
    probe_docs: int = 1000
    closed_samples: int = 1000
    d_model: int = 64
    n_layers: int = 1
    arch: str = "gru"
    lr: float = 5e-3
    watermark: WatermarkConfig = field(default_factory=lambda: WatermarkConfig(0.25, 3.0, 2))
    seed: int = 0
    threads: int = 1
    null_keys: int = 60
    save_dir: str | None = None  # keep the trained models (TinyLM files) for later tests
    teacher_path: str | None = None  # reuse a saved teacher (its corpus settings must match)
    student_d_model: int | None = None  # default: same as the teacher
    student_tied: bool = True  # False: untied output layer for the students


@dataclass
class StudentResult:
    fraction: float
    open_p: float
    open_z: float
    open_scored: int
    closed_p: float
    closed_z: float
    closed_scored: int
    soft_p: float
    soft_z: float
    soft_windows: int


@dataclass
class ExperimentResult:
    teacher_wm_p: float  # detection on the watermarked teacher answers themselves
    teacher_plain_p: float
    students: list[StudentResult]
    control_null_ks_open: float  # KS p-value of control p-values under random keys
    control_null_ks_closed: float
    control_null_ks_soft: float
    control_null_pvalues_open: np.ndarray
    seconds: dict[str, float]


def _student_mix(
    wm: Sequence[list[int]], plain: Sequence[list[int]], n: int, fraction: float, seed: int
) -> list[list[int]]:
    n_wm = round(n * fraction)
    mix = list(wm[:n_wm]) + list(plain[: n - n_wm])
    order = np.random.default_rng(seed).permutation(len(mix))
    return [mix[i] for i in order]


def run_experiment(
    cfg: ExperimentConfig, log: Callable[[str], None] | None = None
) -> ExperimentResult:
    import time

    say = log or (lambda _msg: None)
    torch.set_num_threads(cfg.threads)
    clock: dict[str, float] = {}
    t0 = time.perf_counter()
    key = WatermarkKey.from_seed(cfg.seed + 1000, "experiment")
    corpus = synthetic_corpus(cfg.corpus_docs + cfg.probe_docs, seed=cfg.seed)
    vocab = WordVocab.from_texts(corpus)
    train_ids = [vocab.encode(t) for t in corpus[: cfg.corpus_docs]]
    probe_ids = [vocab.encode(t, add_eos=False) for t in corpus[cfg.corpus_docs :]]
    lm_cfg = TinyLMConfig(len(vocab), cfg.d_model, cfg.n_layers, max_len=64, arch=cfg.arch)

    torch.manual_seed(cfg.seed)
    if cfg.teacher_path:
        teacher, saved_vocab = load_model(Path(cfg.teacher_path))
        if saved_vocab.itos != vocab.itos:
            raise UserError(f"{cfg.teacher_path} was trained on a different corpus vocabulary")
        losses = [float("nan")]
    else:
        teacher = TinyLM(lm_cfg)
        losses = train_lm(
            teacher, train_ids, vocab.pad_id, cfg.teacher_epochs, lr=cfg.lr, seed=cfg.seed
        )
    student_cfg = TinyLMConfig(
        len(vocab),
        cfg.student_d_model or cfg.d_model,
        cfg.n_layers,
        max_len=64,
        arch=cfg.arch,
        tie_embeddings=cfg.student_tied,
    )
    clock["teacher"] = time.perf_counter() - t0
    if cfg.save_dir:
        Path(cfg.save_dir).mkdir(parents=True, exist_ok=True)
        save_model(Path(cfg.save_dir) / "teacher.pt", teacher, vocab)
    say(f"teacher trained in {clock['teacher']:.1f}s, final loss {np.mean(losses[-10:]):.3f}")

    t1 = time.perf_counter()
    proc = WatermarkProcessor(key, cfg.watermark, len(vocab), vocab.token_keys)
    wm = sample(teacher, vocab, cfg.student_docs, watermark=proc, seed=cfg.seed + 1)
    plain = sample(teacher, vocab, cfg.student_docs, seed=cfg.seed + 2)
    clock["sampling"] = time.perf_counter() - t1
    teacher_wm = detect_ids(wm, vocab.token_keys, key, cfg.watermark)
    teacher_plain = detect_ids(plain, vocab.token_keys, key, cfg.watermark)
    say(
        f"teacher answers: watermarked p={teacher_wm.p_value:.2e}, "
        f"plain p={teacher_plain.p_value:.3f}"
    )

    students = []
    control_rows_open = control_rows_closed = None
    for i, fraction in enumerate(cfg.fractions):
        t2 = time.perf_counter()
        data = _student_mix(wm, plain, cfg.student_docs, fraction, cfg.seed + 10 + i)
        torch.manual_seed(cfg.seed + 100 + i)
        student = TinyLM(student_cfg)
        losses = train_lm(
            student, data, vocab.pad_id, cfg.student_epochs, lr=cfg.lr, seed=cfg.seed + 100 + i
        )
        fn = logits_fn(student)
        opened = reading_mode_test(
            fn, probe_ids, vocab.token_keys, key, cfg.watermark, vocab.pad_id
        )
        profile = next_token_profile(fn, probe_ids, vocab.token_keys, cfg.watermark, vocab.pad_id)
        soft = soft_score(profile, vocab.token_keys, key, cfg.watermark)
        if cfg.save_dir:
            save_model(Path(cfg.save_dir) / f"student_{fraction:g}.pt", student, vocab)
        generated = sample(student, vocab, cfg.closed_samples, seed=cfg.seed + 200 + i)
        gen_keys = [vocab.token_keys[np.asarray(g)] for g in generated]
        closed = closed_mode_test(gen_keys, key, cfg.watermark)
        students.append(
            StudentResult(
                fraction,
                opened.p_value,
                opened.detection.z,
                opened.detection.n_scored,
                closed.p_value,
                closed.detection.z,
                closed.detection.n_scored,
                soft.p_value,
                soft.z,
                soft.n_windows,
            )
        )
        clock[f"student_{fraction:g}"] = time.perf_counter() - t2
        say(
            f"student {fraction:.0%}: open p={opened.p_value:.2e} (z={opened.detection.z:.2f}, "
            f"n={opened.detection.n_scored}); closed p={closed.p_value:.2e} "
            f"(z={closed.detection.z:.2f}, n={closed.detection.n_scored}); "
            f"soft p={soft.p_value:.2e} (z={soft.z:.2f}, n={soft.n_windows}) "
            f"[{clock[f'student_{fraction:g}']:.1f}s, loss {np.mean(losses[-10:]):.3f}]"
        )
        if fraction == 0.0:
            k = cfg.watermark.context_width
            control_rows_open = reading_mode_rows(fn, probe_ids, vocab.token_keys, k, vocab.pad_id)
            control_rows_closed = closed_mode_rows(gen_keys, k)
            control_profile = profile

    ks_open = ks_closed = ks_soft = float("nan")
    null_open = np.zeros(0)
    if control_rows_open is not None and control_rows_closed is not None:
        null_open, ks_open = null_calibration(control_rows_open, cfg.watermark, cfg.null_keys)
        _, ks_closed = null_calibration(control_rows_closed, cfg.watermark, cfg.null_keys)
        soft_null = [
            soft_score(
                control_profile, vocab.token_keys, WatermarkKey.from_seed(777 + j), cfg.watermark
            ).p_value
            for j in range(cfg.null_keys)
        ]
        ks_soft = float(kstest(soft_null, "uniform").pvalue)
    clock["total"] = time.perf_counter() - t0
    return ExperimentResult(
        teacher_wm.p_value,
        teacher_plain.p_value,
        students,
        ks_open,
        ks_closed,
        ks_soft,
        null_open,
        clock,
    )
