"""OpenTelemetry GenAI spans (OTLP/JSON export) -> contract events.

One GenAI span (any `gen_ai.*` attribute) is one request. Spans without GenAI attributes (HTTP,
DB, ... spans in the same export) are counted as skipped, not rejected. The mapping is in
docs/ingest.md. Output columns are strings; the shared validator types and checks them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from distillguard.ingest.messages import (
    count_images,
    count_tool_calls,
    last_user_text,
    parse_json_value,
    system_text,
    text_of_messages,
    user_turns,
)

RAW_FIELDS = (
    "request_id", "timestamp", "account_id", "api_key_id", "client_ip", "user_agent", "model",
    "system", "prompt", "response", "input_tokens", "output_tokens", "max_tokens", "temperature",
    "thinking_budget", "tools", "tool_calls", "images", "conversation_id", "turn", "status",
)  # fmt: skip
RAW_SCHEMA = pa.schema(
    [(f, pa.string()) for f in RAW_FIELDS]
    + [("_src_line", pa.int64()), ("_src_row", pa.int64()), ("_src_malformed", pa.bool_())]
)
_FIELDS_SCHEMA = pa.schema([(f, pa.string()) for f in RAW_FIELDS])
# What an adapter stages for a line that is not a JSON object: no fields, flagged, so it
# becomes one `malformed_json` reject at its line.
MALFORMED: dict[str, str | None] = {"_src_malformed": "1"}


def attribute_value(value: dict[str, Any]) -> Any:
    """The Python value of an OTLP/JSON AnyValue (`{"stringValue": ...}`, `{"intValue": "1"}`)."""
    if not isinstance(value, dict):
        return value
    for key in ("stringValue", "boolValue", "doubleValue", "bytesValue"):
        if key in value:
            return value[key]
    if "intValue" in value:
        return value["intValue"]  # OTLP/JSON encodes int64 as a string; the validator parses it
    if "arrayValue" in value:
        return [attribute_value(v) for v in value["arrayValue"].get("values", [])]
    if "kvlistValue" in value:
        return attributes(value["kvlistValue"].get("values", []))
    return None


def attributes(items: list[dict[str, Any]] | None) -> dict[str, Any]:
    """OTLP key/value list -> dict."""
    return {
        kv.get("key"): attribute_value(kv.get("value", {}))
        for kv in items or []
        if isinstance(kv, dict)
    }


def iter_spans(payload: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(resource attributes, span) for every span of an ExportTraceServiceRequest."""
    for rs in payload.get("resourceSpans", []) or []:
        resource = attributes((rs.get("resource") or {}).get("attributes"))
        scopes = rs.get("scopeSpans") or rs.get("instrumentationLibrarySpans") or []
        for ss in scopes:
            for span in ss.get("spans", []) or []:
                yield resource, span


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _ns_to_ms(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return str(int(value) // 1_000_000)
    except (TypeError, ValueError):
        return str(value)  # left as is: the validator reports it as a bad timestamp


def _status(span: dict[str, Any], attrs: dict[str, Any]) -> str:
    finish = attrs.get("gen_ai.response.finish_reasons") or []
    if isinstance(finish, str):
        finish = [finish]
    error_type = str(attrs.get("error.type") or "").lower()
    code = (span.get("status") or {}).get("code")
    if "429" in error_type or "rate" in error_type:
        return "rate_limited"
    if "content_filter" in finish:
        return "refused"
    if code in (2, "2", "STATUS_CODE_ERROR") or error_type:
        return "error"
    return "ok"


def is_genai(attrs: dict[str, Any]) -> bool:
    return any(str(k).startswith("gen_ai.") for k in attrs)


def span_to_record(
    resource: dict[str, Any], span: dict[str, Any], span_attrs: dict[str, Any] | None = None
) -> dict[str, str | None]:
    """One GenAI span -> contract field -> string value (None when absent). `span_attrs`: the
    span's attributes when the caller has already decoded them."""
    if span_attrs is None:
        span_attrs = attributes(span.get("attributes"))
    attrs = {**resource, **span_attrs}
    inputs = parse_json_value(attrs.get("gen_ai.input.messages"))
    outputs = parse_json_value(attrs.get("gen_ai.output.messages"))
    instructions = parse_json_value(attrs.get("gen_ai.system_instructions"))
    tools = parse_json_value(attrs.get("gen_ai.tool.definitions"))
    trace, span_id = span.get("traceId"), span.get("spanId")
    # Content capture is opt-in in OTel: no input messages means the prompt was not recorded.
    prompt = last_user_text(inputs) if inputs is not None else ""
    system = (
        system_text(instructions)
        if instructions is not None
        else system_text(inputs, roles_only=True)
    )
    turns = user_turns(inputs)
    return {
        "request_id": f"{trace}:{span_id}" if trace and span_id else (span_id or None),
        "timestamp": _ns_to_ms(span.get("startTimeUnixNano")),
        "account_id": _text(attrs.get("user.id") or attrs.get("enduser.id")),
        "api_key_id": None,
        "client_ip": _text(attrs.get("client.address")),
        "user_agent": _text(attrs.get("user_agent.original")),
        "model": _text(attrs.get("gen_ai.request.model") or attrs.get("gen_ai.response.model")),
        "system": system,
        "prompt": prompt,
        "response": text_of_messages(outputs) if outputs is not None else None,
        "input_tokens": _text(
            attrs.get("gen_ai.usage.input_tokens", attrs.get("gen_ai.usage.prompt_tokens"))
        ),
        "output_tokens": _text(
            attrs.get("gen_ai.usage.output_tokens", attrs.get("gen_ai.usage.completion_tokens"))
        ),
        "max_tokens": _text(attrs.get("gen_ai.request.max_tokens")),
        "temperature": _text(attrs.get("gen_ai.request.temperature")),
        "thinking_budget": None,
        "tools": str(len(tools)) if isinstance(tools, list) else None,
        "tool_calls": str(count_tool_calls(outputs)) if outputs is not None else None,
        "images": str(count_images(inputs)) if inputs is not None else None,
        "conversation_id": _text(attrs.get("gen_ai.conversation.id")),
        "turn": str(turns - 1) if turns else None,
        "status": _status(span, attrs),
    }


def records_to_table(
    records: list[dict[str, str | None]], lines: list[int], rows: list[int]
) -> pa.Table:
    """Column-wise string table (plus provenance) from adapter records."""
    # from_pylist walks the dicts in C++ (about twice as fast as one list per field here).
    table = pa.Table.from_pylist(records, schema=_FIELDS_SCHEMA)
    malformed = pa.array([r is MALFORMED for r in records], pa.bool_())
    provenance = [pa.array(lines, pa.int64()), pa.array(rows, pa.int64()), malformed]
    return pa.Table.from_arrays(table.columns + provenance, schema=RAW_SCHEMA)


def payload_records(
    payload: dict[str, Any], line: int, start_row: int, stats: dict[str, int]
) -> tuple[list[dict[str, str | None]], list[int], list[int]]:
    records, lines, rows = [], [], []
    for resource, span in iter_spans(payload):
        stats["spans"] = stats.get("spans", 0) + 1
        attrs = attributes(span.get("attributes"))
        if not is_genai(attrs):
            stats["skipped_non_genai"] = stats.get("skipped_non_genai", 0) + 1
            continue
        records.append(span_to_record(resource, span, attrs))  # attributes decoded once
        lines.append(line)
        rows.append(start_row + len(rows))
    return records, lines, rows


def otel_spans_to_events(payload: dict[str, Any]) -> tuple[pa.Table, list[dict[str, Any]]]:
    """Map one OTLP/JSON ExportTraceServiceRequest to validated contract events.

    Returns (events in contract.EVENTS schema, rejects as dicts with row/field/reason/record).
    Usable from a service: no files are written except a temporary rejects file.
    """
    from distillguard.ingest.pipeline import validate_table

    records, lines, rows = payload_records(payload, 1, 0, {})
    return validate_table("events", records_to_table(records, lines, rows), "otel-payload")


def read_otel_documents(path: Path, opener: Any) -> Iterator[tuple[int, Any]]:
    """(line, payload) for a file holding one JSON document or one document per line; the
    payload of a line that is not JSON is None (the caller stages a malformed record)."""
    from distillguard.errors import UserError

    with opener(path) as fh:
        first = fh.readline()
        try:
            doc = json.loads(first) if first.strip() else None
        except json.JSONDecodeError:
            doc = None
        if doc is None:  # a single (pretty-printed) document
            fh.seek(0)
            try:
                yield 1, json.load(fh)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise UserError(f"{path}: not OTLP/JSON ({exc})") from None
            return
        yield 1, doc
        for number, line in enumerate(fh, start=2):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError:
                yield number, None
