"""Keyed green-list watermark (Kirchenbauer et al., 2023) and its detector.

For the next token after a window of `context_width` tokens, a keyed hash of (window,
candidate token) decides whether the candidate is *green*; a fraction `gamma` of the
vocabulary is green for each window. Generation adds `delta` to green logits. Detection
counts green tokens over *distinct* (window, token) tuples (Fernandez et al., 2023,
"Three bricks"; Sander et al., 2024): under the null hypothesis (text independent of the
key) each distinct tuple is green with probability `gamma` independently, so the count is
exactly Binomial(n, gamma) and the p-value is its upper tail.

All hashing is vectorised uint64 arithmetic (a splitmix64 finaliser) in NumPy; tokens are
identified by 64-bit token keys (see `tokenizer.token_key_array`), by default their ids.
NumPy-only: torch and transformers are imported lazily by the functions that need them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from distillguard.errors import UserError
from distillguard.provenance.keys import WatermarkKey
from distillguard.provenance.tokenizer import split_words, token_key_array

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, element-wise on uint64 arrays (wrapping arithmetic)."""
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> _S30)) * _M1
        x = (x ^ (x >> _S27)) * _M2
    return x ^ (x >> _S31)


@dataclass(frozen=True)
class WatermarkConfig:
    """gamma: green fraction; delta: logit bias (strength); context_width: window size."""

    gamma: float = 0.25
    delta: float = 3.0
    context_width: int = 2

    def __post_init__(self) -> None:
        if not 0.0 < self.gamma < 1.0:
            raise UserError(f"gamma must be in (0, 1), got {self.gamma}")
        if self.context_width < 1:
            raise UserError(f"context_width must be >= 1, got {self.context_width}")
        if self.delta < 0:
            raise UserError(f"delta must be >= 0, got {self.delta}")

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass(frozen=True)
class Detection:
    """Result of a green-token binomial test."""

    n_tokens: int  # windows seen before deduplication
    n_scored: int  # distinct (window, token) tuples scored
    n_green: int
    gamma: float
    z: float
    p_value: float

    @property
    def green_rate(self) -> float:
        return self.n_green / self.n_scored if self.n_scored else float("nan")


def binomial_test(n_green: int, n_scored: int, gamma: float, n_tokens: int = -1) -> Detection:
    """z-score and exact upper-tail p-value P[Binomial(n, gamma) >= n_green]."""
    from scipy.stats import binom  # lazy: SciPy statistics take seconds to import

    if n_scored == 0:
        return Detection(max(n_tokens, 0), 0, 0, gamma, 0.0, 1.0)
    expected = gamma * n_scored
    z = (n_green - expected) / np.sqrt(n_scored * gamma * (1.0 - gamma))
    p = float(binom.sf(n_green - 1, n_scored, gamma))
    return Detection(n_tokens if n_tokens >= 0 else n_scored, n_scored, n_green, gamma, float(z), p)


