"""Use of the maximum output length and of extended thinking."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pyarrow as pa

from distillguard.signals.base import (
    ATLAS_EXFIL_INFERENCE,
    ATLAS_INFERENCE_API,
    Signal,
    bool_array,
    int_column,
)

# max_tokens at or above this is "ask for everything the model can write" (SDK defaults
# and chat apps sit at 1k-8k).
HIGH_MAX_TOKENS = 16_000
# Output that fills the cap: truncated at max_tokens, i.e. the client took all it could get.
NEAR_CAP_RATIO = 0.95
# ... but only for long outputs: a classifier with max_tokens=5 that writes 5 tokens is not
# harvesting anything.
NEAR_CAP_MIN_TOKENS = 1_000


class OutputBudgetSignal(Signal):
    """Maximum output length and extended thinking: `max_out` and `thinking`.

    `max_out`: max_tokens >= HIGH_MAX_TOKENS, or an output of at least NEAR_CAP_MIN_TOKENS
    that reached NEAR_CAP_RATIO of max_tokens. `thinking`: thinking_budget > 0.

    Captures:
        Extraction maximises tokens per request (requests are rate-limited and accounts are
        burned): output caps at the model's maximum, outputs running into the cap, and
        extended-thinking budgets to harvest reasoning.

    False positives:
        Coding-agent power users run with high max_tokens and thinking on (legitimately
        fires); long-form writing and report generation fill the cap. Ordinary chat with
        SDK default caps and short answers, and short-cap classifiers, do not fire.

    Analyst check:
        Is the share of max_out/thinking requests out of line with the account's tier and
        user agent (an IDE agent vs. a bare HTTP client)? Combined with templated CoT
        prompts it is strong; alone it is weak.

    ATLAS:
        AML.T0024 (exfiltration via inference API), AML.T0040 (inference API access).
    """

    name: ClassVar[str] = "output_budget"
    output: ClassVar[pa.Schema] = pa.schema(
        [pa.field("max_out", pa.bool_()), pa.field("thinking", pa.bool_())]
    )
    atlas: ClassVar[tuple[str, ...]] = (ATLAS_EXFIL_INFERENCE, ATLAS_INFERENCE_API)

    def compute(self, batch: pa.RecordBatch) -> dict[str, pa.Array]:
        max_tokens = int_column(batch, "max_tokens")
        output_tokens = int_column(batch, "output_tokens")
        fills_cap = (
            (max_tokens > 0)
            & (output_tokens >= NEAR_CAP_MIN_TOKENS)
            & (output_tokens >= np.ceil(NEAR_CAP_RATIO * max_tokens))
        )
        return {
            "max_out": bool_array((max_tokens >= HIGH_MAX_TOKENS) | fills_cap),
            "thinking": bool_array(int_column(batch, "thinking_budget") > 0),
        }
