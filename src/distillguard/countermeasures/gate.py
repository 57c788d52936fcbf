"""The gate: apply the countermeasures a decision names, and nothing otherwise.

`distillguard serve` decisions carry `"countermeasures": [...]` (empty for `allow`). The gate
acts only on those names; a decision without any (or `allow`, or no decision at all) returns
the response object untouched, so unflagged traffic is byte-identical.

Response-level measures (applied here, to text): `summarise_reasoning`, `caps`, `canary`.
Sampler-level measures (`watermark`, `antidistillation`) change how tokens are drawn, so they
must run inside the inference server: `sampling_hooks` returns the logits processors to add.
`request_params` lowers the request's output and thinking budgets under `caps`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from distillguard.countermeasures.caps import Caps, cap_request, truncate_words
from distillguard.countermeasures.reasoning import ExtractiveSummariser, Summariser, withhold
from distillguard.countermeasures.variants import (
    ProvenanceKeys,
    canary_answer,
    watermark_processor,
)

SUMMARISE, CAPS, CANARY = "summarise_reasoning", "caps", "canary"
WATERMARK, ANTIDISTILLATION = "watermark", "antidistillation"
RESPONSE_MEASURES = (SUMMARISE, CAPS, CANARY)
SAMPLER_MEASURES = (WATERMARK, ANTIDISTILLATION)
KNOWN = RESPONSE_MEASURES + SAMPLER_MEASURES
REASONING_FIELDS = ("reasoning_content", "reasoning")  # LiteLLM/DeepSeek, OpenRouter


@dataclass(frozen=True)
class ServedResponse:
    """What the user receives: the answer and, for reasoning models, the visible trace."""

    content: str
    reasoning: str | None = None
    prompt: str = ""
    account_id: str = ""
    applied: tuple[str, ...] = ()  # measures that changed this response


@dataclass(frozen=True)
class Settings:
    """How each measure is configured at the gateway."""

    summariser: Summariser = field(default_factory=ExtractiveSummariser)
    withhold_reasoning: bool = False  # True: no summary, a fixed note instead of the trace
    caps: Caps = field(default_factory=Caps)
    keys: ProvenanceKeys | None = None  # needed by canary and watermark
    # antidistillation: the inference server supplies a factory for its hook (needs a proxy)
    antidistillation_hook: Callable[[], Any] | None = None


DEFAULT_SETTINGS = Settings()


def measures_of(decision: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The known countermeasures a decision names; none for `allow` or no decision."""
    if not decision or decision.get("decision") == "allow":
        return ()
    named = decision.get("countermeasures") or ()
    return tuple(m for m in KNOWN if m in named)


def apply(
    decision: Mapping[str, Any] | None,
    response: ServedResponse,
    settings: Settings = DEFAULT_SETTINGS,
) -> ServedResponse:
    """`response` with the decision's response-level countermeasures applied.

    Returns the very same object when the decision names none of them.
    """
    names = [m for m in measures_of(decision) if m in RESPONSE_MEASURES]
    if not names:
        return response
    content, reasoning, applied = response.content, response.reasoning, []
    if SUMMARISE in names and reasoning:
        reasoning = (
            withhold(reasoning) if settings.withhold_reasoning else settings.summariser(reasoning)
        )
        applied.append(SUMMARISE)
    if CAPS in names:
        capped = truncate_words(reasoning, settings.caps.thinking_budget)
        capped_content = truncate_words(content, settings.caps.max_output_tokens) or ""
        if capped != reasoning or capped_content != content:
            applied.append(CAPS)
        reasoning, content = capped, capped_content
    if CANARY in names and settings.keys is not None and content:
        key = settings.keys.for_account(response.account_id)
        variant = canary_answer(response.prompt, content, key)
        if variant != content:
            applied.append(CANARY)
        content = variant
    return replace(response, content=content, reasoning=reasoning, applied=tuple(applied))


def request_params(
    decision: Mapping[str, Any] | None,
    params: dict[str, Any],
    settings: Settings = DEFAULT_SETTINGS,
) -> dict[str, Any]:
    """Request params with lower output and thinking budgets when `caps` is named."""
    return cap_request(params, settings.caps) if CAPS in measures_of(decision) else params


def sampling_hooks(
    decision: Mapping[str, Any] | None,
    account_id: str,
    settings: Settings = DEFAULT_SETTINGS,
    vocab_size: int = 0,
    token_keys: Any = None,
) -> list[Any]:
    """Logits processors `(input_ids, logits) -> logits` for the inference server, in order:
    antidistillation first (it reshapes the teacher distribution), then the watermark bias."""
    names = measures_of(decision)
    hooks: list[Any] = []
    if ANTIDISTILLATION in names and settings.antidistillation_hook is not None:
        hooks.append(settings.antidistillation_hook())
    if WATERMARK in names and settings.keys is not None:
        key = settings.keys.for_account(account_id)
        hooks.append(watermark_processor(key, vocab_size=vocab_size, token_keys=token_keys))
    return hooks


# ------------------------------------------------------------- OpenAI-style chat completions
def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def _set(obj: Any, name: str, value: Any) -> None:
    if isinstance(obj, dict):
        obj[name] = value
    else:
        setattr(obj, name, value)


def last_user_prompt(messages: Any) -> str:
    """Text of the last user message of an OpenAI-style `messages` list ('' if none)."""
    for message in reversed(list(messages or [])):
        if _get(message, "role") == "user":
            content = _get(message, "content")
            if isinstance(content, str):
                return content
            parts = [_get(p, "text") for p in content or [] if _get(p, "type") == "text"]
            return "\n".join(p for p in parts if isinstance(p, str))
    return ""


def apply_chat(
    decision: Mapping[str, Any] | None,
    completion: Any,
    settings: Settings = DEFAULT_SETTINGS,
    prompt: str = "",
    account_id: str = "",
) -> Any:
    """Apply the gate to every choice of a chat completion (a dict or a LiteLLM ModelResponse).

    No measure named: the same object is returned untouched. Otherwise a dict is deep-copied
    and changed; an object (LiteLLM's ModelResponse) is changed in place and returned.
    """
    if not any(m in RESPONSE_MEASURES for m in measures_of(decision)):
        return completion
    out = copy.deepcopy(completion) if isinstance(completion, dict) else completion
    for choice in _get(out, "choices") or []:
        message = _get(choice, "message")
        content = _get(message, "content") if message is not None else None
        if not isinstance(content, str):
            continue
        field_name = next((f for f in REASONING_FIELDS if _get(message, f) is not None), None)
        reasoning = _get(message, field_name) if field_name else None
        served = apply(
            decision,
            ServedResponse(
                content, reasoning if isinstance(reasoning, str) else None, prompt, account_id
            ),
            settings,
        )
        _set(message, "content", served.content)
        if field_name and isinstance(reasoning, str):
            _set(message, field_name, served.reasoning)
    return out
