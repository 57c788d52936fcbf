"""System prompt fingerprint."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from distillguard.signals.base import ATLAS_INFERENCE_API, ATLAS_PROXY_MODEL, Signal, string_column
from distillguard.signals.text import as_int64, hash_strings, mask_atoms

# A long system prompt is identified by its head and tail (agents append per-session context
# in the middle, e.g. file listings, which should not split one tool into many ids).
SYSTEM_HEAD_CHARS = 2000
SYSTEM_TAIL_CHARS = 1000
SYSTEM_SEED = 0x5EED_0003


def normalise_system(distinct: pa.Array) -> pa.Array:
    """Lowercased, atom-masked, whitespace-collapsed head+tail of each distinct system prompt."""
    lengths = pc.fill_null(pc.utf8_length(distinct), 0)
    is_long = pc.greater(lengths, SYSTEM_HEAD_CHARS + SYSTEM_TAIL_CHARS)
    capped = pc.if_else(
        is_long,
        pc.binary_join_element_wise(
            pc.utf8_slice_codeunits(distinct, 0, SYSTEM_HEAD_CHARS),
            pc.utf8_slice_codeunits(distinct, -SYSTEM_TAIL_CHARS, 2**31 - 1),
            " … ",
        ),
        distinct,
    )
    text = mask_atoms(pc.utf8_lower(capped))
    text = pc.replace_substring_regex(text, r"\s+", " ")
    return pc.utf8_trim_whitespace(text)


class SystemPromptSignal(Signal):
    """System prompt fingerprint: which deployment/tool a request came from.

    `sys_id` hashes the lowercased, whitespace-collapsed system prompt with variable atoms
    (dates, numbers, ids, URLs, e-mails, quoted phrases) masked, so "Today is 2026-02-03" and
    a per-user name do not split one deployment into many ids. Null without a system prompt.

    Captures:
        Extraction tooling reuses one system prompt (e.g. "You are an expert ... always show
        full reasoning") across every fake account and proxy; a sys_id shared by many
        unrelated accounts, IPs and payment instruments marks one operator behind them.

    False positives:
        Companies behind one NAT sharing an internal tool's system prompt; popular
        open-source agents and SDK examples that ship a default system prompt (coding-agent
        power users all share it); benchmark harnesses.

    Analyst check:
        Read the system prompt: is it a known product/agent default or bespoke? Are the
        accounts sharing it in one org (email domain, org_id, billing), or spread over
        throwaway accounts with unrelated payment instruments?

    ATLAS:
        AML.T0040 (inference API access), AML.T0005 (create proxy model).
    """

    name: ClassVar[str] = "system_prompt"
    output: ClassVar[pa.Schema] = pa.schema([pa.field("sys_id", pa.int64())])
    atlas: ClassVar[tuple[str, ...]] = (ATLAS_INFERENCE_API, ATLAS_PROXY_MODEL)

    def compute(self, batch: pa.RecordBatch) -> dict[str, pa.Array]:
        encoded = string_column(batch, "system").dictionary_encode()
        normalised = normalise_system(encoded.dictionary)
        hashes = hash_strings(normalised, SYSTEM_SEED)
        empty = pc.fill_null(pc.equal(normalised, ""), True).to_numpy(zero_copy_only=False)
        indices = encoded.indices
        valid = pc.is_valid(indices).to_numpy(zero_copy_only=False)
        index = pc.fill_null(indices, 0).to_numpy(zero_copy_only=False).astype(np.int64)
        if len(hashes):
            row_hash = hashes[index]
            valid &= ~empty[index]
        else:
            row_hash = np.zeros(len(index), dtype=np.uint64)
        return {"sys_id": pa.array(as_int64(row_hash), type=pa.int64(), mask=~valid)}
