"""OTLP/HTTP trace payloads: protobuf or JSON in, the matching ExportTraceServiceResponse out.

Protobuf is decoded with `opentelemetry-proto` and turned into the OTLP/JSON shape the ingest
OTel adapter (`ingest.otel`) reads, so both encodings share one span -> event mapping.
"""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

from distillguard.serve.service import Outcome

PROTOBUF = "application/x-protobuf"


def _hex_ids(node: Any) -> None:
    """MessageToDict writes bytes as base64; OTLP/JSON writes trace and span ids as hex."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("traceId", "spanId", "parentSpanId") and isinstance(value, str):
                node[key] = base64.b64decode(value).hex()
            else:
                _hex_ids(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids(item)


def decode_otlp(body: bytes, content_type: str, encoding: str = "") -> dict[str, Any]:
    """An ExportTraceServiceRequest as an OTLP/JSON dict; ValueError if it does not decode."""
    if "gzip" in encoding.lower():
        try:
            body = gzip.decompress(body)
        except OSError as exc:
            raise ValueError(f"bad gzip body: {exc}") from None
    if PROTOBUF in content_type or "protobuf" in content_type:
        from google.protobuf.json_format import MessageToDict
        from google.protobuf.message import DecodeError
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        message = ExportTraceServiceRequest()
        try:
            message.ParseFromString(body)
        except DecodeError as exc:
            raise ValueError(f"not an OTLP protobuf ExportTraceServiceRequest: {exc}") from None
        payload = MessageToDict(message)
        _hex_ids(payload)
        return payload
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed OTLP/JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise ValueError("OTLP/JSON body must be an object with resourceSpans")
    return payload


def otlp_response(outcome: Outcome, content_type: str) -> tuple[bytes, str]:
    """The response body in the request's encoding (partial success when spans were rejected)."""
    if PROTOBUF not in content_type and "protobuf" not in content_type:
        return outcome.body, "application/json"
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )

    doc = json.loads(outcome.body) if outcome.body else {}
    response = ExportTraceServiceResponse()
    partial = doc.get("partialSuccess") or {}
    if partial.get("rejectedSpans"):
        response.partial_success.rejected_spans = int(partial["rejectedSpans"])
        response.partial_success.error_message = str(partial.get("errorMessage", ""))
    if outcome.status != 200:
        response.partial_success.error_message = str(doc.get("detail", ""))
    return response.SerializeToString(), PROTOBUF
