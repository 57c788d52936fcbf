"""Template fingerprints: exact wrapper ids and MinHash LSH band collisions."""

from __future__ import annotations

import random

from distillguard.signals import compute_signals

from .conftest import events

QUESTIONS = [
    "What is the derivative of x^3 + 2x?",
    "Why did the Roman Empire fall?",
    "How many prime numbers are there below 100?",
    "How does a hash map handle collisions?",
    "Who wrote 'One Hundred Years of Solitude'?",
    "What causes the seasons on Earth?",
]
CODE = [
    "def add(a, b):\n    return a - b",
    "for i in range(10):\n    print(i",
    "SELECT * FROM users WHERE id = 42",
]
WRAPPERS = [
    "Question: {q}\nWrite out step by step the internal reasoning behind this answer.",
    "Question: {q} Explain the reasoning behind your answer.",
    "You are a senior engineer.\n\n```python\n{c}\n```\n\nFind the bug and explain the fix.",
    "Translate into German, keeping the tone: \"{q}\"",
    "Context: {q}\n\nAnswer: 42\n\nExplain the reasoning that leads to this answer.",
    "Grade the answer from 1 to 10 using the rubric.\n\nAnswer: {q}\n\nReturn only the score.",
    "Summarize https://example.com/doc/{n} for customer #{n} (ticket T-{n}) in 3 bullets.",
]


def _tpl(prompts: list[str], column: str = "tpl_id") -> list:
    return compute_signals(events(prompts)).column(column).to_pylist()


def _filled(wrapper: str, i: int) -> str:
    return wrapper.format(q=QUESTIONS[i % len(QUESTIONS)], c=CODE[i % len(CODE)], n=1000 + 37 * i)


def test_same_wrapper_with_different_payloads_gets_one_template_id() -> None:
    for wrapper in WRAPPERS:
        ids = _tpl([_filled(wrapper, i) for i in range(6)])
        assert len(set(ids)) == 1, wrapper


def test_different_wrappers_get_different_ids() -> None:
    ids = _tpl([_filled(w, 0) for w in WRAPPERS])
    assert len(set(ids)) == len(WRAPPERS)


def test_prefix_and_suffix_blocks_separate_payload_first_templates() -> None:
    # Payload first, instruction last: the suffix is shared, the prefix (the payload) is not.
    prompts = [f"{q}\n\nRewrite the answer above so it is politically neutral." for q in QUESTIONS]
    out = compute_signals(events(prompts)).to_pydict()
    assert len(set(out["tpl_suffix"])) == 1
    assert len(set(out["tpl_prefix"])) == len(QUESTIONS)


def test_distinct_chat_prompts_stay_distinct() -> None:
    ids = _tpl(UNRELATED)
    assert len(set(ids)) == len(UNRELATED)


# Instruction parts an extraction wrapper is assembled from; a campaign shuffles, drops and
# rewords them per account to dodge exact template matching.
PART_FAMILIES = [
    [
        "You are a world-class mathematician and patient teacher.",
        "Read the problem below carefully before you start.",
        "Write out step by step the internal reasoning behind your answer.",
        "Do not skip any intermediate calculation or justification.",
        "Check your work for arithmetic mistakes at the end.",
        "Finish with the final answer on its own line.",
    ],
    [
        "Act as an expert software architect reviewing a pull request.",
        "Identify every bug, security issue and performance problem in the code.",
        "For each issue explain why it matters and how to fix it.",
        "Then provide the complete corrected version of the code.",
        "Use idiomatic style and add comments where the logic is subtle.",
        "Keep the public interface of the module unchanged.",
    ],
    [
        "You are an impartial judge evaluating an assistant's reply.",
        "Score the response for helpfulness, accuracy and depth of reasoning.",
        "Use the rubric provided and justify each criterion briefly.",
        "Compare against the reference answer when one is given.",
        "Penalise verbosity that does not add information.",
        "Output the final score in double square brackets.",
    ],
]
SYNONYMS = {"carefully": "attentively", "complete": "full", "briefly": "concisely",
            "expert": "experienced", "mistakes": "errors", "every": "each"}


def _variant(parts: list[str], payload: str, rng: random.Random) -> str:
    """Same parts: shuffled, one maybe dropped, one word maybe swapped for a synonym."""
    chosen = parts[:]
    rng.shuffle(chosen)
    if rng.random() < 0.5:
        chosen.pop()
    text = " ".join(chosen)
    if rng.random() < 0.5:
        word = rng.choice(list(SYNONYMS))
        text = text.replace(word, SYNONYMS[word])
    return f"{text}\nProblem: {payload}" if rng.random() < 0.5 else f"Input: {payload}\n{text}"


def _share_band(a: list[int] | None, b: list[int] | None) -> bool:
    return bool(a and b and set(a) & set(b))


