"""Caps: lower output-length limits and a thinking budget for flagged accounts.

Two places: the *request* (lower `max_tokens` / `max_completion_tokens` and the thinking
budget before the model runs; this also saves the provider's compute), and the *response*
(truncate what the model returned, for back-ends that ignore the request fields). Response
truncation counts whitespace-separated words as tokens: an approximation that errs towards
keeping a little more than the budget for most tokenizers (one word is one or more tokens).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TRUNCATED_NOTE = " [truncated]"
OUTPUT_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
# reasoning_effort is an ordinal knob (OpenAI-style); a flagged account gets at most this one
EFFORT_ORDER = ("minimal", "low", "medium", "high")


@dataclass(frozen=True)
class Caps:
    """Limits for flagged accounts. 0 turns a limit off."""

    max_output_tokens: int = 1024
    thinking_budget: int = 256
    reasoning_effort: str = "low"


def _lower(value: Any, cap: int) -> int:
    return cap if not isinstance(value, int) or value <= 0 else min(value, cap)


def cap_request(params: dict[str, Any], caps: Caps) -> dict[str, Any]:
    """A copy of OpenAI/Anthropic-style request params with the caps applied."""
    out = dict(params)
    if caps.max_output_tokens:
        present = [f for f in OUTPUT_FIELDS if f in out] or ["max_tokens"]
        for f in present:
            out[f] = _lower(out.get(f), caps.max_output_tokens)
    if caps.thinking_budget:
        thinking = out.get("thinking")
        if isinstance(thinking, dict) and thinking.get("type") == "enabled":
            out["thinking"] = {
                **thinking,
                "budget_tokens": _lower(thinking.get("budget_tokens"), caps.thinking_budget),
            }
    effort = out.get("reasoning_effort")
    if isinstance(effort, str) and effort in EFFORT_ORDER and caps.reasoning_effort:
        top = EFFORT_ORDER.index(caps.reasoning_effort)
        out["reasoning_effort"] = EFFORT_ORDER[min(EFFORT_ORDER.index(effort), top)]
    return out


def truncate_words(text: str | None, budget: int) -> str | None:
    """`text` cut after `budget` words (0 = no limit), marked as truncated."""
    if text is None or budget <= 0:
        return text
    words = text.split()
    if len(words) <= budget:
        return text
    return " ".join(words[:budget]) + TRUNCATED_NOTE
