"""Shared prompt text processing: a capped, lowercased, masked view; tokens; hashes; MinHash.

Templated traffic (attack campaigns and enterprise pipelines alike) has few distinct prompt
*wrappers* once the variable parts are masked, so everything expensive runs on the distinct
masked views of a batch and is taken back to rows with one NumPy gather. Diverse chat, where
every prompt is distinct, stays cheap because only the head and tail of a prompt are looked
at (`HEAD_CHARS` + `TAIL_CHARS`).

All hashes are xxh64 with fixed seeds plus fixed 64-bit mixing constants, so ids agree
across processes and machines (Python's `hash()` is salted per process and never used).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from distillguard.signals.base import string_column

# Only the head and tail of a long prompt are read: instructions sit there, and the cost per
# request stays bounded however long the pasted payload is.
HEAD_CHARS = 300
TAIL_CHARS = 200
# Joins head and tail of a long prompt; a paragraph break, so no block spans the cut.
CUT_MARK = "\n\n⟪cut⟫\n\n"

CODE_TOKEN = "⟪code⟫"
VALUE_TOKEN = "⟪v⟫"
PARAGRAPH_TOKEN = "¶"

# Fenced code blocks (a block left open by the head cut runs to the end) and inline code.
CODE_RE = r"(?s)```.*?(?:```|$)|`[^`\n]+`"
# Field-style payloads: "Question: ...", "Input: ...", "问题：..." (the label is kept). Only
# labels that introduce data: a generic "Label:" rule would also eat instruction lines such
# as "Note: show your full reasoning".
FIELD_LABELS = (
    "question|input|text|passage|context|problem|query|document|article|sentence|review|"
    "paragraph|snippet|answer|response|output|solution|topic|claim|statement|excerpt|"
    "title|source|target|code|data|example|q|a"
)
CJK_FIELD_LABELS = "问题|题目|输入|文本|回答|答案|内容|话题|原文|材料"
# The value runs to the end of the line, or through the first question mark, so an
# instruction after a question on the same line ("Question: ...? Explain your reasoning.")
# stays visible to the wording signals.
_FIELD_VALUE = r"[ \t]*[^\s?？][^\n?？]*[?？]?"
FIELD_RE = (
    rf"\b({FIELD_LABELS})[ \t]*[:：]{_FIELD_VALUE}"
    rf"|({CJK_FIELD_LABELS})[ \t]*[:：]{_FIELD_VALUE}"
)
FIELD_REPLACEMENT = rf"\1\2: {VALUE_TOKEN}"
# Atoms that vary between otherwise identical requests. Quoted phrases are masked in the
# text (a quoted single word such as a JSON key is kept). URLs, e-mails, numbers, dates, hex,
# ids with digits and snake_case identifiers are masked per *word* (WORD_ATOM_RE on the
# batch vocabulary), which costs nothing per row; a text-level alternation of all of them
# (with counted repeats) blew up RE2's DFA cache and ran ~50x slower.
QUOTE_RE = r"\"[^\"\s][^\"\n]*\s[^\"\n]*[^\"\s]\"|“[^”\n]*”|「[^」\n]*」|«[^»\n]*»"
WORD_ATOM_RE = r"\d|@|^https?:|^www\.|_"
# The same atoms in free text (for system prompts, which are few and distinct).
TEXT_ATOM_RES = (
    r"https?://\S+|www\.\S+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+",
    QUOTE_RE,
    r"\d[\w.:/-]*|\b[a-z]+(?:_[a-z0-9]+)+\b",
)
PARAGRAPH_RE = r"\n[ \t\r]*\n\s*"
# Punctuation stripped from both ends of a token before it is hashed or matched.
TOKEN_EDGE_RE = r"^[^\pL\pN⟪⟫¶]+|[^\pL\pN⟪⟫¶+#]+$"

WORD_SEED = 0x5EED_0001
TEXT_SEED = 0x5EED_0002
_U64 = np.uint64
_MIX1 = _U64(0xBF58476D1CE4E5B9)
_MIX2 = _U64(0x94D049BB133111EB)
_GOLDEN = _U64(0x9E3779B97F4A7C15)


def mix64(values: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser over a uint64 vector: a fixed, well-spread 64-bit mixing."""
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64, copy=True)
        z ^= z >> _U64(30)
        z *= _MIX1
        z ^= z >> _U64(27)
        z *= _MIX2
        z ^= z >> _U64(31)
    return z


