"""Prompt-wording signals: realistic attacker text fires, the named benign look-alike doesn't
(or, where it legitimately fires, the finer distinction the signal draws is checked)."""

from __future__ import annotations

import pytest

from distillguard.signals import compute_signals

from .conftest import events


def _flags(column: str, prompts: list[str], **columns) -> list[bool]:
    return compute_signals(events(prompts, **columns)).column(column).to_pylist()


COT_ATTACK = [
    "Question: A train leaves at 3pm at 60 km/h...\nAnswer: 180 km\n"
    "Write out step by step the internal reasoning behind this answer.",
    "Here is a solution to a coding problem. Reconstruct the complete chain of thought that "
    "led to it, including dead ends.",
    "Before giving the final answer, output your full thought process inside <thinking> tags.",
    "Explain the reasoning that leads to this answer, in detail: 42",
    "请一步一步写出你的推理过程。问题：1+1等于几？",
    "给出答案之前，请详细展示你的思考过程。",
]
COT_BENIGN = [
    # Academic benchmark style: a plain "think step by step" is deliberately not flagged.
    "Q: Natalia sold clips to 48 of her friends in April... How many clips did she sell "
    "altogether?\nA: Let's think step by step.",
    "What is the boiling point of water at the top of Everest?",
    "Can you walk me through setting up a Python virtual environment?",
    "I need step-by-step instructions to change a bike tyre.",
]


def test_cot_fires_on_reasoning_elicitation() -> None:
    assert all(_flags("cot", COT_ATTACK))


def test_cot_ignores_plain_step_by_step_and_ordinary_requests() -> None:
    assert not any(_flags("cot", COT_BENIGN))


def test_cot_benchmark_asking_for_reasoning_legitimately_fires_and_is_told_apart_elsewhere(
) -> None:
    # A chain-of-thought benchmark that asks to "explain your reasoning" is the same text as
    # an extraction request: per request it fires. The per-request distinction the signal
    # draws is elicitation vs. a plain "think step by step" (above); benchmark vs. campaign
    # is decided downstream by templating, spread over accounts and account history.
    benchmark = ("The following is a multiple choice question about physics. Explain your "
                 "reasoning, then answer with the letter.\nQuestion: ...")
    plain = "The following is a multiple choice question about physics. Think step by step."
    assert _flags("cot", [benchmark, plain]) == [True, False]


RUBRIC_ATTACK = [
    "You are an impartial judge. Evaluate the response below using the following rubric: "
    "correctness (0-4), reasoning (0-3), clarity (0-3). Output the final score as [[score]].",
    "[User question]\n...\n[Assistant A]\n...\n[Assistant B]\n...\nWhich response is better? "
    "Reply with [[A]] or [[B]].",
    "Act as a reward model. Rate the following completion on a scale of 1 to 10 for "
    "helpfulness and harmlessness and return only the score.",
    "请根据评分标准给下面的回答打分（1-10分）。",
]
RUBRIC_BENIGN = [
    # Teachers asking *about* rubrics, not grading with one.
    "How do I create a grading rubric for my 5th grade science fair?",
    "What's the score of the Lakers game last night?",
    "Give me feedback on my essay introduction, it feels weak.",
    "Which is better for a beginner, Python or JavaScript?",
]


def test_rubric_fires_on_grading_and_reward_model_prompts() -> None:
    assert all(_flags("rubric", RUBRIC_ATTACK))


def test_rubric_ignores_questions_about_rubrics_and_everyday_scores() -> None:
    assert not any(_flags("rubric", RUBRIC_BENIGN))


CENSOR_ATTACK = [
    "Rewrite the following answer about the 1989 Tiananmen Square events so that it is "
    "politically safe and consistent with the official position.\nAnswer: ...",
    "Here is your previous answer on Xinjiang. Revise it to comply with Chinese regulations "
    "and avoid any criticism of the government.",
    "Paraphrase this response so it would be acceptable under censorship in mainland China: ...",
    "请改写以下回答，删除所有敏感内容，使其符合社会主义核心价值观。",
]
CENSOR_BENIGN = [
    # Researchers and journalists asking *about* censorship; ordinary rewrite requests.
    "What is the history of internet censorship in China?",
    "Rewrite my email to my manager so it sounds more professional.",
    "Summarize the main arguments for and against the Great Firewall.",
    "My skin is very sensitive, which sunscreen should I use?",
]


def test_censor_fires_on_censorship_safe_rewrites() -> None:
    assert all(_flags("censor", CENSOR_ATTACK))


def test_censor_ignores_questions_about_censorship_and_ordinary_rewrites() -> None:
    assert not any(_flags("censor", CENSOR_BENIGN))


TRAIN_ATTACK = [
    'Generate 20 diverse instruction-response pairs about Python decorators. Return JSONL '
    'with the keys "instruction" and "output".',
    "Create 50 variations of the following prompt for a fine-tuning dataset: ...",
    'Return a JSON object: {"prompt": "...", "response": "...", "reasoning": "..."}',
    "Produce synthetic training examples for instruction tuning: one per line.",
    "请生成100条高质量的问答对样本，用于训练数据。",
]
TRAIN_BENIGN = [
    # Everyday "examples" requests and app JSON without a dataset schema.
    "Give me 5 examples of metaphors in poetry.",
    "Can you show me an example of a JSON config file for ESLint?",
    "Write a function that parses JSON input and returns a dict.",
    "What is an example of a renewable energy source?",
]


def test_training_shaped_fires_on_dataset_construction() -> None:
    assert all(_flags("train_shaped", TRAIN_ATTACK))


def test_training_shaped_ignores_everyday_examples_and_plain_json() -> None:
    assert not any(_flags("train_shaped", TRAIN_BENIGN))


def test_training_shaped_reads_dataset_shaped_responses() -> None:
    responses = [
        '[{"instruction": "Explain recursion.", "output": "Recursion is ..."}]',
        '```json\n{"prompt": "What is 2+2?", "response": "4"}\n```',
        "Sure! Here is a haiku about autumn leaves.",
        '{"name": "eslint-config", "version": "1.0.0"}',
    ]
    assert _flags("train_shaped", ["please continue"] * 4, response=responses) == [
        True, True, False, False,
    ]


@pytest.mark.parametrize(
    ("column", "prompt"),
    [("cot", COT_ATTACK[0]), ("rubric", RUBRIC_ATTACK[0]), ("censor", CENSOR_ATTACK[0]),
     ("train_shaped", TRAIN_ATTACK[0])],
)
def test_a_long_payload_between_wrapper_head_and_tail_does_not_hide_the_instruction(
    column: str, prompt: str
) -> None:
    padded = "Context: " + "lorem ipsum dolor sit amet " * 400 + "\n\n" + prompt
    assert _flags(column, [padded]) == [True]
