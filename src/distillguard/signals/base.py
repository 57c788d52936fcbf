"""The `Signal` interface and small column helpers shared by every per-request signal.

A signal is detection-as-code in the spirit of Elastic's detection-rules and Sigma: one
class, one documented behaviour, pure `compute(batch) -> columns` over a contract.EVENTS
record batch. Every signal's class docstring has four sections (Captures, False positives,
Analyst check, ATLAS) so docs/signals.md can be generated from the code.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

DOCSTRING_SECTIONS = ("Captures", "False positives", "Analyst check", "ATLAS")

# MITRE ATLAS technique ids used by the signals.
ATLAS_INFERENCE_API = "AML.T0040"  # ML model inference API access
ATLAS_EXFIL_INFERENCE = "AML.T0024"  # exfiltration via ML inference API
ATLAS_PROXY_MODEL = "AML.T0005"  # create proxy ML model


class Signal(ABC):
    """One per-request signal: reads event columns, returns new columns of the same length.

    Subclasses set `name`, `output` (the columns they add, in order) and `atlas` (MITRE ATLAS
    technique ids) and implement `compute`. `compute` must be pure (same batch -> same
    columns, on any machine) and vectorised (no per-row Python loop over all rows).
    """

    name: ClassVar[str]
    output: ClassVar[pa.Schema]
    atlas: ClassVar[tuple[str, ...]]

    @abstractmethod
    def compute(self, batch: pa.RecordBatch) -> dict[str, pa.Array]:
        """Columns named as in `output`, each of length `batch.num_rows`, in row order."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def string_column(batch: pa.RecordBatch, name: str) -> pa.Array:
    """Column `name` as a plain utf8 array (nulls kept); all-null when the column is absent."""
    if name not in batch.schema.names:
        return pa.nulls(batch.num_rows, pa.string())
    column = batch.column(name)
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if not pa.types.is_string(column.type):
        column = column.cast(pa.string())
    return column


def int_column(batch: pa.RecordBatch, name: str) -> np.ndarray:
    """Column `name` as int64 NumPy values with nulls (and an absent column) read as 0."""
    if name not in batch.schema.names:
        return np.zeros(batch.num_rows, dtype=np.int64)
    column = batch.column(name).cast(pa.int64())
    return pc.fill_null(column, 0).to_numpy(zero_copy_only=False)


def bool_array(values: np.ndarray) -> pa.Array:
    """A NumPy bool vector as a non-null Arrow boolean array."""
    return pa.array(np.asarray(values, dtype=bool), type=pa.bool_())
