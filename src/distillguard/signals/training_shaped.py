"""Training-data-shaped requests and outputs."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from distillguard.signals._content import rows_flagged
from distillguard.signals.base import (
    ATLAS_EXFIL_INFERENCE,
    ATLAS_PROXY_MODEL,
    Signal,
    bool_array,
    string_column,
)

GATE = (
    r"instruction|input|output|prompt|response|completion|chosen|rejected|messages|"
    r"conversations|sample|example|variation|variant|pairs|jsonl|json|dataset|alpaca|"
    r"sharegpt|sft|fine|tuning|training|synthetic|distill|paraphrase|data|样本|示例|例子|数据|"
    r"问答对|训练|微调|蒸馏"
)
# JSON keys of instruction-tuning / preference datasets.
_KEYS = (
    r"(?:instruction|input|output|prompt|response|completion|chosen|rejected|messages|"
    r"conversations|system|question|answer|query|reasoning)"
)
JSON_KEY_RE = rf"[\"']{_KEYS}[\"']\s*:"
_MAKE = r"(?:generate|create|produce|write|give me|provide|make|synthesi[sz]e|list|output)"
_COUNT = (
    r"(?:⟪v⟫|\d+|a (?:list|set|batch|bunch) of|several|multiple|many|dozens of|hundreds of|"
    r"ten|twenty|fifty|hundred)"
)
_SAMPLE_NOUN = (
    r"(?:samples|variations|variants|data ?points|training (?:examples|samples|data|pairs)|"
    r"instruction[- ](?:response|output|following) (?:pairs|examples|samples)|"
    r"(?:question|q)[- ]?(?:answer|a|&a) pairs|prompt[- ](?:response|completion) pairs|"
    r"paraphrases|rephrasings|synthetic (?:examples|samples|data|conversations|dialogues)|"
    r"(?:diverse|varied|different|unique|distinct|synthetic|new|additional|realistic) "
    r"(?:examples|prompts|instructions|questions|conversations|dialogues|tasks))"
)
PATTERNS = (
    JSON_KEY_RE + r"[^\n]{0,200}" + JSON_KEY_RE,  # two dataset keys: a record schema
    rf"{_MAKE}\s+(?:me\s+)?{_COUNT}\s+(?:more\s+|new\s+|other\s+)?[^.\n]{{0,30}}{_SAMPLE_NOUN}",
    r"(?:in|as|output|format|formatted as|return)\s+(?:a\s+|the\s+)?(?:jsonl|json lines|"
    r"alpaca|sharegpt|chatml|openai fine-?tuning)\b",
    r"(?:for|as|to build|to create|building|creating)\s+(?:an?\s+|my\s+|our\s+)?"
    r"(?:training|fine-?tuning|sft|instruction[- ]tuning|distillation|synthetic)\s+"
    r"(?:data|dataset|set|corpus|examples|samples)",
    r"synthetic (?:training |instruction |sft )?(?:data|dataset|examples|samples|"
    r"conversations|dialogues|question-answer pairs)",
    r"(?:with|containing|having) (?:the )?fields?\s+[^\n]{0,20}\b(?:instruction|prompt|"
    r"question)\b[^\n]{0,30}\b(?:response|output|answer|completion)\b",
    # Chinese: generate N samples / examples / QA pairs; training / fine-tuning data.
    r"生成\s*(?:⟪v⟫|\d+|多|若干|一批|一些)[^。\n]{0,10}(?:样本|示例|例子|数据|问答对|对话)|"
    r"(?:训练|微调|蒸馏)(?:数据|数据集|样本|语料)",
)
PATTERN = "|".join(f"(?:{p})" for p in PATTERNS)
# A response that is itself a dataset record (checked on the first RESPONSE_HEAD_CHARS).
RESPONSE_HEAD_CHARS = 300
RESPONSE_RE = rf"(?i)^\s*(?:```(?:json|jsonl)?\s*)?[\[{{]\s*\{{?\s*{JSON_KEY_RE}"


def _dataset_shaped_response(batch: pa.RecordBatch) -> np.ndarray:
    response = string_column(batch, "response")
    head = pc.utf8_slice_codeunits(response, 0, RESPONSE_HEAD_CHARS)
    hit = pc.fill_null(pc.match_substring_regex(head, RESPONSE_RE), False)
    return hit.to_numpy(zero_copy_only=False)


class TrainingShapedSignal(Signal):
    """Training-shaped request: the prompt or the response looks like dataset construction.

    Fires on prompts that carry a dataset record schema (two or more JSON keys such as
    "instruction"/"input"/"output", "prompt"/"response", "chosen"/"rejected"), ask to
    "generate N samples / variations / Q&A pairs / diverse examples", ask for JSONL /
    Alpaca / ShareGPT format or say the output is for training / fine-tuning data, and on
    responses that start as a JSON record with such keys. Chinese: 生成N条样本, 训练数据.

    Captures:
        Direct synthetic-data generation for a student model: the target is asked to emit
        instruction/response pairs, variations of seed prompts or whole dataset shards.

    False positives:
        ML engineers legitimately generating synthetic data for their own (non-competing)
        models, data-labelling vendors, developers whose app returns JSON with "input" /
        "output" fields. "Give me 5 examples of metaphors" does not fire (no sample noun).

    Analyst check:
        Is the output destined to train a competing model (volume, capability mix,
        rotation over accounts) or an app's own structured output? Check the terms-of-use
        attestations of the org and whether seeds come from public benchmarks.

    ATLAS:
        AML.T0005 (create proxy model), AML.T0024 (exfiltration via inference API).
    """

    name: ClassVar[str] = "training_shaped"
    output: ClassVar[pa.Schema] = pa.schema([pa.field("train_shaped", pa.bool_())])
    atlas: ClassVar[tuple[str, ...]] = (ATLAS_PROXY_MODEL, ATLAS_EXFIL_INFERENCE)

    def compute(self, batch: pa.RecordBatch) -> dict[str, pa.Array]:
        shaped = rows_flagged(batch, GATE, PATTERN) | _dataset_shaped_response(batch)
        return {"train_shaped": bool_array(shaped)}
