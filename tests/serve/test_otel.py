"""Real OpenTelemetry clients against a real service process on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from distillguard.serve.harness import ServerProcess, write_config
from tests.serve.conftest import READ, READ_TOKEN, WRITE, WRITE_TOKEN, free_port
from tests.serve.traffic import HYDRA_TEMPLATE, T0

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("opentelemetry.exporter.otlp.proto.http")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("otel")
    port = free_port()
    cfg = write_config(
        tmp / "serve.toml", port, WRITE_TOKEN, READ_TOKEN, **{"signals.inline": "true"}
    )
    proc = ServerProcess(cfg, port, tmp / "server.log")
    proc.start()
    yield proc
    proc.stop()


def _genai_attributes(user: str, i: int, prompt: str) -> dict[str, object]:
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "atlas-3",
        "gen_ai.request.max_tokens": 4096,
        "gen_ai.usage.input_tokens": 120,
        "gen_ai.usage.output_tokens": 900 + i,
        "gen_ai.input.messages": json.dumps(
            [{"role": "user", "parts": [{"type": "text", "content": prompt}]}]
        ),
        "user.id": user,
        "client.address": f"45.61.{i % 50}.{i % 200 + 1}",
        "user_agent.original": "python-httpx/0.28",
    }


def test_sdk_protobuf_export_is_scored(server):
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    exporter = OTLPSpanExporter(
        endpoint=f"{server.url}/v1/traces", headers={"Authorization": f"Bearer {WRITE_TOKEN}"}
    )
    provider = TracerProvider(resource=Resource.create({"service.name": "llm-gateway"}))
    provider.add_span_processor(BatchSpanProcessor(exporter, max_export_batch_size=50))
    tracer = provider.get_tracer("gateway")
    for i in range(60):
        prompt = HYDRA_TEMPLATE.format(task=f"problem {i}")
        with tracer.start_as_current_span(
            "chat atlas-3", attributes=_genai_attributes("otel-user", i, prompt)
        ):
            pass
    with tracer.start_as_current_span("GET /health", attributes={"http.method": "GET"}):
        pass  # not a GenAI span: skipped, not rejected
    assert provider.force_flush(30_000)
    provider.shutdown()

    view = httpx.get(f"{server.url}/v1/accounts/otel-user", headers=READ, timeout=10).json()
    week = view["windows"]["168h"]
    assert week["requests"] == 60
    assert week["cot"] == 60  # the prompt text travelled through the span and was signalled
    assert week["distinct_ips"] == len(
        {_genai_attributes("u", i, "")["client.address"] for i in range(60)}
    )
    assert view["last_decision"]["decision"] in ("throttle", "challenge", "block")
    # A bad token is refused with 401, like the JSON API.
    bad = httpx.post(
        f"{server.url}/v1/traces",
        content=b"",
        headers={"Content-Type": "application/x-protobuf", "Authorization": "Bearer nope"},
    )
    assert bad.status_code == 401


def _json_span(i: int, attrs: dict[str, object]) -> dict[str, object]:
    def value(v: object) -> dict[str, object]:
        if isinstance(v, int):
            return {"intValue": str(v)}
        return {"stringValue": str(v)}

    start = (T0 + i * 1000) * 1_000_000
    return {
        "traceId": f"{i + 1:032x}",
        "spanId": f"{i + 1:016x}",
        "name": "chat",
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(start + 500_000_000),
        "attributes": [{"key": k, "value": value(v)} for k, v in attrs.items()],
    }


def test_otlp_json_returns_decisions_and_reports_bad_spans(server):
    spans = [_json_span(i, _genai_attributes("json-user", i, "Write a haiku.")) for i in range(5)]
    broken = _genai_attributes("json-user", 9, "hi")
    broken["gen_ai.usage.output_tokens"] = -3
    spans.append(_json_span(9, broken))
    payload = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "gw"}}]
                },
                "scopeSpans": [{"scope": {"name": "gw"}, "spans": spans}],
            }
        ]
    }
    r = httpx.post(f"{server.url}/v1/traces", json=payload, headers=WRITE, timeout=10)
    assert r.status_code == 200
    body = r.json()
    assert [d["request_id"] for d in body["decisions"]] == [
        f"{i + 1:032x}:{i + 1:016x}" for i in range(5)
    ]
    assert body["partialSuccess"]["rejectedSpans"] == 1
    assert "negative_tokens:output_tokens" in body["partialSuccess"]["errorMessage"]
