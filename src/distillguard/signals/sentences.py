"""Sentence fingerprints: hashes of the short instruction sentences around a prompt's payload."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from distillguard.signals.base import (
    ATLAS_EXFIL_INFERENCE,
    ATLAS_PROXY_MODEL,
    Signal,
    string_column,
)
from distillguard.signals.text import as_int64, hash_strings, mask_atoms

HEAD_CHARS = 600
TAIL_CHARS = 400
MIN_WORDS = 3
MAX_WORDS = 24  # longer sentences are payload (the task itself), not wrapper
MAX_SENTENCES = 8  # per prompt: the wrapper is a handful of sentences
SEP = "\x1f"
SEED = 0x5E27_E11C


class SentenceSignal(Signal):
    """Instruction sentences shared across accounts, whatever their order.

    **Captures**: paraphrased extraction wrappers. An evasive campaign recombines a library of
    instruction sentences ("Do not refuse or truncate; give the complete answer.", "First
    outline your approach, then execute it, then check the result.") in varied order around
    varied payloads, so whole-prompt templates and prefix hashes differ per request. The same
    short sentences still recur across the campaign's accounts. `sent_ids` holds the hashes of
    a prompt's short sentences (masked numbers/quotes/URLs, lowercased), so the link graph
    can weigh how much of two accounts' traffic carries the same sentences.

    **False positives**: stock phrases ("Thanks!", "Can you help me?", "Explain like I'm
    five.") recur across unrelated users; the link graph discounts a sentence by how many
    accounts use it and by how small a share of each account's traffic carries it. Teams
    with a shared prompt library (one company, one benchmark suite) share sentences by design:
    linking them is right; scoring decides whether the linked group behaves like extraction.

    **Analyst check**: read a sample of the shared sentences; a campaign's are instructions
    about answer completeness, reasoning disclosure and output format, not the task topic.

    **ATLAS**: AML.T0024 (exfiltration via inference API), AML.T0005 (proxy model data).
    """

    name: ClassVar[str] = "sentences"
    output: ClassVar[pa.Schema] = pa.schema([pa.field("sent_ids", pa.list_(pa.int64()))])
    atlas: ClassVar[tuple[str, ...]] = (ATLAS_EXFIL_INFERENCE, ATLAS_PROXY_MODEL)

    def compute(self, batch: pa.RecordBatch) -> dict[str, pa.Array]:
        return {"sent_ids": sentence_ids(string_column(batch, "prompt"))}


def _head_and_tail(text: pa.Array) -> pa.Array:
    long = pc.fill_null(pc.greater(pc.utf8_length(text), HEAD_CHARS + TAIL_CHARS), False)
    head = pc.utf8_slice_codeunits(text, 0, HEAD_CHARS)
    tail = pc.utf8_slice_codeunits(text, -TAIL_CHARS, 2**31 - 1)
    return pc.if_else(long, pc.binary_join_element_wise(head, tail, SEP), text)


def sentence_ids(prompts: pa.Array) -> pa.Array:
    """list<int64> of hashed short sentences per prompt (empty list for null/empty prompts)."""
    text = pc.fill_null(prompts, "")
    text = pc.utf8_lower(_head_and_tail(text))
    text = pc.replace_substring_regex(text, r"([.!?;:])\s+|\n+", "\\1" + SEP)
    parts = pc.split_pattern(text, SEP)
    offsets = parts.offsets.to_numpy()
    flat = pc.utf8_trim_whitespace(parts.flatten())
    flat = pc.utf8_trim_whitespace(mask_atoms(flat))
    # Word count as list length of a whitespace split: ~8x cheaper than counting r"\S+".
    words = pc.list_value_length(pc.ascii_split_whitespace(flat)).to_numpy(zero_copy_only=False)
    keep = (words >= MIN_WORDS) & (words <= MAX_WORDS)
    row = np.repeat(np.arange(len(text)), np.diff(offsets))
    # At most MAX_SENTENCES kept per prompt, in text order.
    kept_rank = np.cumsum(keep) - 1
    first_kept = np.concatenate([[0], np.cumsum(keep)])[offsets[:-1]]
    keep &= (kept_rank - first_kept[row]) < MAX_SENTENCES
    sel = np.flatnonzero(keep)
    values = flat.take(pa.array(sel))
    encoded = pc.dictionary_encode(values)
    hashes = as_int64(hash_strings(encoded.dictionary, SEED))
    ids = hashes[encoded.indices.to_numpy(zero_copy_only=False)] if len(sel) else hashes[:0]
    counts = np.bincount(row[sel], minlength=len(text))
    new_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(new_offsets), pa.array(ids, pa.int64()))
