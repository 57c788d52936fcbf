"""Prompt template fingerprints: exact wrapper ids and MinHash LSH band keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pyarrow as pa

from distillguard.signals.base import (
    ATLAS_EXFIL_INFERENCE,
    ATLAS_INFERENCE_API,
    ATLAS_PROXY_MODEL,
    Signal,
)
from distillguard.signals.text import (
    PromptText,
    as_int64,
    combine64,
    mix64,
    prompt_text,
)

# Words per prefix / suffix block (a block never crosses a blank-line paragraph break).
BLOCK_WORDS = 12
# MinHash: one-permutation hashing into BANDS * ROWS bins, densified, then LSH banding.
# With 16 x 4 two wrappers of word-bigram Jaccard s share a band with probability
# 1 - (1 - s^4)^16: 0.64 at s = 0.5, 0.99 at s = 0.7, 0.02 at s = 0.2.
BANDS = 16
ROWS = 4
BINS = BANDS * ROWS
_BIN_BITS = 6  # log2(BINS)

_U64 = np.uint64
_PREFIX_SALT = _U64(0x70F1_7E5A_11CE_0001)
_SUFFIX_SALT = _U64(0x70F1_7E5A_11CE_0002)
_SHINGLE_SALT = _U64(0x70F1_7E5A_11CE_0003)
_UNIGRAM_SALT = _U64(0x70F1_7E5A_11CE_0004)
_BAND_SALT = _U64(0x70F1_7E5A_11CE_0005)
_GOLDEN = _U64(0x9E3779B97F4A7C15)
_EMPTY_BIN = np.iinfo(np.uint64).max
_PROBE_SALT = _U64(0x70F1_7E5A_11CE_0006)
# Texts with fewer filled bins than this are densified by looping over their filled bins.
_SPARSE_BELOW = 24


@dataclass(frozen=True)
class _KeptTokens:
    """Word tokens (no paragraph marks, no pure punctuation) in text order."""

    text: np.ndarray  # index of the distinct text each token belongs to
    paragraph: np.ndarray | None  # paragraph number within its text (None: no breaks at all)
    word_hash: np.ndarray  # uint64 hash of the token's word
    last_paragraph: np.ndarray | None  # per text: number of its last paragraph


def _kept_tokens(pt: PromptText) -> _KeptTokens:
    keep = (~(pt.is_break | pt.is_blank))[pt.token_word]
    everything = bool(keep.all())  # common: skip the copies
    token_text = pt.token_text if everything else pt.token_text[keep]
    token_word = pt.token_word if everything else pt.token_word[keep]
    if not pt.is_break.any():  # no blank lines anywhere: every text is one paragraph
        return _KeptTokens(token_text, None, pt.word_hash[token_word], None)
    breaks = pt.is_break[pt.token_word]
    breaks_upto = np.concatenate([[0], np.cumsum(breaks, dtype=np.int64)])
    breaks_before_text = breaks_upto[pt.token_offsets[:-1]]
    # Paragraph number of a word = blank-line breaks before it within its own text.
    paragraph = breaks_upto[1:][keep] - breaks_before_text[token_text]
    last_paragraph = breaks_upto[pt.token_offsets[1:]] - breaks_before_text
    return _KeptTokens(
        text=token_text,
        paragraph=paragraph,
        word_hash=pt.word_hash[token_word],
        last_paragraph=last_paragraph,
    )


def _block_bounds(kept: _KeptTokens, n_texts: int) -> tuple[np.ndarray, ...]:
    """Per text, kept-token ranges: [start, first_end) is the first paragraph and
    [last_start, end) the last one."""
    counts = np.bincount(kept.text, minlength=n_texts)
    end = np.cumsum(counts)
    start = end - counts
    if kept.paragraph is None or kept.last_paragraph is None:  # one paragraph per text
        return start, end, start, end
    in_first = np.bincount(kept.text[kept.paragraph == 0], minlength=n_texts)
    is_last = kept.paragraph == kept.last_paragraph[kept.text]
    in_last = np.bincount(kept.text[is_last], minlength=n_texts)
    return start, start + in_first, end - in_last, end


def _block_hash(
    word_hash: np.ndarray, lo: np.ndarray, hi: np.ndarray, from_end: bool, salt: np.uint64
) -> np.ndarray:
    """Order-sensitive hash of the first (or last) BLOCK_WORDS words in [lo, hi) per text.

    Loops over the BLOCK_WORDS positions, each step a vector over texts (not over tokens).
    """
    total = np.full(len(lo), salt, dtype=_U64)
    padded = np.concatenate([word_hash, np.zeros(1, dtype=_U64)])
    with np.errstate(over="ignore"):
        for k in range(BLOCK_WORDS):
            index = hi - 1 - k if from_end else lo + k
            valid = (index >= lo) & (index < hi)
            word = padded[np.where(valid, index, len(word_hash))]
            total = np.where(valid, mix64(total * _GOLDEN + word), total)
    return mix64(total ^ salt)


def _shingles(kept: _KeptTokens, n_texts: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashed word-bigram shingles and their text; a one-word text gets its unigram."""
    same_text = np.flatnonzero(kept.text[1:] == kept.text[:-1])
    with np.errstate(over="ignore"):
        bigram = mix64(
            kept.word_hash[same_text] * _GOLDEN + kept.word_hash[same_text + 1] ^ _SHINGLE_SALT
        )
    counts = np.bincount(kept.text, minlength=n_texts)
    single = np.flatnonzero(counts[kept.text] == 1)
    unigram = mix64(kept.word_hash[single] ^ _UNIGRAM_SALT)
    return (
        np.concatenate([bigram, unigram]),
        np.concatenate([kept.text[same_text], kept.text[single]]),
    )


