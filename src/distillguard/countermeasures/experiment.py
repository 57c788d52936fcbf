"""Does a countermeasure make a teacher's outputs worthless for distillation? (needs torch)

Shared by `bench/countermeasures.py` (full size) and `tests/countermeasures` (reduced).

Task: D-digit addition with checkable answers, where reasoning helps. A prompt `0472+3859=`
is answered by a carry trace, one column per line from the least significant digit
(`290=11`: the two digits, the carry in, `=`, the two-digit column sum), then `|` and the
(D+1)-digit sum (`04331`). Each line may write its two digits in either order (the ground
truth picks at random), so the teacher's traces have some freedom of wording, like real ones.

1. A teacher (tiny causal transformer) is trained on ground-truth traces.
2. It answers the distillation prompts by sampling (temperature 1). What the user sees:
   (a) raw: the trace and the answer;
   (b) summarised: `gate.apply` with `summarise_reasoning` (the library's extractive summary);
   (c) antidistillation: the teacher samples through `AntidistillationHook` with a proxy
       student perturbed along the gradient of its loss on held-out correct traces.
3. Students (from scratch) are trained on each served set; also an untrained student (the
   no-teacher baseline) and an answer-key student (same prompts, correct final answers, no
   reasoning: what an attacker gets without any teacher reasoning).
4. Reported: each student's accuracy (greedy, held-out prompts), and the teacher's final-answer
   accuracy as the user sees it under each measure.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from distillguard.countermeasures.antidistillation import (
    AntidistillationConfig,
    AntidistillationHook,
    next_logits_fn,
    perturbed_proxy,
)
from distillguard.countermeasures.gate import ServedResponse, Settings, apply
from distillguard.countermeasures.reasoning import WITHHELD_NOTE, ExtractiveSummariser
from distillguard.provenance.tinylm import TinyLM, TinyLMConfig, pad_batch, train_lm

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
CHARS = list("0123456789+=|\n")
SUMMARY_DECISION = {"decision": "challenge", "countermeasures": ["summarise_reasoning"]}


class CharVocab:
    """Characters of the addition task plus pad/bos/eos."""

    def __init__(self) -> None:
        self.itos = [PAD, BOS, EOS, *CHARS]
        self.stoi = {c: i for i, c in enumerate(self.itos)}
        self.pad_id, self.bos_id, self.eos_id = 0, 1, 2

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str, bos: bool = True, eos: bool = True) -> list[int]:
        ids = [self.stoi[c] for c in text]
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

    def decode(self, ids: Sequence[int]) -> str:
        out = []
        for i in ids:
            if i == self.eos_id:
                break
            if i >= 3:
                out.append(self.itos[i])
        return "".join(out)


@dataclass(frozen=True)
class Problems:
    a: np.ndarray
    b: np.ndarray
    digits: int

    def prompts(self) -> list[str]:
        d = self.digits
        return [f"{x:0{d}d}+{y:0{d}d}=" for x, y in zip(self.a, self.b, strict=True)]

    def answers(self) -> list[str]:
        return [f"{s:0{self.digits + 1}d}" for s in self.a + self.b]

    def traces(self, rng: np.random.Generator) -> list[str]:
        """Ground-truth carry traces, digit order of each line chosen at random."""
        d = self.digits
        pow10 = 10 ** np.arange(d)
        da = (self.a[:, None] // pow10) % 10  # (n, d), least significant first
        db = (self.b[:, None] // pow10) % 10
        carry = np.zeros_like(da)
        sums = np.zeros_like(da)
        for j in range(d):  # d is tiny; the n axis is vectorised
            carry[:, j] = sums[:, j - 1] // 10 if j else 0
            sums[:, j] = da[:, j] + db[:, j] + carry[:, j]
        swap = rng.random(da.shape) < 0.5
        first, second = np.where(swap, db, da), np.where(swap, da, db)
        return [
            "\n".join(
                f"{first[i, j]}{second[i, j]}{carry[i, j]}={sums[i, j]:02d}" for j in range(d)
            )
            for i in range(len(self.a))
        ]


def make_problems(n: int, digits: int, rng: np.random.Generator) -> Problems:
    high = 10**digits
    return Problems(rng.integers(0, high, n), rng.integers(0, high, n), digits)


def full_text(prompt: str, reasoning: str, answer: str) -> str:
    return f"{prompt}{reasoning}|{answer}"


def split_output(text: str) -> tuple[str, str]:
    """(reasoning, answer) of a generated continuation: around the first `|`."""
    reasoning, _, answer = text.partition("|")
    return reasoning, answer


@dataclass(frozen=True)
class CMExperimentConfig:
    digits: int = 4
    teacher_examples: int = 20_000
    teacher_epochs: float = 3.0
    teacher_d_model: int = 96
    teacher_layers: int = 2
    distill_examples: int = 2_000  # prompts the attacker sends
    student_epochs: float = 8.0
    student_d_model: int = 64
    student_layers: int = 2
    proxy_examples: int = 500  # teacher answers the proxy student is trained on
    proxy_epochs: float = 6.0
    proxy_d_model: int = 32
    proxy_layers: int = 1
    heldout_examples: int = 256  # correct traces defining the proxy's downstream loss
    test_examples: int = 500
    summary_sentences: int = 1
    lams: tuple[float, ...] = (1.0, 3.0)
    eps: float = 1e-2  # normalised finite-difference step
    min_teacher_prob: float = 0.0
    central: bool = False  # one-sided difference (proxy at theta and theta + eps g), as measured
    lr: float = 3e-3
    seed: int = 0
    threads: int = 1
    batch: int = 500
    teacher_cache: str | None = None  # load the teacher from here if present, else save it
    batch_size: int = 64  # training batch
    answer_key: bool = True  # also train the answer-key baseline student
    withheld: bool = False  # also a student on answers whose reasoning was withheld


@dataclass
class Row:
    measure: str
    lam: float | None
    teacher_visible_acc: float  # final answers as the user sees them
    student_acc: float
    trace_correct: float  # share of served traces whose every line is arithmetically right


@dataclass
class CMResult:
    config: dict[str, object]
    teacher_greedy_acc: float
    untrained_acc: float
    answer_key_acc: float
    rows: list[Row] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def row(self, measure: str, lam: float | None = None) -> Row:
        return next(r for r in self.rows if r.measure == measure and r.lam == lam)

    def gap_closed(self, row: Row, baseline: float | None = None) -> float:
        """Share of the (baseline -> raw-distilled student) gap this student closes."""
        base = self.untrained_acc if baseline is None else baseline
        raw = self.row("raw").student_acc
        return (row.student_acc - base) / (raw - base) if raw > base else float("nan")


def _lm(vocab: CharVocab, d: int, layers: int) -> TinyLM:
    return TinyLM(TinyLMConfig(len(vocab), d, layers, 4, max_len=64, arch="transformer"))


@torch.no_grad()
def generate(
    model: TinyLM,
    vocab: CharVocab,
    prompts: Sequence[str],
    max_new: int,
    greedy: bool,
    hook: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    seed: int = 0,
    batch: int = 500,
) -> list[str]:
    """Continuations of equal-length prompts (decoded up to EOS)."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    out: list[str] = []
    for start in range(0, len(prompts), batch):
        chunk = prompts[start : start + batch]
        ids = torch.tensor([vocab.encode(p, eos=False) for p in chunk], dtype=torch.long)
        n_prompt = ids.shape[1]
        done = torch.zeros(len(chunk), dtype=torch.bool)
        for _ in range(max_new):
            logits = model(ids)[:, -1, :].float()
            logits[:, [vocab.pad_id, vocab.bos_id]] = -float("inf")
            if hook is not None:
                logits = hook(ids, logits)
                logits[:, [vocab.pad_id, vocab.bos_id]] = -float("inf")
            if greedy:
                nxt = logits.argmax(-1)
            else:
                nxt = torch.multinomial(torch.softmax(logits, -1), 1, generator=gen)[:, 0]
            nxt = torch.where(done, torch.full_like(nxt, vocab.eos_id), nxt)
            ids = torch.cat([ids, nxt[:, None]], dim=1)
            done |= nxt == vocab.eos_id
            if bool(done.all()):
                break
        out.extend(vocab.decode(row[n_prompt:]) for row in ids.tolist())
    return out


