"""`POST /v1/events` straight from ASGI, the service's hot path.

The FastAPI route stays (it documents the endpoint and answers when the fast lane is off); this
middleware answers the same requests first, with the same checks and the same responses: bearer
token and `write` scope (401 / 403), body size limit (413), then the service. It skips
Starlette's router, exception middleware, dependency solving and request objects, and anyio's
thread hand-off: about a millisecond of a POST's few on a busy 2-core machine
(docs/benchmarks.md). A batch the typed schema takes is decoded on the event loop and handed to
the group commit, which answers the waiting coroutine itself; any other body goes to
`Service.ingest_untyped` on a thread. Every other request goes on to the FastAPI app.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from distillguard.serve.auth import Authenticator
from distillguard.serve.http import HttpError, read_limited, require_scope
from distillguard.serve.service import Outcome, Service, _Pending

log = logging.getLogger("distillguard.serve")
ROUTE = "/v1/events"
INGEST_THREADS = 32  # bodies for the rule-by-rule validator, each waiting on its commit
JSON_HEADERS = [(b"content-type", b"application/json")]


class EventsFastLane:
    """ASGI middleware answering `POST /v1/events`; everything else passes through."""

    def __init__(
        self, app: Any, service: Service, auth: Authenticator, limit: int, metrics: Any
    ) -> None:
        self.app, self.service, self.auth, self.limit, self.metrics = (
            app, service, auth, limit, metrics,
        )  # fmt: skip
        self._pool = ThreadPoolExecutor(INGEST_THREADS, thread_name_prefix="dg-ingest")

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != ROUTE or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        try:
            status, headers, body = await self._answer(scope, receive)
        except HttpError as exc:  # as the app's HttpError handler answers
            status = exc.status
            headers = JSON_HEADERS + [
                (k.lower().encode(), v.encode()) for k, v in exc.headers.items()
            ]
            body = json.dumps({"detail": exc.detail}, separators=(",", ":")).encode()
        except Exception:  # as Starlette's ServerErrorMiddleware answers
            log.exception("POST %s failed", ROUTE)
            status, headers, body = (
                500,
                [(b"content-type", b"text/plain")],
                b"Internal Server Error",
            )
        headers = [*headers, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        self.metrics.inc("distillguard_http_requests_total", route=ROUTE, status=str(status))

    async def _answer(self, scope: dict, receive: Any) -> tuple[int, list, bytes]:
        require_scope(self.auth, _header(scope, b"authorization").decode("latin-1"), "write")
        declared = _header(scope, b"content-length").decode("latin-1") or None
        body = await read_limited(_body_chunks(receive), declared, self.limit)
        loop = asyncio.get_running_loop()
        typed = self.service.decode_typed(body)  # ~1 ms in C: not worth a thread hand-off
        if isinstance(typed, Outcome):
            return typed.status, JSON_HEADERS, typed.body
        if typed is None:
            # the validator's path (it names every rejected row), on a thread
            outcome = await loop.run_in_executor(self._pool, self.service.ingest_untyped, body)
            return outcome.status, JSON_HEADERS, outcome.body
        return 200, JSON_HEADERS, await self._decide(loop, typed)

    async def _decide(self, loop: asyncio.AbstractEventLoop, table: Any) -> bytes:
        """The group commit answers this coroutine straight from its thread: no thread of
        ours waits on it (two fewer thread wake-ups per POST, ~1 ms on a busy 2-core host)."""
        answer: asyncio.Future[bytes] = loop.create_future()
        self.service.submit(table, lambda p: loop.call_soon_threadsafe(_settle, answer, p))
        return await answer


def _settle(answer: asyncio.Future[bytes], pending: _Pending) -> None:
    if answer.done():  # the client went away meanwhile
        return
    if pending.error is not None:
        answer.set_exception(pending.error)
    else:
        assert pending.body is not None
        answer.set_result(pending.body)


async def _body_chunks(receive: Any) -> AsyncIterator[bytes]:
    """The ASGI request body, chunk by chunk (what Starlette's `request.stream()` yields)."""
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HttpError(400, "client disconnected")
        yield message.get("body", b"")
        more = message.get("more_body", False)


def _header(scope: dict, name: bytes) -> bytes:
    """The first value of a header (ASGI gives names in lower case), or b""."""
    return next((value for key, value in scope["headers"] if key == name), b"")
