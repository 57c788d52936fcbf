"""Rubric-based grading and reward-model prompts."""

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

GATE = (
    r"rubric|grad|scor|rate|rating|evaluat|judg|reward|criteri|preferr|prefer|better|"
    r"likert|assess|评分|打分|奖励|评判|评估|标准|更好"
)
_NUM = r"(?:⟪v⟫|\d+)"
_THING = (
    r"(?:response|responses|answer|answers|completion|completions|output|outputs|reply|"
    r"replies|essay|submission|solution|summary|translation|candidate|assistant'?s?)"
)
PATTERNS = (
    # Grading against a rubric / criteria supplied in the prompt.
    r"(?:using|according to|based on|against|follow|apply|per|with)\s+(?:the|this|a|"
    r"following|given|below|provided)?\s*(?:following\s+|grading\s+|scoring\s+)?"
    r"(?:rubric|criteria|scoring guide|grading guide|scoring scheme|marking scheme)",
    r"\brubric\s*[:：]|(?:grading|scoring|evaluation)\s+(?:rubric|criteria|guidelines)\s*[:：]",
    # Scoring a response on a scale / emitting a score.
    r"(?:rate|score|grade|evaluate|judge|assess)\s+(?:the|this|each|every|both|following|"
    r"given|candidate|assistant'?s?)?\s*(?:following\s+|given\s+|ai\s+|model\s+|two\s+)?" + _THING,
    rf"(?:on a scale (?:of|from)|from {_NUM} to {_NUM}|out of {_NUM}|{_NUM}\s*-\s*{_NUM} "
    r"scale|likert)[^.\n]{0,60}\b(?:score|rating|grade|quality|helpful|harmless|correct)|"
    rf"(?:score|rating|grade)\s+(?:of|between|from)\s+{_NUM}",
    r"(?:output|return|give|provide|respond with)\s+(?:only\s+)?(?:a|the|your|one)?\s*"
    r"(?:final\s+|numeric(?:al)?\s+|overall\s+)?(?:score|grade|rating|verdict)\b",
    r"\[\[(?:⟪v⟫|\d+|a|b)\]\]|\bverdict\s*[:：]",
    # Acting as a judge / reward model; pairwise preference.
    r"(?:as|act as|you are|serve as)\s+(?:an?\s+)?(?:impartial|fair|strict|expert|"
    r"objective|neutral)?\s*(?:judge|grader|evaluator|rater|reward model|critic|annotator)",
    r"reward (?:model|score|signal)|preference (?:data|pair|label|judg)|"
    r"(?:which|whichever) (?:of the (?:two|following) )?(?:response|answer|completion|output|"
    r"assistant)s? (?:is|was) (?:better|more helpful|preferred|superior)|"
    r"(?:response|answer|output|assistant) a\b[^\n]{0,200}\b(?:response|answer|output|"
    r"assistant) b\b",
    # Chinese: scoring criteria, score it, reward model, which answer is better.
    r"评分标准|评分规则|打分|评分|奖励模型|评判|哪个(?:回答|答案|回复)更好",
)
PATTERN = "|".join(f"(?:{p})" for p in PATTERNS)


class RubricSignal(Signal):
    """Rubric-based grading / reward-model prompt: the model is asked to act as a grader.

    Fires on grading against a supplied rubric or criteria, scoring a response on a scale or
    emitting a score/verdict, acting as a judge/grader/reward model, and pairwise preference
    ("which response is better", "[[A]]"), plus Chinese equivalents (评分标准, 打分, 奖励模型).
    Asking *about* rubrics ("how do I write a grading rubric?") does not fire.

    Captures:
        Using the target as a reward model / judge to label a student model's outputs or
        build preference data for RL: rubric-based grading prompts at scale.

    False positives:
        LLM-as-judge evaluation pipelines (enterprise and academic) send exactly these
        prompts; teachers grading essays against a rubric; RLHF data vendors. Per request
        this is the same text, so it is weighed with volume, account age, templating and
        spread over accounts.

    Analyst check:
        What is being graded: the account's own product outputs (eval pipeline) or
        responses of another model? Does the account also harvest CoT or training-shaped
        outputs? Are the graders spread over many young accounts?

    ATLAS:
        AML.T0024 (exfiltration via inference API), AML.T0005 (create proxy model).
    """

    name: ClassVar[str] = "rubric"
    output: ClassVar[pa.Schema] = pa.schema([pa.field("rubric", pa.bool_())])
    atlas: ClassVar[tuple[str, ...]] = (ATLAS_EXFIL_INFERENCE, ATLAS_PROXY_MODEL)

    def compute(self, batch: pa.RecordBatch) -> dict[str, pa.Array]:
        return {"rubric": bool_array(rows_flagged(batch, GATE, PATTERN))}