def answer_accuracy(answers: Sequence[str], truth: Sequence[str]) -> float:
    return float(np.mean([a == t for a, t in zip(answers, truth, strict=True)]))


def trace_correct(traces: Sequence[str]) -> float:
    """Share of traces whose every line `xyc=ss` is right (format and arithmetic)."""

    def ok(trace: str) -> bool:
        lines = trace.split("\n")
        for line in lines:
            lhs, _, rhs = line.partition("=")
            if len(lhs) != 3 or not lhs.isdigit() or len(rhs) != 2 or not rhs.isdigit():
                return False
            if sum(int(c) for c in lhs) != int(rhs):
                return False
        return bool(lines)

    return float(np.mean([ok(t) for t in traces])) if traces else float("nan")


def _train(
    cfg: CMExperimentConfig,
    vocab: CharVocab,
    model: TinyLM,
    texts: Sequence[str],
    epochs: int,
    seed: int,
) -> None:
    """Train `model` on `texts` with the experiment's batch size and learning rate."""
    train_lm(
        model,
        [vocab.encode(t) for t in texts],
        vocab.pad_id,
        epochs,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        seed=seed,
    )


def _student_accuracy(
    cfg: CMExperimentConfig, vocab: CharVocab, texts: Sequence[str], test: Problems, seed: int
) -> float:
    student = _lm(vocab, cfg.student_d_model, cfg.student_layers)
    _train(cfg, vocab, student, texts, cfg.student_epochs, seed=seed)
    return _accuracy(student, vocab, test, cfg)