def combine64(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """An order-sensitive hash of two uint64 vectors."""
    with np.errstate(over="ignore"):
        return mix64(left * _GOLDEN + right + _U64(0x632BE59BD9B4E019))


def as_int64(values: np.ndarray) -> np.ndarray:
    """Reinterpret uint64 hashes as int64 (Arrow's int64 columns), keeping all 64 bits."""
    return np.ascontiguousarray(values, dtype=np.uint64).view(np.int64)


def hash_strings(values: pa.Array, seed: int) -> np.ndarray:
    """xxh64 of each string (null -> hash of ""); call on distinct values only."""
    digest = xxhash.xxh64_intdigest
    return np.fromiter(
        (digest(s or b"", seed) for s in values.cast(pa.binary()).to_pylist()),
        dtype=np.uint64,
        count=len(values),
    )


def capped_view(text: pa.Array) -> pa.Array:
    """Head + CUT_MARK + tail of every prompt longer than HEAD_CHARS + TAIL_CHARS, lowercased."""
    lengths = pc.utf8_length(text)
    is_long = pc.fill_null(pc.greater(lengths, HEAD_CHARS + TAIL_CHARS), False)
    if pc.any(is_long).as_py():
        long_text = text.filter(is_long)
        head = pc.utf8_slice_codeunits(long_text, 0, HEAD_CHARS)
        tail = pc.utf8_slice_codeunits(long_text, -TAIL_CHARS, 2**31 - 1)
        # A tail that starts inside a code block closes it first: mask up to that fence.
        opens_inside = pc.equal(pc.bit_wise_and(pc.count_substring(tail, "```"), 1), 1)
        tail = pc.if_else(
            opens_inside,
            pc.replace_substring_regex(tail, r"(?s)^.*?```", f" {CODE_TOKEN} ", max_replacements=1),
            tail,
        )
        joined = pc.binary_join_element_wise(head, tail, CUT_MARK)
        text = pc.replace_with_mask(text, is_long, joined)
    return pc.utf8_lower(text)


def mask_variable_parts(view: pa.Array) -> pa.Array:
    """Replace code, field values and quoted phrases (parts that vary) with placeholders."""
    view = pc.replace_substring_regex(view, CODE_RE, f" {CODE_TOKEN} ")
    view = pc.replace_substring_regex(view, FIELD_RE, FIELD_REPLACEMENT)
    return pc.replace_substring_regex(view, QUOTE_RE, VALUE_TOKEN)


def mask_atoms(text: pa.Array) -> pa.Array:
    """Replace URLs, e-mails, quoted phrases, numbers and ids in free text with VALUE_TOKEN."""
    for pattern in TEXT_ATOM_RES:
        text = pc.replace_substring_regex(text, pattern, VALUE_TOKEN)
    return text


@dataclass(frozen=True)
class PromptText:
    """The distinct masked prompt views of a batch, tokenised once for all signals.

    `row_to_text[i]` is the index of row i's masked view in `texts`, or -1 for a null, empty
    or whitespace-only prompt. Tokens of text u are `token_word[token_offsets[u]:
    token_offsets[u + 1]]`, indices into `vocab` (punctuation-stripped words; "" for a pure
    punctuation token, PARAGRAPH_TOKEN for a blank-line break). `word_hash` hashes each word
    with atoms (numbers, ids, URLs, e-mails) replaced by VALUE_TOKEN, for fingerprints.
    """

    row_to_text: np.ndarray
    texts: pa.Array
    token_offsets: np.ndarray
    token_word: np.ndarray
    token_text: np.ndarray  # for each token, the index of the text it belongs to
    vocab: pa.Array
    word_hash: np.ndarray  # per vocab word: hash of the word with atoms masked
    is_break: np.ndarray  # per vocab word: the paragraph-break marker
    is_blank: np.ndarray  # per vocab word: nothing left after stripping punctuation

    def vocab_matches(self, pattern: str) -> np.ndarray:
        """Bool per vocab word: does the (punctuation-stripped) word contain `pattern`?"""
        if len(self.vocab) == 0:
            return np.zeros(0, dtype=bool)
        hit = pc.match_substring_regex(self.vocab, pattern)
        return pc.fill_null(hit, False).to_numpy(zero_copy_only=False)

    def texts_with_word(self, word_hit: np.ndarray) -> np.ndarray:
        """Bool per distinct text: does any of its tokens have `word_hit[word]`?"""
        token_hit = word_hit[self.token_word]
        counts = np.bincount(self.token_text[token_hit], minlength=len(self.texts))
        return counts > 0

    def texts_matching(self, pattern: str, gate: np.ndarray | None = None) -> np.ndarray:
        """Bool per distinct text for a regex; only texts where `gate` is true are scanned."""
        result = np.zeros(len(self.texts), dtype=bool)
        if len(self.texts) == 0:
            return result
        candidates = np.arange(len(self.texts)) if gate is None else np.flatnonzero(gate)
        if len(candidates) == 0:
            return result
        subset = self.texts if gate is None else self.texts.take(pa.array(candidates))
        hit = pc.fill_null(pc.match_substring_regex(subset, pattern), False)
        result[candidates] = hit.to_numpy(zero_copy_only=False)
        return result

    def to_rows(self, per_text: np.ndarray, empty_value: object) -> np.ndarray:
        """Gather a per-text vector back to rows; rows without prompt text get `empty_value`."""
        padded = np.concatenate([per_text, np.array([empty_value], dtype=per_text.dtype)])
        return padded[self.row_to_text]  # -1 picks the padding value


def build_prompt_text(batch: pa.RecordBatch) -> PromptText:
    """Cap, lowercase, mask, deduplicate and tokenise the prompts of a batch."""
    prompt = string_column(batch, "prompt")
    masked = mask_variable_parts(capped_view(prompt))
    masked = pc.utf8_trim_whitespace(masked)
    encoded = pc.fill_null(masked, "").dictionary_encode()
    texts = encoded.dictionary
    row_to_text = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    # Index of "" (if present) -> -1 so empty prompts have no template or capability.
    empty = np.flatnonzero(pc.equal(texts, "").to_numpy(zero_copy_only=False))
    if len(empty):
        row_to_text = np.where(row_to_text == empty[0], -1, row_to_text)
    with_breaks = texts
    if pc.any(pc.match_substring(texts, "\n")).as_py():
        with_breaks = pc.replace_substring_regex(texts, PARAGRAPH_RE, f" {PARAGRAPH_TOKEN} ")
    tokens = pc.ascii_split_whitespace(with_breaks)
    token_offsets = np.asarray(tokens.offsets.to_numpy(), dtype=np.int64)
    token_offsets = token_offsets - token_offsets[0]
    flat = tokens.flatten().dictionary_encode()
    vocab = pc.replace_substring_regex(flat.dictionary, TOKEN_EDGE_RE, "")
    is_atom = _bools(pc.match_substring_regex(vocab, WORD_ATOM_RE))
    hashed_words = pc.if_else(pa.array(is_atom), VALUE_TOKEN, vocab)
    counts = np.diff(token_offsets)
    return PromptText(
        row_to_text=row_to_text,
        texts=texts,
        token_offsets=token_offsets,
        token_word=flat.indices.to_numpy(zero_copy_only=False),  # int32: half the traffic
        token_text=np.repeat(np.arange(len(counts), dtype=np.int32), counts),
        vocab=vocab,
        word_hash=hash_strings(hashed_words, WORD_SEED),
        is_break=_bools(pc.equal(vocab, PARAGRAPH_TOKEN)),
        is_blank=_bools(pc.equal(vocab, "")),
    )


def _bools(values: pa.Array) -> np.ndarray:
    return pc.fill_null(values, False).to_numpy(zero_copy_only=False)


# Signals of one batch share its PromptText: a tiny identity-keyed memo (it holds the batch,
# so an id can't be reused while cached). Thread-local, because the pipeline computes
# signals for two batches at once in two threads; compute_signals clears it when done.
_MEMO = threading.local()
_MEMO_SIZE = 2


def _memo_entries() -> list[tuple[pa.RecordBatch, PromptText]]:
    entries = getattr(_MEMO, "entries", None)
    if entries is None:
        entries = _MEMO.entries = []
    return entries


def prompt_text(batch: pa.RecordBatch) -> PromptText:
    """The PromptText of `batch`, computed once per batch (per thread)."""
    entries = _memo_entries()
    for cached_batch, cached in entries:
        if cached_batch is batch:
            return cached
    built = build_prompt_text(batch)
    entries.insert(0, (batch, built))
    del entries[_MEMO_SIZE:]
    return built


def clear_memo() -> None:
    """Drop this thread's cached PromptTexts (and the batches they hold)."""
    _memo_entries().clear()
