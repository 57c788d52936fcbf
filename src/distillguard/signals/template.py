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
    PARAGRAPH_TOKEN,
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
_EMPTY_BIN = np.iinfo(np.uint64).max
_ROTATION_STEP = _U64(1 << 58)


@dataclass(frozen=True)
class _KeptTokens:
    """Word tokens (no paragraph marks, no pure punctuation) in text order."""

    text: np.ndarray  # index of the distinct text each token belongs to
    paragraph: np.ndarray  # paragraph number of the token within its text
    word_hash: np.ndarray  # uint64 hash of the token's word
    last_paragraph: np.ndarray  # per text: number of its last paragraph


def _kept_tokens(pt: PromptText) -> _KeptTokens:
    vocab_str = np.asarray(pt.vocab.to_numpy(zero_copy_only=False), dtype=object)
    is_break = vocab_str == PARAGRAPH_TOKEN
    is_blank = vocab_str == ""
    token_text = pt.token_text
    breaks = is_break[pt.token_word]
    break_rank = np.cumsum(breaks)
    breaks_upto = np.concatenate([[0], break_rank])
    breaks_before_text = breaks_upto[pt.token_offsets[:-1]]
    keep = ~(breaks | is_blank[pt.token_word])
    # Paragraph number of a word = blank-line breaks before it within its own text.
    paragraph = (break_rank - breaks_before_text[token_text])[keep]
    last_paragraph = breaks_upto[pt.token_offsets[1:]] - breaks_before_text
    return _KeptTokens(
        text=token_text[keep],
        paragraph=paragraph,
        word_hash=pt.vocab_hash[pt.token_word[keep]],
        last_paragraph=last_paragraph,
    )


def _group_rank(groups: np.ndarray, reverse: bool) -> np.ndarray:
    """Position of each element within its run of equal (sorted) group ids."""
    n = len(groups)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate([[True], groups[1:] != groups[:-1]]))
    ends = np.concatenate([starts[1:], [n]])
    sizes = ends - starts
    index = np.arange(n)
    if reverse:
        return np.repeat(ends - 1, sizes) - index
    return index - np.repeat(starts, sizes)


def _block_hash(
    kept: _KeptTokens, select: np.ndarray, reverse: bool, n_texts: int, salt: np.uint64
) -> np.ndarray:
    """Order-sensitive hash of the first (or last) BLOCK_WORDS selected tokens of each text."""
    text = kept.text[select]
    rank = _group_rank(text, reverse)
    in_block = rank < BLOCK_WORDS
    with np.errstate(over="ignore"):
        salted = mix64(kept.word_hash[select][in_block] + rank[in_block].astype(_U64) * salt)
    total = np.zeros(n_texts, dtype=_U64)
    np.add.at(total, text[in_block], salted)
    return mix64(total ^ salt)


def _shingles(kept: _KeptTokens, n_texts: int) -> tuple[np.ndarray, np.ndarray]:
    """Word-bigram shingle hashes and their text; a one-word text gets its unigram."""
    same_text = kept.text[1:] == kept.text[:-1]
    bigram = combine64(kept.word_hash[:-1][same_text], kept.word_hash[1:][same_text])
    bigram_text = kept.text[:-1][same_text]
    counts = np.bincount(kept.text, minlength=n_texts)
    single = counts[kept.text] == 1
    unigram = mix64(kept.word_hash[single] ^ _UNIGRAM_SALT)
    return (
        np.concatenate([bigram, unigram]),
        np.concatenate([bigram_text, kept.text[single]]),
    )


def _minhash_bands(kept: _KeptTokens, n_texts: int) -> tuple[np.ndarray, np.ndarray]:
    """(band keys (n_texts, BANDS) uint64, has_shingles (n_texts,) bool).

    One-permutation hashing (one hash per shingle, bin = low bits, value = high bits, min per
    bin) with rotation densification for empty bins (Shrivastava & Li 2014): O(shingles)
    instead of O(shingles x BINS) for classic MinHash, which is what keeps diverse traffic fast.
    """
    shingle, text = _shingles(kept, n_texts)
    hashed = mix64(shingle ^ _SHINGLE_SALT)
    bins = (hashed & _U64(BINS - 1)).astype(np.int64)
    values = hashed >> _U64(_BIN_BITS)
    table = np.full(n_texts * BINS, _EMPTY_BIN, dtype=_U64)
    np.minimum.at(table, text * BINS + bins, values)
    table = table.reshape(n_texts, BINS)
    filled = table != _EMPTY_BIN
    has_shingles = filled.any(axis=1)
    # Densify: an empty bin borrows the next filled bin to its right (circularly), shifted by
    # the distance, so two texts agree on it exactly when they agree on the borrowed bin.
    doubled = np.concatenate([table, table], axis=1)
    position = np.where(np.concatenate([filled, filled], axis=1), np.arange(2 * BINS), 2 * BINS)
    next_filled = np.minimum.accumulate(position[:, ::-1], axis=1)[:, ::-1][:, :BINS]
    next_filled = np.minimum(next_filled, 2 * BINS - 1)
    distance = (next_filled - np.arange(BINS)).astype(_U64)
    with np.errstate(over="ignore"):
        dense = np.take_along_axis(doubled, next_filled, axis=1) + distance * _ROTATION_STEP
    rows = dense.reshape(n_texts, BANDS, ROWS)
    keys = np.broadcast_to(
        mix64(np.arange(BANDS, dtype=_U64) ^ _BAND_SALT), (n_texts, BANDS)
    ).copy()
    for row in range(ROWS):
        keys = combine64(keys, rows[:, :, row])
    return keys, has_shingles


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

    def compute(self, batch: pa.RecordBatch) -> dict[str, pa.Array]:
        pt = prompt_text(batch)
        n_texts = len(pt.texts)
        kept = _kept_tokens(pt)
        first = kept.paragraph == 0
        last = kept.paragraph == kept.last_paragraph[kept.text]
        prefix = _block_hash(kept, first, reverse=False, n_texts=n_texts, salt=_PREFIX_SALT)
        suffix = _block_hash(kept, last, reverse=True, n_texts=n_texts, salt=_SUFFIX_SALT)
        tpl_id = combine64(prefix, suffix)
        bands, has_shingles = _minhash_bands(kept, n_texts)

        has_text = pt.row_to_text >= 0
        row = np.where(has_text, pt.row_to_text, 0)
        rows_with_bands = has_text & pt.to_rows(has_shingles, False)
        band_values = bands[row] if n_texts else np.zeros((len(row), BANDS), dtype=_U64)
        offsets = np.zeros(len(row) + 1, dtype=np.int32)
        offsets[1:] = np.cumsum(np.where(rows_with_bands, BANDS, 0))
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