def _probe_order() -> np.ndarray:
    """(BINS, BINS): for each bin, a fixed pseudo-random permutation of all bins."""
    keys = mix64(np.arange(BINS * BINS, dtype=_U64) ^ _PROBE_SALT).reshape(BINS, BINS)
    return np.argsort(keys, axis=1, kind="stable")


_PROBE_ORDER = _probe_order()
# _PROBE_RANK[j, b]: the step at which bin j's probe order reaches bin b.
_PROBE_RANK = np.argsort(_PROBE_ORDER, axis=1).astype(np.int16)


def _densify(table: np.ndarray, filled: np.ndarray, targets: int = BINS) -> np.ndarray:
    """Fill each empty bin j with the value of the first filled bin in bin j's fixed probe
    order ("optimal densification", Shrivastava 2017): two texts agree on a densified bin
    exactly when they agree on the bin it copies, so a band still collides with probability
    ~ Jaccard^ROWS, and neighbouring bins copy from unrelated sources.

    The result is one function of (table, filled); it is computed in two ways by cost:
    texts with many filled bins probe step by step (few steps), texts with few filled bins
    loop over those few bins. Only the first `targets` bins are returned (and filled): the
    bands a caller keeps need no more, and the sources are still all BINS bins.
    """
    dense = table[:, :targets].copy()
    n_filled = filled.sum(axis=1)
    sparse = np.flatnonzero((n_filled > 0) & (n_filled < _SPARSE_BELOW))
    many = (n_filled >= _SPARSE_BELOW) & (n_filled < BINS)
    _densify_by_steps(table, filled, dense, np.flatnonzero(many))
    _densify_sparse(table, filled, dense, sparse)
    return dense


# _KEYS[b, j]: bin b's rank in bin j's probe order, times BINS, plus b. The minimum key over
# a text's filled bins is, for each target bin j, the earliest filled bin in j's probe order;
# its low bits name that bin (ranks are unique per target bin, so there are no ties).
_KEYS = (_PROBE_RANK.T * np.int16(BINS) + np.arange(BINS, dtype=np.int16)[:, None]).astype(np.int16)