class GreenList:
    """Keyed green-list membership for (context window, token) pairs, vectorised."""

    def __init__(self, key: WatermarkKey, config: WatermarkConfig) -> None:
        self.config = config
        self._context_seed = np.uint64(key.seed("green-context"))
        self._token_seed = np.uint64(key.seed("green-token"))
        # gamma * 2**64 as an exact integer threshold on the final hash.
        self._threshold = np.uint64(min(int(config.gamma * 2.0**64), 2**64 - 1))

    def context_hash(self, windows: np.ndarray) -> np.ndarray:
        """Hash of each row of `windows` (n, context_width) token keys -> (n,) uint64."""
        windows = np.asarray(windows, dtype=np.uint64)
        h = np.full(windows.shape[0], self._context_seed, dtype=np.uint64)
        with np.errstate(over="ignore"):
            for j in range(windows.shape[1]):  # context_width is tiny (1-4)
                h = mix64(mix64(h + _GOLDEN) ^ windows[:, j])
        return h

    def token_part(self, token_keys: np.ndarray) -> np.ndarray:
        """Keyed per-token hash; precompute once over a vocabulary."""
        return mix64(np.asarray(token_keys, dtype=np.uint64) ^ self._token_seed)

    def is_green(self, context_hashes: np.ndarray, token_parts: np.ndarray) -> np.ndarray:
        """Green membership; inputs broadcast (e.g. (B, 1) x (1, V) gives a (B, V) mask)."""
        return mix64(context_hashes ^ token_parts) < self._threshold

    def green_windows(self, windows: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """Green bit of each (window row, token) pair given as token keys."""
        return self.is_green(self.context_hash(windows), self.token_part(tokens))


class WatermarkProcessor:
    """Adds `delta` to the logits of green tokens, given the ids generated so far.

    `token_keys[i]` is the key of vocabulary id i (default: the id itself). Works on NumPy
    arrays (`__call__`), PyTorch tensors (`apply_torch`) and as a Hugging Face
    `LogitsProcessor` (`hf_processor()`). Rows with fewer than `context_width` tokens so far
    are left unbiased (detection never scores those positions either).
    """

    def __init__(
        self,
        key: WatermarkKey,
        config: WatermarkConfig,
        vocab_size: int,
        token_keys: np.ndarray | None = None,
    ) -> None:
        if token_keys is None:
            token_keys = np.arange(vocab_size, dtype=np.uint64)
        token_keys = np.asarray(token_keys, dtype=np.uint64)
        if token_keys.shape != (vocab_size,):
            raise UserError(f"token_keys must have shape ({vocab_size},), got {token_keys.shape}")
        self.config = config
        self.green = GreenList(key, config)
        self.token_keys = token_keys
        self._vocab_parts = self.green.token_part(token_keys)[None, :]

    def green_mask(self, input_ids: np.ndarray) -> np.ndarray:
        """(B, V) bool: green tokens for the next position of each row of `input_ids` (B, T)."""
        input_ids = np.asarray(input_ids)
        k = self.config.context_width
        if input_ids.ndim != 2:
            raise UserError(f"input_ids must be (batch, time), got shape {input_ids.shape}")
        if input_ids.shape[1] < k:
            return np.zeros((input_ids.shape[0], self._vocab_parts.shape[1]), dtype=bool)
        windows = self.token_keys[input_ids[:, -k:]]
        return self.green.is_green(self.green.context_hash(windows)[:, None], self._vocab_parts)

    def __call__(self, input_ids: np.ndarray, logits: np.ndarray) -> np.ndarray:
        """NumPy logits (B, V) -> biased copy."""
        mask = self.green_mask(input_ids)
        return np.asarray(logits) + self.config.delta * mask.astype(np.asarray(logits).dtype)

    def apply_torch(self, input_ids: Any, logits: Any) -> Any:
        """PyTorch logits (B, V) -> biased tensor on the same device and dtype."""
        import torch  # lazy: torch is the optional `provenance` extra

        mask = self.green_mask(input_ids.detach().cpu().numpy())
        bias = torch.from_numpy(mask).to(device=logits.device, dtype=logits.dtype)
        return logits + self.config.delta * bias

    def hf_processor(self) -> Any:
        """A `transformers.LogitsProcessor` applying this watermark (transformers optional)."""
        return make_hf_logits_processor(self)


def make_hf_logits_processor(processor: WatermarkProcessor) -> Any:
    """Build the Hugging Face adapter lazily so `transformers` stays an optional dependency."""
    try:
        from transformers import LogitsProcessor
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise UserError("the Hugging Face adapter needs `pip install transformers`") from exc

    class GreenListLogitsProcessor(LogitsProcessor):  # type: ignore[misc]
        """Hugging Face adapter: `generate(..., logits_processor=LogitsProcessorList([p]))`."""

        def __init__(self, inner: WatermarkProcessor) -> None:
            self.inner = inner

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            return self.inner.apply_torch(input_ids, scores)

    return GreenListLogitsProcessor(processor)


def windows_of(sequence: np.ndarray, context_width: int, start: int = 0) -> np.ndarray:
    """(n, k+1) rows [t[i-k], ..., t[i-1], t[i]] for every scored position i >= max(k, start)."""
    sequence = np.asarray(sequence, dtype=np.uint64)
    k = context_width
    if sequence.shape[0] <= k:
        return np.zeros((0, k + 1), dtype=np.uint64)
    rows = np.lib.stride_tricks.sliding_window_view(sequence, k + 1)
    return rows[max(start - k, 0) :]


def score_windows(
    rows: np.ndarray, key: WatermarkKey, config: WatermarkConfig, dedup: bool = True
) -> Detection:
    """Binomial test over (n, k+1) rows of token keys: k context tokens then the scored token."""
    rows = np.asarray(rows, dtype=np.uint64).reshape(-1, config.context_width + 1)
    n_tokens = rows.shape[0]
    if dedup and n_tokens:
        rows = np.unique(rows, axis=0)  # each distinct (window, token) tuple scored once
    green = GreenList(key, config).green_windows(rows[:, :-1], rows[:, -1])
    return binomial_test(int(green.sum()), int(rows.shape[0]), config.gamma, n_tokens)


def detect_keys(
    sequences: Sequence[np.ndarray],
    key: WatermarkKey,
    config: WatermarkConfig,
    starts: Sequence[int] | None = None,
    dedup: bool = True,
) -> Detection:
    """Test token-key sequences; `starts[i]` = first position of sequence i to score."""
    k = config.context_width
    parts = [
        windows_of(seq, k, 0 if starts is None else starts[i]) for i, seq in enumerate(sequences)
    ]
    rows = np.concatenate(parts) if parts else np.zeros((0, k + 1), dtype=np.uint64)
    return score_windows(rows, key, config, dedup=dedup)


def detect_ids(
    sequences: Sequence[Sequence[int]],
    token_keys: np.ndarray,
    key: WatermarkKey,
    config: WatermarkConfig,
    dedup: bool = True,
) -> Detection:
    """Test sequences of vocabulary ids (mapped to token keys by `token_keys`)."""
    return detect_keys(
        [token_keys[np.asarray(s, dtype=np.int64)] for s in sequences], key, config, dedup=dedup
    )


def detect_text(
    texts: Sequence[str] | str, key: WatermarkKey, config: WatermarkConfig, dedup: bool = True
) -> Detection:
    """Test plain texts tokenised with the project's word tokenizer."""
    if isinstance(texts, str):
        texts = [texts]
    return detect_keys([token_key_array(split_words(t)) for t in texts], key, config, dedup=dedup)