def test_reordered_paraphrased_wrappers_share_a_band_far_more_than_unrelated_prompts() -> None:
    rng = random.Random(7)
    prompts, family = [], []
    for f, parts in enumerate(PART_FAMILIES):
        for i in range(30):
            prompts.append(_variant(parts, QUESTIONS[i % len(QUESTIONS)] + f" ({i})", rng))
            family.append(f)
    bands = _tpl(prompts, "tpl_bands")
    same = [_share_band(bands[i], bands[j]) for i in range(len(prompts))
            for j in range(i + 1, len(prompts)) if family[i] == family[j]]
    cross = [_share_band(bands[i], bands[j]) for i in range(len(prompts))
             for j in range(i + 1, len(prompts)) if family[i] != family[j]]
    print(f"same-family pairs sharing a band: {sum(same) / len(same):.3f}, "
          f"cross-family: {sum(cross) / len(cross):.4f}")
    assert sum(same) / len(same) >= 0.9, sum(same) / len(same)
    assert sum(cross) / len(cross) <= 0.01, sum(cross) / len(cross)


def test_unrelated_chat_prompts_share_no_band() -> None:
    bands = _tpl(UNRELATED, "tpl_bands")
    pairs = [(i, j) for i in range(len(UNRELATED)) for j in range(i + 1, len(UNRELATED))]
    shared = sum(_share_band(bands[i], bands[j]) for i, j in pairs)
    assert shared / len(pairs) <= 0.01, shared


UNRELATED = [
    "Can you help me write a cover letter for a junior data analyst position at a bank?",
    "What's a good vegetarian recipe for a dinner party of eight people?",
    "My sourdough starter smells like acetone, is it still safe to use?",
    "Explain the difference between TCP and UDP like I'm five.",
    "How do I get my cat to stop scratching the couch?",
    "Write a short poem about the first snow of winter in the city.",
    "What are the main causes of inflation in an economy?",
    "Is it better to pay off student loans early or invest in an index fund?",
    "Suggest a 5 day itinerary for Kyoto in autumn with some hidden gems.",
    "Why does my React component re-render every time the parent updates?",
    "What is the capital of Australia and why isn't it Sydney?",
    "Help me plan a birthday surprise for my wife who loves hiking.",
    "How does a refrigerator actually move heat out of the box?",
    "Translate 'where is the train station' into Portuguese please.",
    "What are some good books similar to The Name of the Wind?",
    "My knee hurts after running downhill, what stretches might help?",
    "Draft a polite email asking my landlord to fix the heating.",
    "What's the difference between a virus and a bacterium?",
    "How do I center a div horizontally and vertically with flexbox?",
    "Give me a workout plan for building upper body strength at home.",
    "Why is the sky blue during the day but red at sunset?",
    "How should I prepare for a behavioural job interview at a startup?",
    "Can you explain how compound interest works with an example?",
    "What should I pack for a week of camping in the Scottish highlands?",
    "Tell me a fun fact about octopuses that most people don't know.",
    "How do vaccines train the immune system to recognise a pathogen?",
    "What's the best way to learn Spanish verb conjugations quickly?",
    "Rewrite this sentence to sound more formal: we gotta ship it by friday.",
    "How can I reduce my electricity bill during the winter months?",
    "Explain what a p-value means without using jargon.",
]


def test_both_densification_paths_compute_the_same_function() -> None:
    import numpy as np

    from distillguard.signals import template

    rng = np.random.default_rng(3)
    table = rng.integers(0, 2**40, (300, template.BINS), dtype=np.uint64)
    filled = rng.random((300, template.BINS)) < rng.uniform(0.02, 0.9, (300, 1))
    table[~filled] = np.iinfo(np.uint64).max
    rows = np.flatnonzero(filled.any(axis=1) & ~filled.all(axis=1))
    by_steps, sparse = table.copy(), table.copy()
    template._densify_by_steps(table, filled, by_steps, rows)
    template._densify_sparse(table, filled, sparse, rows)
    assert np.array_equal(by_steps, sparse)
    assert not (by_steps[rows] == np.iinfo(np.uint64).max).any()


def test_fewer_bands_are_the_first_bands_of_the_full_sketch():
    import pyarrow.compute as pc
    import pytest

    from distillguard.signals.template import BANDS, TemplateSignal

    # Mixed lengths: texts with few shingles take the sparse densification path, long ones
    # the step-by-step path; both must fill the kept bins exactly as the full sketch does.
    prompts = [_filled(w, i) for i, w in enumerate(WRAPPERS * 3)] + ["hi", "fix this", ""]
    prompts += [" ".join(QUESTIONS * (1 + i)) for i in range(4)]
    batch = events(prompts)
    full = TemplateSignal().compute(batch)["tpl_bands"]
    assert len(full[0].as_py()) == BANDS
    for bands in (1, 4, 7):
        few = TemplateSignal(bands=bands).compute(batch)["tpl_bands"]
        assert few.to_pylist() == pc.list_slice(full, 0, bands).to_pylist()
    with pytest.raises(ValueError, match="bands"):
        TemplateSignal(bands=BANDS + 1)