def _densify_sparse(
    table: np.ndarray, filled: np.ndarray, dense: np.ndarray, rows: np.ndarray
) -> None:
    """For texts with few filled bins: loop over their filled bins (at most _SPARSE_BELOW),
    keeping per empty bin the minimum key, i.e. the filled bin earliest in its probe order."""
    if len(rows) == 0:
        return
    targets = dense.shape[1]
    row_of, bin_of = np.nonzero(filled[rows])
    slot = np.arange(len(row_of)) - np.searchsorted(row_of, np.arange(len(rows)))[row_of]
    best = np.full((len(rows), targets), np.iinfo(np.int16).max, dtype=np.int16)
    keys = np.ascontiguousarray(_KEYS[:, :targets])
    for step in range(int(slot.max()) + 1):
        at = slot == step
        r = row_of[at]
        best[r] = np.minimum(best[r], keys[bin_of[at]])
    source = (best & np.int16(BINS - 1)).astype(np.int64)
    sub = table[rows]
    copied = np.take_along_axis(sub, source, axis=1)
    dense[rows] = np.where(filled[rows, :targets], sub[:, :targets], copied)


def _densify_by_steps(
    table: np.ndarray, filled: np.ndarray, dense: np.ndarray, rows: np.ndarray
) -> None:
    # Flat (text * width + bin) indices: 1-D gathers are much cheaper than 2-D fancy indexing.
    targets = dense.shape[1]
    flat_table, flat_filled, flat_dense = table.reshape(-1), filled.reshape(-1), dense.reshape(-1)
    empty = np.flatnonzero(~filled[rows, :targets]).astype(np.int64)
    empty_bin = empty % targets
    text = rows[empty // targets]
    slot = text * targets + empty_bin  # flat index of the empty bin in `dense`
    row_base = text * BINS  # flat index of the text's first bin in `table`
    order = _PROBE_ORDER.reshape(-1)
    for step in range(BINS):
        if len(slot) == 0:
            break
        source = row_base + order[empty_bin * BINS + step]
        found = flat_filled[source]
        flat_dense[slot[found]] = flat_table[source[found]]
        missing = ~found
        slot, row_base, empty_bin = slot[missing], row_base[missing], empty_bin[missing]


def _minhash_bands(
    kept: _KeptTokens, n_texts: int, bands: int = BANDS
) -> tuple[np.ndarray, np.ndarray]:
    """(band keys (n_texts, bands) uint64, has_shingles (n_texts,) bool): the first `bands`
    of the BANDS band keys (the same values whatever `bands` is).

    One-permutation hashing (one hash per shingle; bin = low bits, value = high bits, min per
    bin) with optimal densification of empty bins: O(shingles) instead of O(shingles x BINS)
    for classic MinHash, which is what keeps diverse traffic (every prompt distinct) fast.
    Chosen over datasketch.MinHash, which costs BINS hash permutations per shingle in Python.
    """
    hashed, text = _shingles(kept, n_texts)
    slot = text.astype(np.int64) * BINS + (hashed & _U64(BINS - 1)).astype(np.int64)
    table = np.full(n_texts * BINS, _EMPTY_BIN, dtype=_U64)
    np.minimum.at(table, slot, hashed >> _U64(_BIN_BITS))
    table = table.reshape(n_texts, BINS)
    filled = table != _EMPTY_BIN
    dense = _densify(table, filled, bands * ROWS)
    rows = dense.reshape(n_texts, bands, ROWS)
    keys = np.broadcast_to(mix64(np.arange(bands, dtype=_U64) ^ _BAND_SALT), (n_texts, bands))
    with np.errstate(over="ignore"):
        for row in range(ROWS):
            keys = mix64(keys * _GOLDEN + rows[:, :, row])
    return keys, filled.any(axis=1)


def _nullable_int64(values: np.ndarray, valid: np.ndarray) -> pa.Array:
    return pa.array(as_int64(values), type=pa.int64(), mask=~valid)


class TemplateSignal(Signal):
    """Prompt template fingerprint: which wrapper a request was built from.

    The prompt's head and tail are lowercased and its variable parts masked (code blocks,
    "Question:/Input:/Text:"-style field values, quoted phrases, numbers, ids, URLs, e-mails).
    `tpl_prefix` hashes the first 12 words of the first paragraph, `tpl_suffix` the last 12
    words of the last paragraph, `tpl_id` both. `tpl_bands` are 16 LSH band keys of a MinHash
    (16 bands x 4 rows, one-permutation hashing) over word bigrams of the masked wrapper, so
    wrappers paraphrased or reordered from the same parts still share a band key.

    Captures:
        Templated extraction: thousands of requests (often over many accounts, "hydra
        clusters") that pour different payloads into the same instruction wrapper aimed at a
        capability. Shared `tpl_id` / band keys across accounts link a distributed campaign.

    False positives:
        Enterprise batch pipelines and academic benchmark runs are templated by design; one
        company behind a NAT shares its internal tool's wrapper; short generic chat prompts
        ("fix this: <code>") collapse to common wrappers. A template id alone is never
        evidence; its spread over unrelated accounts plus the other signals is.

    Analyst check:
        Read a few prompts of the template: is the wrapper asking for reasoning traces,
        grades or training-shaped output? How many accounts/orgs/payment instruments use
        it, and did it appear on a new model within days of release?

    ATLAS:
        AML.T0040 (inference API access), AML.T0024 (exfiltration via inference API),
        AML.T0005 (create proxy model).
    """

    name: ClassVar[str] = "template"
    output: ClassVar[pa.Schema] = pa.schema(
        [
            pa.field("tpl_id", pa.int64()),
            pa.field("tpl_prefix", pa.int64()),
            pa.field("tpl_suffix", pa.int64()),
            pa.field("tpl_bands", pa.list_(pa.int64())),
        ]
    )
    atlas: ClassVar[tuple[str, ...]] = (
        ATLAS_INFERENCE_API,
        ATLAS_EXFIL_INFERENCE,
        ATLAS_PROXY_MODEL,
    )

    def __init__(self, bands: int = BANDS) -> None:
        """`bands`: how many of the BANDS band keys to compute (the first ones; a pipeline
        that reads only a few saves most of the densification)."""
        if not 1 <= bands <= BANDS:
            raise ValueError(f"bands must be 1..{BANDS}, got {bands}")
        self.bands = bands

    def __repr__(self) -> str:
        return f"TemplateSignal(bands={self.bands})"

    def compute(self, batch: pa.RecordBatch) -> dict[str, pa.Array]:
        pt = prompt_text(batch)
        n_texts = len(pt.texts)
        kept = _kept_tokens(pt)
        start, first_end, last_start, end = _block_bounds(kept, n_texts)
        prefix = _block_hash(kept.word_hash, start, first_end, False, _PREFIX_SALT)
        suffix = _block_hash(kept.word_hash, last_start, end, True, _SUFFIX_SALT)
        tpl_id = combine64(prefix, suffix)
        bands, has_shingles = _minhash_bands(kept, n_texts, self.bands)

        has_text = pt.row_to_text >= 0
        row = np.where(has_text, pt.row_to_text, 0)
        rows_with_bands = has_text & pt.to_rows(has_shingles, False)
        band_values = bands[row] if n_texts else np.zeros((len(row), self.bands), dtype=_U64)
        offsets = np.zeros(len(row) + 1, dtype=np.int32)
        offsets[1:] = np.cumsum(np.where(rows_with_bands, self.bands, 0))
        flat = band_values[rows_with_bands].reshape(-1)
        tpl_bands = pa.ListArray.from_arrays(
            pa.array(offsets), pa.array(as_int64(flat)), mask=pa.array(~rows_with_bands)
        )
        return {
            "tpl_id": _nullable_int64(pt.to_rows(tpl_id, _U64(0)), has_text),
            "tpl_prefix": _nullable_int64(pt.to_rows(prefix, _U64(0)), has_text),
            "tpl_suffix": _nullable_int64(pt.to_rows(suffix, _U64(0)), has_text),
            "tpl_bands": tpl_bands,
        }
