"""ASGI middleware (FastAPI / Starlette) applying distillguard countermeasures to an
OpenAI-compatible chat-completions app.

    app.add_middleware(CountermeasureMiddleware, decisions=lookup, settings=Settings(...))

`decisions(account_id)` returns the account's last `distillguard serve` decision (a dict with
`countermeasures`) or None; it may be sync or async. The account is `account_of(scope, body)`:
by default the JSON body's `user` field, else the `x-account-id` header.

For a decision naming no countermeasure (every `allow`) the request and the response pass
through the middleware untouched, byte for byte, streaming included. For a flagged account on
a JSON POST: the request's output/thinking budgets are lowered (`caps`), and the JSON response
is buffered, changed by `apply_chat` and re-sent with a corrected Content-Length. Streaming
(server-sent events) responses of flagged accounts are passed through unchanged: cap them with
the request-side caps, or serve flagged accounts without streaming.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from typing import Any

from distillguard.countermeasures.gate import (
    DEFAULT_SETTINGS,
    Settings,
    apply_chat,
    last_user_prompt,
    measures_of,
    request_params,
)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
DecisionLookup = Callable[[str], Any]


def default_account_of(scope: Scope, body: dict[str, Any]) -> str:
    user = body.get("user")
    if isinstance(user, str) and user:
        return user
    for name, value in scope.get("headers", []):
        if name == b"x-account-id":
            return value.decode("latin-1")
    return ""


async def _read_all(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The buffered body once, then the real channel (a streaming app waits on it for the
    client's disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


class CountermeasureMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        decisions: DecisionLookup,
        settings: Settings = DEFAULT_SETTINGS,
        account_of: Callable[[Scope, dict[str, Any]], str] = default_account_of,
        paths: tuple[str, ...] = ("/v1/chat/completions", "/chat/completions"),
    ) -> None:
        self.app, self.decisions, self.settings = app, decisions, settings
        self.account_of, self.paths = account_of, paths

    async def _decision(self, account: str) -> Any:
        result = self.decisions(account)
        return await result if inspect.isawaitable(result) else result

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        raw = await _read_all(receive)
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            await self.app(scope, _replay(raw, receive), send)
            return
        account = self.account_of(scope, body)
        decision = await self._decision(account)
        if not measures_of(decision):
            await self.app(scope, _replay(raw, receive), send)  # the original bytes, untouched
            return
        capped = request_params(decision, body, self.settings)
        new_raw = raw if capped is body else json.dumps(capped).encode()
        new_scope = _with_length(scope, len(new_raw)) if new_raw is not raw else scope
        prompt = last_user_prompt(body.get("messages"))
        await self.app(
            new_scope,
            _replay(new_raw, receive),
            self._rewriting_send(send, decision, prompt, account),
        )

    def _rewriting_send(self, send: Send, decision: Any, prompt: str, account: str) -> Send:
        start: Message | None = None
        chunks: list[bytes] = []
        passthrough = False

        async def wrapped(message: Message) -> None:
            nonlocal start, passthrough
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers", []))
                is_json = headers.get(b"content-type", b"").startswith(b"application/json")
                passthrough = not is_json or message.get("status", 200) != 200
                if passthrough:
                    await send(message)
                else:
                    start = message
                return
            if message["type"] != "http.response.body" or passthrough:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            await self._send_rewritten(
                send, start or {}, b"".join(chunks), decision, prompt, account
            )

        return wrapped

    async def _send_rewritten(
        self, send: Send, start: Message, raw: bytes, decision: Any, prompt: str, account: str
    ) -> None:
        try:
            completion = json.loads(raw)
            changed = apply_chat(decision, completion, self.settings, prompt, account)
            if changed is not completion:
                raw = json.dumps(changed).encode()
        except (json.JSONDecodeError, UnicodeDecodeError):
            pass  # not a completion: send what the app sent
        headers = [(k, v) for k, v in start.get("headers", []) if k != b"content-length"]
        headers.append((b"content-length", str(len(raw)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": raw, "more_body": False})


def _with_length(scope: Scope, length: int) -> Scope:
    headers = [(k, v) for k, v in scope.get("headers", []) if k != b"content-length"]
    headers.append((b"content-length", str(length).encode()))
    return {**scope, "headers": headers}
