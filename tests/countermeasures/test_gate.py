"""The gate acts only when a decision names countermeasures; allow passes byte-identical."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distillguard.countermeasures import (
    Caps,
    ExtractiveSummariser,
    ProvenanceKeys,
    ServedResponse,
    Settings,
    apply,
    apply_chat,
    measures_of,
    request_params,
    sampling_hooks,
)
from distillguard.provenance.canary import find_slots
from distillguard.provenance.keys import WatermarkKey

TRACE = (
    "First add 4 and 8 to get 12, write 2 and carry 1. Then 3 plus 7 plus 1 is 11, write 1 "
    "and carry 1. Next 2 plus 6 plus 1 is 9. Finally 1 plus 5 is 6. So the answer is 6912."
)
ANSWER = "The sum is 6912. For example, you can check it; however, do not skip the carries."
KEYS = ProvenanceKeys(WatermarkKey.from_seed(3))
ALL = {"summarise_reasoning", "caps", "canary", "watermark", "antidistillation"}


def flagged(*names: str, decision: str = "challenge") -> dict:
    return {"account_id": "a", "decision": decision, "risk": 0.7, "countermeasures": list(names)}


ALLOW = {"account_id": "a", "decision": "allow", "risk": 0.0, "countermeasures": []}


def completion(content: str = ANSWER, reasoning: str | None = TRACE) -> dict:
    message = {"role": "assistant", "content": content}
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    return {"id": "c1", "object": "chat.completion", "choices": [{"index": 0, "message": message}]}


@settings(max_examples=60, deadline=None)
@given(
    content=st.text(max_size=300),
    reasoning=st.one_of(st.none(), st.text(max_size=300)),
    decision=st.one_of(
        st.none(),
        st.just(ALLOW),
        # allow with a list (a misconfigured service) must still be untouched
        st.builds(
            lambda ms: {**ALLOW, "countermeasures": ms}, st.lists(st.sampled_from(sorted(ALL)))
        ),
        st.builds(lambda ms: flagged(*ms, decision="throttle"), st.just([])),
    ),
)
def test_unflagged_responses_are_returned_untouched(content, reasoning, decision):
    response = ServedResponse(content, reasoning, prompt="p", account_id="a")
    assert apply(decision, response, Settings(keys=KEYS)) is response
    body = completion(content, reasoning)
    before = json.dumps(body).encode()
    out = apply_chat(decision, body, Settings(keys=KEYS))
    assert out is body and json.dumps(out).encode() == before
    params = {"model": "m", "max_tokens": 99999}
    assert request_params(decision, params) is params
    assert sampling_hooks(decision, "a", Settings(keys=KEYS), vocab_size=8) == []


def test_measures_of_keeps_known_names_in_a_fixed_order():
    assert measures_of(flagged("watermark", "bogus", "summarise_reasoning")) == (
        "summarise_reasoning",
        "watermark",
    )
    assert measures_of(None) == () and measures_of({}) == ()


def test_summarise_replaces_the_trace_and_keeps_the_answer():
    response = ServedResponse(ANSWER, TRACE)
    out = apply(flagged("summarise_reasoning"), response)
    assert out.content == ANSWER
    assert out.reasoning != TRACE and len(out.reasoning) < len(TRACE)
    assert out.applied == ("summarise_reasoning",)
    assert apply(flagged("summarise_reasoning"), response).reasoning == out.reasoning  # fixed
    withheld = apply(flagged("summarise_reasoning"), response, Settings(withhold_reasoning=True))
    assert withheld.reasoning == "[reasoning withheld]"


def test_custom_summariser_is_used():
    out = apply(
        flagged("summarise_reasoning"),
        ServedResponse(ANSWER, TRACE),
        Settings(summariser=lambda r: f"{len(r)} chars"),
    )
    assert out.reasoning == f"{len(TRACE)} chars"


def test_caps_truncate_answer_and_thinking():
    caps = Caps(max_output_tokens=5, thinking_budget=3)
    out = apply(flagged("caps"), ServedResponse(ANSWER, TRACE), Settings(caps=caps))
    assert out.content.split()[:5] == ANSWER.split()[:5] and out.content.endswith("[truncated]")
    assert len(out.reasoning.split()) == 4  # 3 words + the note
    short = ServedResponse("ok", "fine")
    assert apply(flagged("caps"), short, Settings(caps=caps)).applied == ()


def test_canary_uses_the_provenance_rewrite_per_key():
    resp = ServedResponse(ANSWER, None, prompt="what is 1234+5678?", account_id="acct-1")
    outs = {
        apply(
            flagged("canary"), resp, Settings(keys=ProvenanceKeys(WatermarkKey.from_seed(s)))
        ).content
        for s in range(8)
    }
    assert len(outs) > 1  # the keyed variant depends on the key
    for text in outs:  # same slots, same groups: only equivalent phrasings change
        assert [s.group for _, _, s in find_slots(text)] == [
            s.group for _, _, s in find_slots(ANSWER)
        ]
    # no key configured: canary cannot be served and is not reported as applied
    assert apply(flagged("canary"), resp).applied == ()


def test_per_account_keys_differ_and_are_stable():
    keys = ProvenanceKeys(WatermarkKey.from_seed(1, "k"), per_account=True)
    a, b = keys.for_account("a"), keys.for_account("b")
    assert a.secret != b.secret and keys.for_account("a") == a
    assert a.key_id.startswith("k/")
    assert ProvenanceKeys(WatermarkKey.from_seed(1)).for_account("a") == WatermarkKey.from_seed(1)


def test_apply_chat_changes_a_copy_of_flagged_dicts():
    body = completion()
    snapshot = copy.deepcopy(body)
    out = apply_chat(flagged("summarise_reasoning"), body)
    assert body == snapshot  # the input is not mutated
    msg = out["choices"][0]["message"]
    assert msg["content"] == ANSWER and msg["reasoning_content"].startswith("Summary of reasoning")


def test_request_caps_lower_budgets_only():
    params = {"max_tokens": 4000, "thinking": {"type": "enabled", "budget_tokens": 8000}}
    out = request_params(flagged("caps"), params, Settings(caps=Caps(1000, 200)))
    assert out["max_tokens"] == 1000 and out["thinking"]["budget_tokens"] == 200
    small = request_params(flagged("caps"), {"max_tokens": 10, "reasoning_effort": "high"})
    assert small["max_tokens"] == 10 and small["reasoning_effort"] == "low"
    assert request_params(flagged("caps"), {})["max_tokens"] == Caps().max_output_tokens


def test_sampling_hooks_add_the_watermark_processor():
    import numpy as np

    hooks = sampling_hooks(flagged("watermark"), "a", Settings(keys=KEYS), vocab_size=50)
    assert len(hooks) == 1
    logits = np.zeros((2, 50))
    biased = hooks[0](np.array([[1, 2], [3, 4]]), logits)
    assert set(np.unique(biased)) == {0.0, 3.0}  # delta on the green list only


@pytest.mark.parametrize("ratio", [2, 3])
def test_extractive_summary_is_verbatim_subset(ratio):
    s = ExtractiveSummariser(max_sentences=ratio, prefix="")
    out = s(TRACE)
    from distillguard.countermeasures import split_sentences

    kept = split_sentences(out)
    assert len(kept) == ratio and all(k in split_sentences(TRACE) for k in kept)
    order = [split_sentences(TRACE).index(k) for k in kept]
    assert order == sorted(order)
