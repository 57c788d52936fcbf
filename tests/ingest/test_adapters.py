"""OpenTelemetry GenAI spans and LiteLLM standard logging payloads -> contract events."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from distillguard import contract
from distillguard.ingest import litellm_record_to_event, otel_spans_to_events, run_ingest


def _attr(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}  # OTLP/JSON int64 is a string
    if isinstance(value, float):
        return {"key": key, "value": {"doubleValue": value}}
    if isinstance(value, list):
        return {
            "key": key,
            "value": {"arrayValue": {"values": [{"stringValue": v} for v in value]}},
        }
    return {"key": key, "value": {"stringValue": value}}


def genai_span(i: int, **attrs: Any) -> dict[str, Any]:
    inputs = [
        {"role": "system", "parts": [{"type": "text", "content": "ignored: instructions win"}]},
        {"role": "user", "parts": [{"type": "text", "content": "first question"}]},
        {"role": "assistant", "parts": [{"type": "text", "content": "first answer"}]},
        {
            "role": "user",
            "parts": [
                {"type": "text", "content": f"What is in this picture? #{i}"},
                {
                    "type": "blob",
                    "modality": "image",
                    "mime_type": "image/png",
                    "content": "iVBOR...",
                },
            ],
        },
    ]
    outputs = [
        {
            "role": "assistant",
            "parts": [
                {"type": "text", "content": "A cat."},
                {"type": "tool_call", "id": "call_1", "name": "lookup", "arguments": {"q": "cat"}},
            ],
            "finish_reason": "stop",
        }
    ]
    base = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.request.max_tokens": 256,
        "gen_ai.request.temperature": 0.2,
        "gen_ai.usage.input_tokens": 120 + i,
        "gen_ai.usage.output_tokens": 40,
        "gen_ai.conversation.id": "conv-9",
        "gen_ai.input.messages": json.dumps(inputs),
        "gen_ai.output.messages": json.dumps(outputs),
        "gen_ai.system_instructions": json.dumps([{"type": "text", "content": "You are terse."}]),
        "gen_ai.response.finish_reasons": ["stop"],
        "client.address": "203.0.113.7",
        "user.id": "acct-77",
        "user_agent.original": "openai-python/1.52.0",
    }
    base.update(attrs)
    return {
        "traceId": f"5b8efff798038103d269b633813fc6{i:02x}",
        "spanId": f"eee19b7ec3c1b1{i:02x}",
        "name": "chat gpt-4o",
        "kind": 3,
        "startTimeUnixNano": str(1770091506789000000 + i * 1_000_000_000),
        "endTimeUnixNano": str(1770091507789000000 + i * 1_000_000_000),
        "attributes": [_attr(k, v) for k, v in base.items() if v is not None],
        "status": {},
    }


def otlp_payload(spans: list[dict[str, Any]]) -> dict[str, Any]:
    http_span = {
        "traceId": "ab" * 16,
        "spanId": "cd" * 8,
        "name": "POST /v1/chat",
        "startTimeUnixNano": "1770091506000000000",
        "attributes": [_attr("http.request.method", "POST")],
    }
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [_attr("service.name", "gateway")]},
                "scopeSpans": [
                    {
                        "scope": {"name": "opentelemetry.instrumentation.openai"},
                        "spans": [*spans, http_span],
                    }
                ],
            }
        ]
    }


def test_otel_span_maps_every_documented_attribute() -> None:
    table, rejects = otel_spans_to_events(otlp_payload([genai_span(1)]))
    assert rejects == [] and table.schema == contract.EVENTS
    row = table.to_pylist()[0]
    assert row["request_id"] == "5b8efff798038103d269b633813fc601:eee19b7ec3c1b101"
    assert row["timestamp"].isoformat() == "2026-02-03T04:05:07.789000+00:00"
    assert (row["account_id"], row["client_ip"], row["user_agent"]) == (
        "acct-77",
        "203.0.113.7",
        "openai-python/1.52.0",
    )
    assert (row["model"], row["input_tokens"], row["output_tokens"]) == ("gpt-4o", 121, 40)
    assert (row["max_tokens"], row["temperature"], row["conversation_id"]) == (256, 0.2, "conv-9")
    assert row["prompt"] == "What is in this picture? #1"
    assert row["system"] == "You are terse."
    assert row["response"] == "A cat."
    assert (row["turn"], row["images"], row["tool_calls"], row["status"]) == (1, 1, 1, "ok")


def test_otel_old_enduser_id_errors_and_rejects() -> None:
    spans = [
        genai_span(2, **{"user.id": None, "enduser.id": "acct-old"}),
        genai_span(3, **{"error.type": "429"}),
        genai_span(4, **{"client.address": "not-an-ip"}),
        genai_span(5, **{"user.id": None}),
        genai_span(6, **{"gen_ai.input.messages": None, "gen_ai.usage.output_tokens": -1}),
    ]
    table, rejects = otel_spans_to_events(otlp_payload(spans))
    rows = {r["account_id"]: r for r in table.to_pylist()}
    assert rows["acct-old"]["status"] == "ok" and rows["acct-77"]["status"] == "rate_limited"
    assert sorted((r["reason"], r["field"]) for r in rejects) == [
        ("bad_ip", "client_ip"),
        ("missing_field", "account_id"),
        ("negative_tokens", "output_tokens"),
    ]
    assert {r["row"] for r in rejects} == {2, 3, 4}


def test_otel_file_ingest_counts_skipped_spans(tmp_path: Path) -> None:
    # Collector file exporter: one ExportTraceServiceRequest per line.
    path = tmp_path / "traces.jsonl"
    path.write_text(
        json.dumps(otlp_payload([genai_span(1), genai_span(2)]))
        + "\n"
        + json.dumps(otlp_payload([genai_span(3, **{"client.address": "x"})]))
        + "\n"
    )
    result = run_ingest([path], out=tmp_path / "out", progress=False, input_format="otel")
    assert (result.events.read, result.events.accepted, result.events.rejected) == (3, 2, 1)
    assert result.adapter["skipped_non_genai"] == 2
    reject = json.loads((tmp_path / "out" / "rejects.jsonl").read_text())
    assert (reject["file"], reject["line"], reject["reason"]) == (str(path), 2, "bad_ip")
    assert pq.read_table(tmp_path / "out" / "events").num_rows == 2


def litellm_record(i: int, **changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": f"chatcmpl-{i}",
        "trace_id": f"trace-{i}",
        "call_type": "acompletion",
        "status": "success",
        "prompt_tokens": 31,
        "completion_tokens": 210,
        "total_tokens": 241,
        "startTime": 1770091506.789 + i,
        "endTime": 1770091508.2 + i,
        "model": "claude-sonnet",
        "model_group": "claude-sonnet",
        "end_user": "customer-42",
        "requester_ip_address": "198.51.100.23",
        "metadata": {
            "user_api_key_hash": "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b",
            "user_api_key_alias": "prod",
            "user_api_key_team_id": "team-1",
        },
        "model_parameters": {
            "temperature": 0.0,
            "max_tokens": 1024,
            "tools": [{"type": "function"}],
        },
        "messages": [
            {"role": "system", "content": "Reason step by step."},
            {"role": "user", "content": [{"type": "text", "text": f"Prove lemma {i}."}]},
        ],
        "response": {
            "id": f"chatcmpl-{i}",
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "Proof: ...", "tool_calls": None},
                }
            ],
        },
    }
    record.update(changes)
    return record


def test_litellm_mapping() -> None:
    e = litellm_record_to_event(litellm_record(0))
    assert (e["request_id"], e["timestamp"], e["account_id"]) == (
        "chatcmpl-0",
        "1770091506789",
        "customer-42",
    )
    assert (e["client_ip"], e["model"], e["prompt"], e["system"]) == (
        "198.51.100.23",
        "claude-sonnet",
        "Prove lemma 0.",
        "Reason step by step.",
    )
    assert (e["response"], e["input_tokens"], e["output_tokens"], e["tools"]) == (
        "Proof: ...",
        "31",
        "210",
        "1",
    )
    assert e["api_key_id"].startswith("88dc28") and e["status"] == "ok"


def test_litellm_account_falls_back_to_key_hash_and_failures(tmp_path: Path) -> None:
    records = [
        litellm_record(1, end_user=None),
        litellm_record(2, end_user="", messages=None, response=None),
        litellm_record(
            3,
            status="failure",
            error_information={"error_code": "429", "error_class": "RateLimitError"},
        ),
        litellm_record(4, requester_ip_address=None),
        litellm_record(1),  # duplicate id
    ]
    path = tmp_path / "litellm.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    result = run_ingest([path], out=tmp_path / "out", progress=False, input_format="litellm")
    ev = result.events
    assert (ev.read, ev.accepted, ev.rejected, ev.duplicate) == (5, 3, 1, 1)
    assert ev.by_field == {"missing_field:client_ip": 1}
    rows = {r["request_id"]: r for r in pq.read_table(tmp_path / "out" / "events").to_pylist()}
    assert rows["chatcmpl-1"]["account_id"].startswith("88dc28")
    assert rows["chatcmpl-2"]["prompt"] == "" and rows["chatcmpl-2"]["response"] is None
    assert rows["chatcmpl-3"]["status"] == "rate_limited"
