"""Chain-of-thought elicitation."""

from __future__ import annotations

from typing import ClassVar

import pyarrow as pa

from distillguard.signals._content import rows_flagged
from distillguard.signals.base import (
    ATLAS_EXFIL_INFERENCE,
    ATLAS_PROXY_MODEL,
    Signal,
    bool_array,
)

# Words without which no pattern below can match (checked on the batch vocabulary first).
GATE = (
    r"reason|thought|think|thinking|step|chain|cot|scratchpad|monologue|deliberat|rationale|"
    r"arrived|推理|思考|思路|思维|步骤|一步"
)
_REVEAL = (
    r"(?:write|spell|lay|walk|show|output|reveal|expose|explain|provide|give|describe|"
    r"include|articulate|reconstruct|generate|verbali[sz]e|transcribe|print|dump|detail|"
    r"state|narrate)"
)
_REASONING = (
    r"(?:reasoning|thinking|thoughts|thought process|chain[- ]of[- ]thought|"
    r"deliberation|rationale|inner monologue|scratchpad)"
)
PATTERNS = (
    # The case's phrasing: the reasoning *behind / that led to* a given answer.
    r"(?:reasoning|thinking|thought process|logic|steps?)\s+(?:that\s+)?(?:behind|led to|"
    r"leading to|lead to|underlying|used to (?:reach|get|arrive at)|for)\s+(?:this|the|that|"
    r"your|its|each|every|a|an)?\s*(?:given\s+|final\s+|following\s+)?(?:answer|response|"
    r"solution|output|conclusion|result|decision|completion)",
    # Hidden / internal / full reasoning requested as output.
    r"(?:internal|hidden|underlying|inner|private|complete|full|detailed|entire|raw|"
    r"verbatim|unfiltered|exhaustive|explicit)\s+(?:step[- ]by[- ]step\s+)?" + _REASONING,
    r"\bchain[- ]of[- ]thoughts?\b|\bcot\b|reasoning (?:trace|traces|chain|path)|"
    r"thought process|thinking process|scratchpad|inner monologue",
    # "Write out step by step ...", "show your reasoning", "explain your thinking".
    r"(?:write|spell|lay|walk)\s+(?:me\s+)?(?:out|through)\b[^.\n]{0,40}\bstep[- ]by[- ]step",
    _REVEAL + r"\b[^.\n]{0,30}\b(?:your|the|its|all|every|each|my)\s+(?:own\s+)?" + _REASONING,
    r"how (?:you|the model|the assistant|an expert|one) (?:arrived|got|came|would arrive) "
    r"(?:at|to)\b",
    r"before (?:giving|answering|the final answer)[^.\n]{0,30}\b(?:reason|think)",
    # Chinese: reasoning/thinking process, chain of thought, write out step by step.
    r"推理过程|思考过程|思维过程|思维链|思路过程|内部推理|详细推理|完整推理|推理步骤|"
    r"(?:写出|展示|给出|说明|解释|列出)[^。\n]{0,12}(?:推理|思考|思路)|"
    r"一步一步[^。\n]{0,8}(?:写|推理|展示|解释|说明|思考)|逐步推理",
)
PATTERN = "|".join(f"(?:{p})" for p in PATTERNS)


class CotSignal(Signal):
    """Chain-of-thought elicitation: the prompt asks the model to write out its reasoning.

    Fires on requests to expose reasoning as output: the reasoning "behind"/"that led to" an
    answer, internal/hidden/full reasoning or thought process, chain-of-thought, "write out
    step by step", "show/explain your reasoning" (and Chinese: 推理过程, 思考过程, 思维链,
    一步一步写出...). A bare "think step by step" / "let's think step by step" does not fire:
    it asks for a better answer, not for the reasoning as a product.

    Captures:
        Distillers harvest reasoning traces to train a student's reasoning: templated
        prompts such as "write out step by step the internal reasoning behind this answer",
        often pairing a given answer with a request to reconstruct the hidden reasoning.

    False positives:
        Academic benchmark runs (chain-of-thought evaluation prompts "explain your reasoning,
        then give the final answer" legitimately fire), students and tutors asking "show
        your reasoning", prompt engineers. A plain "think step by step" is deliberately not
        flagged. Weight comes from volume, templating and spread over accounts, not one hit.

    Analyst check:
        Does the wrapper supply the answer and ask for the reasoning behind it (trace
        reconstruction) rather than ask a question? Is it one template over many accounts,
        near max output length, with thinking budgets?

    ATLAS:
        AML.T0024 (exfiltration via inference API), AML.T0005 (create proxy model).
    """

    name: ClassVar[str] = "cot"
    output: ClassVar[pa.Schema] = pa.schema([pa.field("cot", pa.bool_())])
    atlas: ClassVar[tuple[str, ...]] = (ATLAS_EXFIL_INFERENCE, ATLAS_PROXY_MODEL)

    def compute(self, batch: pa.RecordBatch) -> dict[str, pa.Array]:
        return {"cot": bool_array(rows_flagged(batch, GATE, PATTERN))}
