"""Helpers: build contract.EVENTS batches from a few prompts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pytest

from distillguard.contract import EVENTS


def events(prompts: Sequence[str | None], **columns: Sequence[Any]) -> pa.RecordBatch:
    """A contract.EVENTS batch with the given prompts; other columns default sensibly."""
    n = len(prompts)
    data: dict[str, Sequence[Any]] = {
        "request_id": [f"r{i}" for i in range(n)],
        "timestamp": [1_770_000_000_000 + i for i in range(n)],
        "account_id": ["acct"] * n,
        "client_ip": ["203.0.113.7"] * n,
        "model": ["model-x"] * n,
        "prompt": list(prompts),
        "input_tokens": [100] * n,
        "output_tokens": [200] * n,
    }
    data.update({name: list(values) for name, values in columns.items()})
    arrays = [
        pa.array(data[field.name], type=field.type) if field.name in data
        else pa.nulls(n, field.type)
        for field in EVENTS
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=EVENTS)


@pytest.fixture
def make_events():
    return events
