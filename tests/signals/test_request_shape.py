"""Capability, system prompt and output budget signals."""

from __future__ import annotations

from distillguard.contract import CAPABILITIES
from distillguard.signals import compute_signals
from distillguard.signals.capability import BIT

from .conftest import events


def _out(prompts: list, **columns) -> dict[str, list]:
    return compute_signals(events(prompts, **columns)).to_pydict()


def _has(mask: int, capability: str) -> bool:
    return bool(mask & (1 << CAPABILITIES.index(capability)))


def test_capability_bits_follow_contract_order() -> None:
    assert [BIT[c] for c in CAPABILITIES] == [1 << i for i in range(len(CAPABILITIES))]


def test_capability_from_prompt_words() -> None:
    out = _out([
        "```python\ndef f(x): return x\n```\nWhy does this function return None sometimes?",
        "Prove that the square root of 2 is irrational.",
        "Write a haiku about the ocean at dawn.",
        "hey, thanks for the help yesterday!",
        "Rewrite your answer about Tiananmen so it is politically neutral.",
        "请用Python写一个函数，计算斐波那契数列。",
    ])
    assert out["capability"] == ["coding", "math", "creative", "chitchat", "sensitive", "coding"]


def test_capability_from_request_structure() -> None:
    out = _out(
        ["What is in this picture?", "Book me a table", "Continue.", "Continue.", "ok"],
        images=[2, 0, 0, 0, 0],
        tools=[0, 5, 5, 0, 0],
        tool_calls=[0, 1, 3, 0, 0],
        turn=[0, 0, 4, 0, 0],
        thinking_budget=[0, 0, 0, 8000, 0],
    )
    assert out["capability"][:4] == ["vision", "tool_use", "agentic", "reasoning"]
    assert _has(out["cap_mask"][2], "tool_use") and _has(out["cap_mask"][2], "agentic")
    assert out["cap_mask"][4] == BIT["chitchat"]  # nothing else: ordinary chat


def test_capability_from_system_prompt() -> None:
    out = _out(["Continue.", "Continue."],
               system=["You are an autonomous coding agent working in a git repository.", None])
    assert _has(out["cap_mask"][0], "coding") and _has(out["cap_mask"][0], "agentic")
    assert out["cap_mask"][1] == BIT["chitchat"]


def test_system_prompt_id_ignores_dates_names_and_whitespace() -> None:
    systems = [
        "You are AcmeBot, the internal assistant of Acme Corp.\nToday's date is 2026-02-03.",
        "You are AcmeBot, the internal assistant of  Acme Corp. Today's date is 2026-03-14.",
        "you are acmebot, the internal assistant of acme corp. today's date is 2025-12-01.",
        "You are a helpful assistant.",
        None,
        "   ",
    ]
    ids = _out(["hi"] * len(systems), system=systems)["sys_id"]
    assert ids[0] == ids[1] == ids[2]
    assert ids[3] is not None and ids[3] != ids[0]
    assert ids[4] is None and ids[5] is None


def test_max_out_fires_on_high_caps_and_outputs_that_fill_the_cap() -> None:
    out = _out(
        ["x"] * 5,
        max_tokens=[64000, 4096, 4096, 5, None],
        output_tokens=[900, 4096, 1200, 5, 3000],
        thinking_budget=[32000, 0, None, 0, 1024],
    )
    # 64k cap; 4096 of 4096 (truncated at the cap); 1200 of 4096: not; a 5-token classifier
    # hitting its cap of 5: not (no harvest); no cap at all: not.
    assert out["max_out"] == [True, True, False, False, False]
    assert out["thinking"] == [True, False, False, False, True]


def test_max_out_benign_chat_does_not_fire_but_coding_agents_legitimately_do() -> None:
    # Ordinary chat with SDK-default caps and short answers does not fire; a coding agent
    # (IDE client, 32k cap, thinking on) legitimately fires both. The signal is weighed by
    # account share and user agent downstream, not per request.
    out = _out(
        ["What's the weather like in Lisbon in May?", "Refactor the auth module."],
        max_tokens=[1024, 32000], output_tokens=[180, 2500], thinking_budget=[0, 16000],
        user_agent=["openai-python/1.40", "claude-cli/1.0 (external, cli)"],
    )
    assert out["max_out"] == [False, True]
    assert out["thinking"] == [False, True]
