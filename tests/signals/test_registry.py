"""compute_signals: shape, order, nulls, registry hygiene and cross-process determinism."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys

import pyarrow as pa
import pytest

from distillguard.contract import EVENTS
from distillguard.errors import UserError
from distillguard.signals import SIGNALS, compute_signals, signal_schema
from distillguard.signals.base import DOCSTRING_SECTIONS

from .conftest import events

PROMPTS = [
    "Question: What is 2+2?\nWrite out step by step the internal reasoning behind this answer.",
    None,
    "",
    "   \n  ",
    "hello!",
    "```python\nprint(1)\n```\nWhy does this fail?",
    "x" * 5000,
]


def test_output_has_request_id_then_every_signal_column_in_row_order() -> None:
    batch = events(PROMPTS)
    out = compute_signals(batch)
    assert out.schema == signal_schema()
    assert out.schema.names[0] == "request_id"
    assert out.num_rows == batch.num_rows
    assert out.column("request_id").to_pylist() == batch.column("request_id").to_pylist()


def test_null_and_empty_prompts_have_null_fingerprints_and_no_flags() -> None:
    out = compute_signals(events(PROMPTS)).to_pydict()
    for i in (1, 2, 3):  # null, empty, whitespace only
        assert out["tpl_id"][i] is None
        assert out["tpl_bands"][i] is None
        assert out["capability"][i] is None
        assert out["cap_mask"][i] == 0
        assert not any(out[c][i] for c in ("cot", "rubric", "censor", "train_shaped"))
    assert out["tpl_id"][0] is not None and len(out["tpl_bands"][0]) == 16
    assert out["tpl_id"][6] is not None  # a long prompt is capped, not dropped


def test_signal_columns_never_null_where_the_schema_says_flags() -> None:
    out = compute_signals(events(PROMPTS))
    for name in ("cap_mask", "cot", "rubric", "censor", "train_shaped", "max_out", "thinking"):
        assert out.column(name).null_count == 0, name


def test_empty_batch_and_minimal_columns() -> None:
    empty = compute_signals(pa.RecordBatch.from_pylist([], schema=EVENTS))
    assert empty.num_rows == 0 and empty.schema == signal_schema()
    minimal = pa.RecordBatch.from_pydict(
        {"request_id": ["a", "b"], "prompt": ["Rate the response on a scale of 1 to 10.", "hi"]}
    )
    out = compute_signals(minimal).to_pydict()
    assert out["rubric"] == [True, False]
    assert out["sys_id"] == [None, None]


def test_large_string_prompts_are_accepted() -> None:
    batch = events(["hello there", "Question: x?\nShow your full reasoning."])
    large = pa.RecordBatch.from_arrays(
        [c.cast(pa.large_string()) if f.type == pa.string() else c
         for f, c in zip(batch.schema, batch.columns, strict=True)],
        names=batch.schema.names,
    )
    assert compute_signals(large).to_pydict() == compute_signals(batch).to_pydict()


def test_missing_prompt_column_is_a_user_error() -> None:
    with pytest.raises(UserError):
        compute_signals(pa.RecordBatch.from_pydict({"request_id": ["a"]}))


def test_ids_do_not_depend_on_the_rest_of_the_batch() -> None:
    prompt = "Summarize the following text in 3 bullet points.\nText: the cat sat."
    alone = compute_signals(events([prompt])).to_pydict()
    mixed = compute_signals(events(["hello", prompt, "Write a poem about rain."])).to_pydict()
    for name in ("tpl_id", "tpl_prefix", "tpl_suffix", "tpl_bands", "cap_mask"):
        assert alone[name][0] == mixed[name][1], name


def test_hashes_are_identical_in_a_fresh_process_with_another_hash_seed() -> None:
    code = (
        "from tests.signals.conftest import events;"
        "from distillguard.signals import compute_signals;"
        "o=compute_signals(events(['Question: 1?\\nExplain your reasoning.'],"
        " system=['You are a tutor.'])).to_pydict();"
        "print(o['tpl_id'][0], o['sys_id'][0], o['tpl_bands'][0][0])"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    here = compute_signals(
        events(["Question: 1?\nExplain your reasoning."], system=["You are a tutor."])
    ).to_pydict()
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True,
        check=True,
    )
    expected = f"{here['tpl_id'][0]} {here['sys_id'][0]} {here['tpl_bands'][0][0]}"
    assert result.stdout.strip() == expected


@pytest.mark.parametrize("signal", SIGNALS, ids=lambda s: s.name)
def test_every_signal_documents_captures_false_positives_check_and_atlas(signal) -> None:
    doc = inspect.getdoc(type(signal)) or ""
    for section in DOCSTRING_SECTIONS:
        # A heading line "Captures:" (Google style) or an inline "**Captures**:" paragraph.
        heading = rf"^(?:{section}:\s*$|\*\*{section}\*\*:)"
        assert re.search(heading, doc, re.MULTILINE), f"{signal.name}: {section}"
    assert signal.atlas and all(re.fullmatch(r"AML\.T\d{4}(\.\d{3})?", a) for a in signal.atlas)
    for atlas_id in signal.atlas:
        assert atlas_id in doc, f"{signal.name} docstring should name {atlas_id}"


@pytest.mark.parametrize("signal", SIGNALS, ids=lambda s: s.name)
def test_each_signal_returns_exactly_its_declared_columns(signal) -> None:
    batch = events(PROMPTS)
    columns = signal.compute(batch)
    assert list(columns) == signal.output.names
    for field in signal.output:
        assert len(columns[field.name]) == batch.num_rows
        assert columns[field.name].type == field.type


def test_column_names_are_unique_across_signals() -> None:
    names = signal_schema().names
    assert len(names) == len(set(names))


def test_docs_table_has_a_row_with_all_sections_for_every_signal() -> None:
    from distillguard.signals.docs import docstring_sections, signals_markdown

    page = signals_markdown()
    for signal in SIGNALS:
        assert f"| `{signal.name}` |" in page
        sections = docstring_sections(signal)
        assert all(sections.get(s) for s in ("Captures", "False positives", "Analyst check"))


def test_internal_slicing_gives_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    import distillguard.signals as signals

    prompts = [f"Question: item {i}?\nExplain your reasoning." for i in range(7)] + PROMPTS
    whole = compute_signals(events(prompts))
    monkeypatch.setattr(signals, "CHUNK_ROWS", 3)
    sliced = compute_signals(events(prompts))
    assert sliced.equals(whole)


def test_concurrent_batches_in_threads_give_the_same_result() -> None:
    from concurrent.futures import ThreadPoolExecutor

    batches = [events([f"Question: {i}-{j}?\nShow your full reasoning." for j in range(50)]
                      + PROMPTS) for i in range(6)]
    expected = [compute_signals(b) for b in batches]
    with ThreadPoolExecutor(max_workers=3) as pool:
        got = list(pool.map(compute_signals, batches))
    assert all(g.equals(e) for g, e in zip(got, expected, strict=True))


def test_input_columns_are_all_that_signals_read(tmp_path) -> None:
    """The service ships only INPUT_COLUMNS to its signal helper: a signal that read any other
    event column would then see nulls there and answer differently."""
    import pyarrow.parquet as pq

    from distillguard.signals import INPUT_COLUMNS
    from distillguard.simulate.engine import simulate

    simulate("small", None, 5, tmp_path)
    table = pq.read_table(tmp_path / "events.parquet").cast(EVENTS).slice(0, 3000)
    assert all(table[c].null_count < table.num_rows for c in table.schema.names)
    full = table.combine_chunks().to_batches()[0]
    only = table.select(list(INPUT_COLUMNS)).combine_chunks().to_batches()[0]
    assert compute_signals(only).equals(compute_signals(full))
