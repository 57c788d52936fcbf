"""Capability targeted by a request."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from distillguard.contract import CAPABILITIES
from distillguard.signals.base import (
    ATLAS_EXFIL_INFERENCE,
    ATLAS_INFERENCE_API,
    Signal,
    int_column,
    string_column,
)
from distillguard.signals.system_prompt import normalise_system
from distillguard.signals.text import CODE_TOKEN, prompt_text

BIT = {name: 1 << i for i, name in enumerate(CAPABILITIES)}

# Whole-word vocabularies (matched against punctuation-stripped lowercase words) and CJK
# substrings (Chinese has no spaces, so a "word" is a whole clause). One place per category.
WORDS: dict[str, tuple[str, ...]] = {
    "coding": (
        "code",
        "coding",
        "program",
        "programming",
        "python",
        "javascript",
        "typescript",
        "java",
        "golang",
        "rust",
        "c++",
        "c#",
        "sql",
        "html",
        "css",
        "regex",
        "function",
        "functions",
        "class",
        "method",
        "def",
        "import",
        "compile",
        "compiler",
        "debug",
        "debugging",
        "bug",
        "bugs",
        "refactor",
        "script",
        "api",
        "json",
        "yaml",
        "bash",
        "shell",
        "git",
        "docker",
        "kubernetes",
        "algorithm",
        "leetcode",
        "traceback",
        "stacktrace",
        "exception",
        "segfault",
        "npm",
        "pip",
        "react",
        "django",
        "unittest",
        "pytest",
        "repository",
        "repo",
        "codebase",
        "implement",
        "snippet",
        CODE_TOKEN,
    ),
    "math": (
        "math",
        "maths",
        "mathematics",
        "integral",
        "derivative",
        "equation",
        "equations",
        "theorem",
        "prove",
        "proof",
        "lemma",
        "algebra",
        "calculus",
        "probability",
        "matrix",
        "polynomial",
        "geometry",
        "triangle",
        "calculate",
        "compute",
        "fraction",
        "arithmetic",
        "combinatorics",
        "inequality",
        "modulo",
        "prime",
        "primes",
        "integer",
        "integers",
        "sqrt",
        "frac",
        "amc",
        "aime",
        "olympiad",
        "gsm8k",
    ),
    "reasoning": (
        "reasoning",
        "reason",
        "logic",
        "logical",
        "puzzle",
        "riddle",
        "deduce",
        "deduction",
        "infer",
        "inference",
        "syllogism",
        "hypothesis",
        "counterfactual",
        "step-by-step",
        "think",
        "thinking",
        "rationale",
        "justify",
        "analyze",
        "analyse",
    ),
    "tool_use": (
        "tool",
        "tools",
        "tool_call",
        "tool_calls",
        "function_call",
        "function-calling",
        "invoke",
        "api_call",
    ),
    "agentic": (
        "agent",
        "agents",
        "agentic",
        "autonomous",
        "autonomously",
        "browse",
        "browser",
        "navigate",
        "click",
        "screenshot",
        "subtask",
        "subtasks",
        "orchestrate",
        "orchestration",
        "trajectory",
        "workflow",
        "terminal",
        "execute",
        "planner",
    ),
    "vision": (
        "image",
        "images",
        "picture",
        "pictures",
        "photo",
        "photos",
        "photograph",
        "screenshot",
        "diagram",
        "chart",
        "ocr",
        "figure",
    ),
    "creative": (
        "poem",
        "poems",
        "poetry",
        "story",
        "stories",
        "novel",
        "lyrics",
        "song",
        "haiku",
        "fiction",
        "screenplay",
        "sonnet",
        "limerick",
        "fanfic",
        "roleplay",
        "character",
    ),
    "chitchat": (
        "hi",
        "hello",
        "hey",
        "thanks",
        "thank",
        "thx",
        "lol",
        "haha",
        "bye",
        "morning",
    ),
    "sensitive": (
        "tiananmen",
        "xinjiang",
        "uyghur",
        "uyghurs",
        "uighur",
        "tibet",
        "tibetan",
        "dalai",
        "falun",
        "taiwan",
        "jinping",
        "ccp",
        "censorship",
        "censored",
        "dissident",
        "dissidents",
        "politically",
        "hongkong",
    ),
}
CJK: dict[str, tuple[str, ...]] = {
    "coding": ("代码", "编程", "函数", "程序", "算法"),
    "math": ("数学", "方程", "证明", "积分", "导数", "概率", "几何"),
    "reasoning": ("推理", "逻辑", "思考", "一步一步", "逐步"),
    "tool_use": ("工具", "调用"),
    "agentic": ("智能体", "自主", "浏览器", "点击"),
    "vision": ("图片", "图像", "截图", "照片"),
    "creative": ("诗", "故事", "小说", "歌词"),
    "chitchat": ("你好", "谢谢"),
    "sensitive": (
        "天安门",
        "六四",
        "新疆",
        "维吾尔",
        "西藏",
        "达赖",
        "法轮",
        "台独",
        "习近平",
        "敏感",
        "审查",
    ),
}
# When several capabilities are present, the primary one is the first in this order: the
# rarest, most valuable-to-distil modality or skill wins over generic ones.
PRIORITY = (
    "vision",
    "agentic",
    "tool_use",
    "coding",
    "math",
    "sensitive",
    "reasoning",
    "creative",
    "chitchat",
)


def _escape(word: str) -> str:
    return "".join("\\" + c if c in r".^$*+?()[]{}|\-" else c for c in word)


def word_pattern(category: str) -> str:
    """Regex over one punctuation-stripped word: a whole listed word or a CJK substring."""
    words = "|".join(_escape(w) for w in WORDS[category])
    cjk = "|".join(CJK[category])
    return f"^(?:{words})$" + (f"|{cjk}" if cjk else "")


def text_pattern(category: str) -> str:
    """Regex over free text: a listed word at word boundaries or a CJK substring."""
    words = "|".join(_escape(w) for w in WORDS[category] if w.isascii())
    cjk = "|".join(CJK[category])
    return rf"\b(?:{words})\b" + (f"|{cjk}" if cjk else "")


def _system_bits(batch: pa.RecordBatch) -> np.ndarray:
    """Capability bits named by each row's system prompt (work on distinct prompts only)."""
    encoded = string_column(batch, "system").dictionary_encode()
    bits = np.zeros(len(encoded.dictionary) + 1, dtype=np.int32)
    if len(encoded.dictionary):
        text = normalise_system(encoded.dictionary)
        for category in ("coding", "math", "tool_use", "agentic", "vision"):
            hit = pc.fill_null(pc.match_substring_regex(text, text_pattern(category)), False)
            bits[:-1] |= np.where(hit.to_numpy(zero_copy_only=False), BIT[category], 0)
    index = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)
    return bits[index]


