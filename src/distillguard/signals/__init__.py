"""Stage 1 of detection: per-request signals over contract.EVENTS record batches.

    >>> from distillguard.signals import compute_signals, signal_schema
    >>> out = compute_signals(events_batch)   # request_id + every signal column, same rows

Each signal is a `Signal` (see base.py) in its own module; SIGNALS is the registry, in output
column order.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from distillguard.errors import UserError
from distillguard.signals.base import Signal
from distillguard.signals.capability import CapabilitySignal
from distillguard.signals.censor import CensorSignal
from distillguard.signals.cot import CotSignal
from distillguard.signals.output_budget import OutputBudgetSignal
from distillguard.signals.rubric import RubricSignal
from distillguard.signals.sentences import SentenceSignal
from distillguard.signals.system_prompt import SystemPromptSignal
from distillguard.signals.template import TemplateSignal
from distillguard.signals.text import clear_memo
from distillguard.signals.training_shaped import TrainingShapedSignal

SIGNALS: tuple[Signal, ...] = (
    TemplateSignal(),
    SystemPromptSignal(),
    CapabilitySignal(),
    CotSignal(),
    RubricSignal(),
    CensorSignal(),
    TrainingShapedSignal(),
    OutputBudgetSignal(),
    SentenceSignal(),
)

REQUEST_ID = pa.field("request_id", pa.string())
# Rows per internal slice: bounds the intermediate arrays (tokens, MinHash tables), which
# on the shared VMs are slow to page-fault in when huge; smaller slices lose batch-wide
# de-duplication of templated prompts. Signals themselves work on any batch size.
CHUNK_ROWS = 65_536
# The contract event columns any signal reads (tests check the list is complete): a caller
# that ships events to another process (the service's signal helper) sends only these.
INPUT_COLUMNS = (
    "request_id", "system", "prompt", "response", "output_tokens", "max_tokens",
    "thinking_budget", "tools", "tool_calls", "images", "turn",
)  # fmt: skip

__all__ = ["INPUT_COLUMNS", "SIGNALS", "Signal", "compute_signals", "signal_schema"]


def signal_schema() -> pa.Schema:
    """Schema of compute_signals' output: request_id, then every signal's columns."""
    fields = [REQUEST_ID]
    for signal in SIGNALS:
        fields.extend(signal.output)
    return pa.schema(fields)


def compute_signals(batch: pa.RecordBatch, signals: Sequence[Signal] = SIGNALS) -> pa.RecordBatch:
    """Every signal column for `batch` (contract.EVENTS), same length and row order.

    Only `request_id` and the signal columns are returned; join back on request_id or by
    position. `signals` may swap a registry entry for a differently configured instance of
    the same signal (same columns), e.g. a TemplateSignal with fewer bands.
    """
    if "prompt" not in batch.schema.names or "request_id" not in batch.schema.names:
        raise UserError("signals need an events batch with request_id and prompt columns")
    schema = signal_schema()
    if batch.num_rows <= CHUNK_ROWS:
        return _compute_chunk(batch, schema, signals)
    chunks = [
        _compute_chunk(batch.slice(start, CHUNK_ROWS), schema, signals)
        for start in range(0, batch.num_rows, CHUNK_ROWS)
    ]
    return pa.Table.from_batches(chunks, schema=schema).combine_chunks().to_batches()[0]


def _compute_chunk(
    batch: pa.RecordBatch, schema: pa.Schema, signals: Sequence[Signal]
) -> pa.RecordBatch:
    columns: dict[str, pa.Array] = {"request_id": batch.column("request_id").cast(pa.string())}
    try:
        for signal in signals:
            columns.update(signal.compute(batch))
    finally:
        clear_memo()
    arrays = [columns[field.name].cast(field.type) for field in schema]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
