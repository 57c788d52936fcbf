"""A tiny causal transformer language model (the project's saved-model format). Needs torch.

Used for the provenance experiment (teacher and distilled students) and as the open-weights
suspect format of `distillguard provenance radioactivity --suspect model.pt`.
Import this module only when torch is installed (the optional `provenance` extra).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from distillguard.errors import UserError
from distillguard.provenance.tokenizer import WordVocab
from distillguard.provenance.watermark import WatermarkProcessor

MODEL_FORMAT = "distillguard-tinylm-v1"


@dataclass(frozen=True)
class TinyLMConfig:
    vocab_size: int
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    max_len: int = 64
    dropout: float = 0.0
    arch: str = "gru"  # "gru" (fast incremental sampling on CPU) or "transformer"
    tie_embeddings: bool = True  # False: a separate output layer (more capacity to memorise)


class TinyLM(nn.Module):
    """Tiny LM with tied input/output embeddings: a GRU, or a pre-norm causal transformer."""

    def __init__(self, config: TinyLMConfig) -> None:
        super().__init__()
        if config.arch not in ("gru", "transformer"):
            raise UserError(f"unknown TinyLM arch {config.arch!r}")
        self.config = config
        self.tok = nn.Embedding(config.vocab_size, config.d_model)
        if config.arch == "gru":
            self.rnn = nn.GRU(config.d_model, config.d_model, config.n_layers, batch_first=True)
        else:
            self.pos = nn.Embedding(config.max_len, config.d_model)
            layer = nn.TransformerEncoderLayer(
                config.d_model,
                config.n_heads,
                4 * config.d_model,
                config.dropout,
                batch_first=True,
                norm_first=True,
            )
            self.blocks = nn.TransformerEncoder(layer, config.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.d_model)
        self.head = None if config.tie_embeddings else nn.Linear(config.d_model, config.vocab_size)

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        h = self.norm(h)
        return h @ self.tok.weight.T if self.head is None else self.head(h)

    def step(self, last: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """GRU only: logits (B, V) for the next token after `last` (B,), and the new state."""
        out, state = self.rnn(self.tok(last)[:, None, :], state)
        return self._logits(out[:, 0]), state

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, T) -> next-token logits (B, T, V)."""
        if self.config.arch == "gru":
            out, _ = self.rnn(self.tok(ids))
            return self._logits(out)
        t = ids.shape[1]
        if t > self.config.max_len:
            ids = ids[:, -self.config.max_len :]
            t = self.config.max_len
        x = self.tok(ids) + self.pos(torch.arange(t, device=ids.device))[None]
        mask = nn.Transformer.generate_square_subsequent_mask(t, device=ids.device)
        x = self.blocks(x, mask=mask, is_causal=True)
        return self._logits(x)


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int, max_len: int) -> np.ndarray:
    """Right-pad (and truncate) id sequences into a (B, T) int64 array."""
    t = min(max(len(s) for s in sequences), max_len)
    out = np.full((len(sequences), t), pad_id, dtype=np.int64)
    for i, s in enumerate(sequences):
        s = list(s)[:t]
        out[i, : len(s)] = s
    return out


def train_lm(
    model: TinyLM,
    sequences: Sequence[Sequence[int]],
    pad_id: int,
    epochs: float = 3.0,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> list[float]:
    """Next-token cross-entropy training with AdamW and a linear decay; returns batch losses."""
    gen = np.random.default_rng(seed)
    torch.manual_seed(seed)
    n_steps = max(1, int(epochs * len(sequences) / batch_size))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / n_steps)
    loss_fn = nn.CrossEntropyLoss(ignore_index=pad_id)
    model.train()
    losses = []
    order = gen.permutation(len(sequences))
    cursor = 0
    for step in range(n_steps):
        if cursor + batch_size > len(order):
            order, cursor = gen.permutation(len(sequences)), 0
        batch = [sequences[i] for i in order[cursor : cursor + batch_size]]
        cursor += batch_size
        ids = torch.from_numpy(pad_batch(batch, pad_id, model.config.max_len + 1))
        logits = model(ids[:, :-1])
        loss = loss_fn(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(step + 1, n_steps)
    model.eval()
    return losses


@torch.no_grad()
def sample(
    model: TinyLM,
    vocab: WordVocab,
    n: int,
    max_new: int = 48,
    temperature: float = 1.0,
    watermark: WatermarkProcessor | None = None,
    seed: int = 0,
    batch_size: int = 256,
    prompts: Sequence[Sequence[int]] | None = None,
) -> list[list[int]]:
    """Sample `n` sequences (ids, starting with the prompt or BOS, cut after EOS)."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    out: list[list[int]] = []
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        if prompts is None:
            ids = torch.full((b, 1), vocab.bos_id, dtype=torch.long)
        else:  # equal-length prompts keep the batch rectangular
            ids = torch.tensor([list(p) for p in prompts[start : start + b]], dtype=torch.long)
        done = torch.zeros(b, dtype=torch.bool)
        state = None
        for step in range(max_new):
            if model.config.arch == "gru":  # incremental: feed the prefix once, then 1 token
                if step == 0 and ids.shape[1] > 1:
                    _, state = model.rnn(model.tok(ids[:, :-1]))
                logits, state = model.step(ids[:, -1], state)
                logits = logits.float()
            else:
                logits = model(ids)[:, -1, :].float()
            logits[:, vocab.pad_id] = -float("inf")
            logits[:, vocab.bos_id] = -float("inf")
            if watermark is not None:
                logits = watermark.apply_torch(ids, logits)
            probs = torch.softmax(logits / max(temperature, 1e-6), dim=-1)
            nxt = torch.multinomial(probs, 1, generator=gen).squeeze(1)
            nxt = torch.where(done, torch.full_like(nxt, vocab.pad_id), nxt)
            ids = torch.cat([ids, nxt[:, None]], dim=1)
            done |= nxt == vocab.eos_id
            if bool(done.all()):
                break
        for row in ids.tolist():
            out.append([t for t in row if t != vocab.pad_id])
    return out


def logits_fn(model: TinyLM) -> Callable[[np.ndarray], np.ndarray]:
    """Wrap a model as `ids (B, T) -> logits (B, T, V)` on NumPy arrays (for reading mode)."""

    @torch.no_grad()
    def fn(ids: np.ndarray) -> np.ndarray:
        model.eval()
        return model(torch.from_numpy(np.asarray(ids, dtype=np.int64))).float().numpy()

    return fn


def save_model(
    path: Path, model: TinyLM, vocab: WordVocab, meta: dict[str, Any] | None = None
) -> None:
    torch.save(
        {
            "format": MODEL_FORMAT,
            "config": asdict(model.config),
            "state_dict": model.state_dict(),
            "vocab": vocab.itos,
            "meta": meta or {},
        },
        path,
    )


def load_model(path: Path) -> tuple[TinyLM, WordVocab]:
    """Load a model saved by `save_model` (weights-only unpickling: safe on untrusted files)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"cannot load model {path}: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise UserError(f"{path} is not a {MODEL_FORMAT} model file")
    model = TinyLM(TinyLMConfig(**payload["config"]))
    model.load_state_dict(payload["state_dict"])
    model.eval()
    vocab = WordVocab(payload["vocab"])
    if vocab.itos != list(payload["vocab"]):
        raise UserError(f"{path}: vocabulary is not in canonical order")
    return model, vocab
