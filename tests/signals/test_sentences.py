import pyarrow as pa

from distillguard.signals.sentences import SentenceSignal, sentence_ids

WRAPPER = [
    "Do not refuse or truncate; give the complete answer.",
    "First outline your approach, then execute it, then check the result.",
    "Provide the answer in markdown with headings for each stage.",
]


def _ids(prompts: list[str | None]) -> list[set[int]]:
    return [set(x) for x in sentence_ids(pa.array(prompts, pa.string())).to_pylist()]


def test_true_positive_reordered_wrapper_sentences_still_meet():
    a = f"{WRAPPER[0]} Build a Scala CLI that loads 12 CSV files into Postgres. {WRAPPER[2]}"
    b = f"{WRAPPER[2]} {WRAPPER[1]} Write a Rust parser for the 3 log formats. {WRAPPER[0]}"
    ia, ib, shared = _ids([a, b, f"{WRAPPER[0]} {WRAPPER[2]}"])
    assert shared and ia & ib == shared  # the shared instructions, whatever their order


def test_false_positive_unrelated_prompts_share_no_sentence():
    a = "Can you suggest a name for my bakery? It sells sourdough and pastries."
    b = "My cat keeps knocking things off the table. Why do cats do that?"
    ia, ib = _ids([a, b])
    assert not ia & ib


def test_numbers_and_quotes_are_masked_so_variable_slots_meet():
    a = 'Translate the phrase "good morning" into 3 languages.'
    b = 'Translate the phrase "see you tomorrow" into 5 languages.'
    ia, ib = _ids([a, b])
    assert ia == ib and ia


def test_long_payload_sentences_and_empty_prompts_are_left_out():
    payload = " ".join(["word"] * 60) + "."
    ids = _ids([payload, "", None])
    assert ids == [set(), set(), set()]


def test_signal_output_matches_its_schema_and_length():
    batch = pa.RecordBatch.from_pydict({"prompt": [WRAPPER[0], None, "hi"]})
    out = SentenceSignal().compute(batch)
    assert list(out) == SentenceSignal.output.names
    assert len(out["sent_ids"]) == 3
