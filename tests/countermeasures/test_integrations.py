"""Example integrations: the LiteLLM hook (with fake LiteLLM objects) and the ASGI middleware."""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from types import SimpleNamespace

from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from fastapi.testclient import TestClient

from distillguard.countermeasures import Caps, Settings
from distillguard.serve.integrations.fastapi_middleware import CountermeasureMiddleware
from distillguard.serve.integrations.litellm_countermeasures import (
    CountermeasureHook,
    account_of,
)

TRACE = "Add 4 and 8 to get 12, carry 1. Then 3 plus 7 plus 1 is 11, carry 1. Then 9. Then 6."
FLAGGED = {"decision": "challenge", "countermeasures": ["summarise_reasoning", "caps"]}
ALLOW = {"decision": "allow", "countermeasures": []}
DECISIONS = {"bad": FLAGGED, "good": ALLOW}


class FakeDecisions:
    def __init__(self) -> None:
        self.asked: list[str] = []

    async def get(self, account_id: str):
        self.asked.append(account_id)
        return DECISIONS.get(account_id)


def fake_model_response() -> SimpleNamespace:
    """Shaped like litellm.ModelResponse: attribute access on choices and message."""
    message = SimpleNamespace(role="assistant", content="It is 6912.", reasoning_content=TRACE)
    return SimpleNamespace(choices=[SimpleNamespace(index=0, message=message)])


def test_litellm_module_does_not_import_litellm():
    sys.modules.pop("distillguard.serve.integrations.litellm_countermeasures", None)
    importlib.import_module("distillguard.serve.integrations.litellm_countermeasures")
    assert "litellm" not in sys.modules


def test_litellm_hook_changes_only_flagged_accounts():
    hook = CountermeasureHook(FakeDecisions(), Settings(caps=Caps(100, 50)))
    key = SimpleNamespace(token="hashed-key", user_id=None)

    def run(user, data_extra=None):
        data = {"user": user, "messages": [{"role": "user", "content": "1234+5678?"}]}
        data.update(data_extra or {})
        response = fake_model_response()
        before = (
            response.choices[0].message.content,
            response.choices[0].message.reasoning_content,
        )
        out = asyncio.run(hook.async_post_call_success_hook(data, key, response))
        return response, before, out

    response, before, out = run("good")
    assert out is response
    assert (out.choices[0].message.content, out.choices[0].message.reasoning_content) == before
    response, before, out = run("bad")
    assert out.choices[0].message.content == before[0]  # the answer is kept
    assert out.choices[0].message.reasoning_content.startswith("Summary of reasoning")
    assert hook.applied == 1

    data = {"user": "bad", "max_tokens": 5000}
    capped = asyncio.run(hook.async_pre_call_hook(key, None, data, "completion"))
    assert capped["max_tokens"] == 100 and data["max_tokens"] == 5000
    good = {"user": "good", "max_tokens": 5000}
    assert asyncio.run(hook.async_pre_call_hook(key, None, good, "completion")) is good


def test_litellm_account_falls_back_to_the_key_hash():
    assert account_of({"user": "u1"}, SimpleNamespace(token="h")) == "u1"
    assert account_of({}, SimpleNamespace(token="h")) == "h"


def _upstream() -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body = await request.json()
        if body.get("stream"):
            return StreamingResponse(
                iter([b"data: 1\n\n", b"data: [DONE]\n\n"]), "text/event-stream"
            )
        completion = {
            "id": "x",
            "echo_max_tokens": body.get("max_tokens"),
            "choices": [
                {"message": {"role": "assistant", "content": "6912", "reasoning_content": TRACE}}
            ],
        }
        # odd but valid JSON formatting: byte identity must not depend on our encoder
        return Response(json.dumps(completion, indent=3), media_type="application/json")

    @app.get("/other")
    async def other() -> dict:
        return {"ok": True}

    return app


def _client() -> TestClient:
    app = _upstream()
    app.add_middleware(
        CountermeasureMiddleware, decisions=DECISIONS.get, settings=Settings(caps=Caps(100, 50))
    )
    return TestClient(app)


def test_middleware_passes_allow_traffic_byte_identical():
    plain = TestClient(_upstream())
    client = _client()
    for user in ("good", "unknown"):
        body = {"user": user, "max_tokens": 5000, "messages": [{"role": "user", "content": "q"}]}
        direct = plain.post("/v1/chat/completions", json=body)
        through = client.post("/v1/chat/completions", json=body)
        assert through.content == direct.content and through.status_code == 200
        assert through.headers["content-length"] == direct.headers["content-length"]
    assert client.get("/other").json() == {"ok": True}


def test_middleware_applies_flagged_decisions():
    client = _client()
    body = {"user": "bad", "max_tokens": 5000, "messages": [{"role": "user", "content": "q"}]}
    r = client.post("/v1/chat/completions", json=body)
    data = r.json()
    message = data["choices"][0]["message"]
    assert message["content"] == "6912"
    assert message["reasoning_content"] != TRACE and message["reasoning_content"].startswith(
        "Summary"
    )
    assert data["echo_max_tokens"] == 100  # request-side cap reached the model
    assert int(r.headers["content-length"]) == len(r.content)
    # the account may also come from a header
    r2 = client.post("/v1/chat/completions", json={"messages": []}, headers={"x-account-id": "bad"})
    assert r2.json()["echo_max_tokens"] == 100


def test_middleware_accepts_async_lookup_and_streams_untouched():
    async def lookup(account: str):
        return DECISIONS.get(account)

    app = _upstream()
    app.add_middleware(CountermeasureMiddleware, decisions=lookup)
    client = TestClient(app)
    r = client.post("/v1/chat/completions", json={"user": "bad", "stream": True})
    assert r.content == b"data: 1\n\ndata: [DONE]\n\n"
    # a body that is not JSON reaches the upstream unchanged (which fails on it either way)
    plain = TestClient(_upstream(), raise_server_exceptions=False)
    through = TestClient(app, raise_server_exceptions=False)
    direct = plain.post("/v1/chat/completions", content=b"not json")
    r = through.post("/v1/chat/completions", content=b"not json")
    assert r.status_code == direct.status_code == 500
