"""Builders for ingest tests: valid contract records and files in every input format."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import zstandard


def event(i: int, **overrides: Any) -> dict[str, Any]:
    """A valid contract event; `overrides` replace fields (None removes one)."""
    record: dict[str, Any] = {
        "request_id": f"req-{i}",
        "timestamp": f"2026-02-03T04:05:{i % 60:02d}.{i % 1000:03d}Z",
        "account_id": f"acct-{i % 3}",
        "api_key_id": f"key-{i % 3}",
        "client_ip": f"10.0.{i % 7}.{i % 250 + 1}",
        "user_agent": "openai-python/1.52.0",
        "model": "model-a",
        "system": "Be brief.",
        "prompt": f"question number {i}",
        "response": "an answer",
        "input_tokens": 10 + i,
        "output_tokens": 20 + i,
        "max_tokens": 512,
        "temperature": 0.5,
        "thinking_budget": 0,
        "tools": 1,
        "tool_calls": 0,
        "images": 0,
        "conversation_id": f"conv-{i // 2}",
        "turn": i % 2,
        "status": "ok",
    }
    for key, value in overrides.items():
        if value is None:
            record.pop(key, None)
        else:
            record[key] = value
    return record


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    if path.name.endswith(".gz"):
        data = gzip.compress(data)
    elif path.name.endswith(".zst"):
        data = zstandard.ZstdCompressor().compress(data)
    path.write_bytes(data)
    return path


def write_csv(path: Path, records: list[dict[str, Any]]) -> Path:
    table = pa.Table.from_pylist(
        [{k: None if v is None else str(v) for k, v in r.items()} for r in records]
    )
    pacsv.write_csv(table, path)
    return path


def write_parquet(path: Path, records: list[dict[str, Any]]) -> Path:
    pq.write_table(pa.Table.from_pylist(records), path)
    return path


def account(i: int, **overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "account_id": f"acct-{i}",
        "created_at": 1767225600000 + i * 1000,
        "tier": "pro",
        "email_domain": "example.com",
        "payment_fingerprint": f"pf-{i}",
        "country": "US",
        "org_id": None,
        "signup_ip": "192.0.2.10",
        "email": f"secret.person{i}@example.com",
        "device_fingerprint": f"dev-{i}",
    }
    record.update(overrides)
    return {k: v for k, v in record.items() if v is not None}