def _structured_bits(batch: pa.RecordBatch) -> np.ndarray:
    """Bits implied by the request's structure, independent of its wording."""
    tools = int_column(batch, "tools")
    tool_calls = int_column(batch, "tool_calls")
    turn = int_column(batch, "turn")
    bits = np.zeros(batch.num_rows, dtype=np.int32)
    bits |= np.where(int_column(batch, "images") > 0, BIT["vision"], 0)
    bits |= np.where((tools > 0) | (tool_calls > 0), BIT["tool_use"], 0)
    # A later turn of a conversation that keeps calling tools is an agent loop.
    bits |= np.where((tool_calls > 0) & (turn > 0), BIT["agentic"], 0)
    bits |= np.where(int_column(batch, "thinking_budget") > 0, BIT["reasoning"], 0)
    return bits


class CapabilitySignal(Signal):
    """Capability a request exercises, as a bitmask over contract.CAPABILITIES.

    Bits come from the prompt's words (masked head and tail; code blocks count as coding),
    the system prompt (coding/math/tool/agent/vision wording), and the request structure:
    images > 0 -> vision, tools or tool_calls > 0 -> tool_use, tool calls on a later turn ->
    agentic, thinking_budget > 0 -> reasoning. A non-empty prompt with no other bit is
    chitchat. `capability` is the primary bit in PRIORITY order (null for an empty prompt
    with no structural hint).

    Captures:
        What a campaign is distilling: extraction concentrates on the model's best skills
        (coding, tool orchestration, agentic reasoning, computer use, vision, step-by-step
        reasoning) and on sensitive topics, while an ordinary account's mix is broad.

    False positives:
        Per request this is descriptive, not suspicious: coding-agent power users are all
        coding/tool_use/agentic, benchmark runs are all math/reasoning. It matters only as
        an account's or cluster's capability mix compared with its peers.

    Analyst check:
        Compare the account's capability mix with its org and tier peers; a narrow mix on
        premium capabilities from many young accounts is the pattern, not one request.

    ATLAS:
        AML.T0040 (inference API access), AML.T0024 (exfiltration via inference API).
    """

    name: ClassVar[str] = "capability"
    output: ClassVar[pa.Schema] = pa.schema(
        [pa.field("cap_mask", pa.int32()), pa.field("capability", pa.string())]
    )
    atlas: ClassVar[tuple[str, ...]] = (ATLAS_INFERENCE_API, ATLAS_EXFIL_INFERENCE)

    def compute(self, batch: pa.RecordBatch) -> dict[str, pa.Array]:
        pt = prompt_text(batch)
        word_bits = np.zeros(len(pt.vocab), dtype=np.int32)
        for category in CAPABILITIES:
            word_bits |= np.where(pt.vocab_matches(word_pattern(category)), BIT[category], 0)
        text_bits = np.zeros(len(pt.texts), dtype=np.int32)
        token_bits = word_bits[pt.token_word]
        carries = np.flatnonzero(token_bits)  # most words name no capability
        np.bitwise_or.at(text_bits, pt.token_text[carries], token_bits[carries])
        has_text = pt.row_to_text >= 0
        bits = pt.to_rows(text_bits, np.int32(0))
        bits |= _structured_bits(batch) | _system_bits(batch)
        bits |= np.where(has_text & (bits == 0), BIT["chitchat"], 0)
        return {
            "cap_mask": pa.array(bits.astype(np.int32), type=pa.int32()),
            "capability": _primary(bits),
        }


def _primary(bits: np.ndarray) -> pa.Array:
    """Name of the highest-priority capability bit per row (null when no bit is set)."""
    choice = np.full(len(bits), len(PRIORITY), dtype=np.int64)
    for rank in range(len(PRIORITY) - 1, -1, -1):
        choice = np.where(bits & BIT[PRIORITY[rank]], rank, choice)
    names = pa.array([*PRIORITY, None], type=pa.string())
    return names.take(pa.array(choice))