def _accuracy(model: TinyLM, vocab: CharVocab, test: Problems, cfg: CMExperimentConfig) -> float:
    outs = generate(model, vocab, test.prompts(), _max_new(cfg.digits), True, batch=cfg.batch)
    return answer_accuracy([split_output(o)[1] for o in outs], test.answers())


def _max_new(digits: int) -> int:
    return digits * 7 + digits + 2  # trace lines, '|', answer, EOS


def _downstream_loss(vocab: CharVocab, heldout: Sequence[str]) -> Callable[[TinyLM], torch.Tensor]:
    """Proxy's cross-entropy on held-out correct continuations (prompt tokens not scored)."""
    ids = torch.from_numpy(pad_batch([vocab.encode(t) for t in heldout], vocab.pad_id, 65))
    target = ids[:, 1:].clone()
    prompt_len = len(heldout[0].split("=")[0]) + 1  # equal-length prompts
    target[:, :prompt_len] = vocab.pad_id

    def loss(model: TinyLM) -> torch.Tensor:
        model.eval()  # no dropout: a deterministic direction
        logits = model(ids[:, :-1])
        return torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=vocab.pad_id
        )

    return loss


def run_countermeasure_experiment(
    cfg: CMExperimentConfig, log: Callable[[str], None] | None = None
) -> CMResult:
    say = log or (lambda _m: None)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    vocab = CharVocab()
    clock: dict[str, float] = {}
    t0 = time.perf_counter()

    # 1. teacher on ground-truth traces
    train_p = make_problems(cfg.teacher_examples, cfg.digits, rng)
    texts = [
        full_text(p, t, a)
        for p, t, a in zip(train_p.prompts(), train_p.traces(rng), train_p.answers(), strict=True)
    ]
    teacher = _teacher(cfg, vocab, texts)
    test = make_problems(cfg.test_examples, cfg.digits, rng)
    teacher_greedy = _accuracy(teacher, vocab, test, cfg)
    clock["teacher"] = time.perf_counter() - t0
    say(f"teacher trained: greedy accuracy {teacher_greedy:.3f} ({clock['teacher']:.0f} s)")

    # 2. the attacker's prompts, and the teacher's plain sampled answers
    distill = make_problems(cfg.distill_examples, cfg.digits, rng)
    prompts, truth = distill.prompts(), distill.answers()
    max_new = _max_new(cfg.digits)
    raw = generate(teacher, vocab, prompts, max_new, False, seed=cfg.seed + 1, batch=cfg.batch)
    rows: list[Row] = []
    result = CMResult(asdict(cfg), teacher_greedy, 0.0, float("nan"), rows, clock)

    untrained = _lm(vocab, cfg.student_d_model, cfg.student_layers)
    result.untrained_acc = _accuracy(untrained, vocab, test, cfg)
    key_texts = [full_text(p, "", a) for p, a in zip(prompts, truth, strict=True)]
    if cfg.answer_key:
        result.answer_key_acc = _student_accuracy(cfg, vocab, key_texts, test, cfg.seed + 7)
    say(f"baselines: untrained {result.untrained_acc:.3f}, answer key {result.answer_key_acc:.3f}")

    # (a) raw and (b) summarised (or withheld), all through the gate as served to the user
    summariser = ExtractiveSummariser(cfg.summary_sentences, max_chars=10_000, prefix="")
    variants = [
        ("raw", None, Settings()),
        ("summarised", SUMMARY_DECISION, Settings(summariser=summariser)),
    ]
    if cfg.withheld:
        variants.append(("withheld", SUMMARY_DECISION, Settings(withhold_reasoning=True)))
    for measure, decision, settings in variants:
        t = time.perf_counter()
        served = []
        for p, out in zip(prompts, raw, strict=True):
            reasoning, answer = split_output(out)
            s = apply(decision, ServedResponse(answer, reasoning, prompt=p), settings)
            served.append((p, _encodable(s.reasoning), s.content))
        rows.append(_row(cfg, vocab, measure, None, served, truth, test))
        clock[measure] = time.perf_counter() - t
        say(f"{measure}: {rows[-1]} ({clock[measure]:.0f} s)")

    # (c) antidistillation sampling with a proxy student
    t = time.perf_counter()
    proxy = _lm(vocab, cfg.proxy_d_model, cfg.proxy_layers)
    proxy_texts = [
        full_text(p, *split_output(o))
        for p, o in zip(prompts[: cfg.proxy_examples], raw[: cfg.proxy_examples], strict=True)
    ]
    _train(cfg, vocab, proxy, proxy_texts, cfg.proxy_epochs, seed=cfg.seed + 3)
    held = make_problems(cfg.heldout_examples, cfg.digits, rng)
    held_texts = [
        full_text(p, tr, a)
        for p, tr, a in zip(held.prompts(), held.traces(rng), held.answers(), strict=True)
    ]
    loss = _downstream_loss(vocab, held_texts)
    upper = perturbed_proxy(proxy, loss, cfg.eps, normalise=True)
    lower = perturbed_proxy(proxy, loss, cfg.eps, normalise=True, sign=-1) if cfg.central else proxy
    clock["proxy"] = time.perf_counter() - t
    for lam in cfg.lams:
        t = time.perf_counter()
        hook = AntidistillationHook(
            next_logits_fn(lower),
            next_logits_fn(upper),
            AntidistillationConfig(
                lam=lam, eps=cfg.eps, min_teacher_prob=cfg.min_teacher_prob, central=cfg.central
            ),
        )
        outs = generate(teacher, vocab, prompts, max_new, False, hook, cfg.seed + 1, cfg.batch)
        served = [(p, *split_output(o)) for p, o in zip(prompts, outs, strict=True)]
        rows.append(_row(cfg, vocab, "antidistillation", lam, served, truth, test))
        clock[f"antidistillation {lam}"] = time.perf_counter() - t
        say(f"antidistillation lam={lam}: {rows[-1]} ({clock[f'antidistillation {lam}']:.0f} s)")
    clock["total"] = time.perf_counter() - t0
    return result


def _encodable(reasoning: str | None) -> str:
    """The withheld note is a constant outside the task's alphabet: to a student it is the same
    as no trace at all."""
    return "" if not reasoning or reasoning == WITHHELD_NOTE else reasoning


def _teacher(cfg: CMExperimentConfig, vocab: CharVocab, texts: Sequence[str]) -> TinyLM:
    teacher = _lm(vocab, cfg.teacher_d_model, cfg.teacher_layers)
    cache = Path(cfg.teacher_cache) if cfg.teacher_cache else None
    if cache is not None and cache.exists():
        teacher.load_state_dict(torch.load(cache, map_location="cpu", weights_only=True))
        teacher.eval()
        return teacher
    _train(cfg, vocab, teacher, texts, cfg.teacher_epochs, seed=cfg.seed)
    if cache is not None:
        torch.save(teacher.state_dict(), cache)
    return teacher


def _row(
    cfg: CMExperimentConfig,
    vocab: CharVocab,
    measure: str,
    lam: float | None,
    served: Sequence[tuple[str, str, str]],
    truth: Sequence[str],
    test: Problems,
) -> Row:
    visible = answer_accuracy([answer for _, _, answer in served], truth)
    texts = [full_text(p, r, a) for p, r, a in served]
    student = _student_accuracy(cfg, vocab, texts, test, cfg.seed + 11)
    return Row(measure, lam, visible, student, trace_correct([r for _, r, _ in served]))
