"""`POST /v1/events` straight from ASGI, the service's hot path.

The FastAPI route stays (it documents the endpoint and answers when the fast lane is off); this
middleware answers the same requests first, with the same checks and the same responses: bearer
token and `write` scope (401 / 403), body size limit (413), then `Service.ingest_body` on a
thread of its own. It skips Starlette's router, exception middleware, dependency solving and
request objects, and anyio's thread hand-off: about a millisecond of a POST's few on a busy
2-core machine (docs/benchmarks.md). Every other request goes on to the FastAPI app.
"""

from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from distillguard.serve.auth import Authenticator
from distillguard.serve.service import Service

log = logging.getLogger("distillguard.serve")
ROUTE = "/v1/events"
INGEST_THREADS = 32  # callers waiting on one group commit each hold a thread
JSON_HEADERS = [(b"content-type", b"application/json")]


class Refused(Exception):
    def __init__(self, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None):
        self.status, self.detail, self.headers = status, detail, headers or []


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
        except Refused as exc:
            status, headers = exc.status, JSON_HEADERS + exc.headers
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
        self._check_token(_header(scope, b"authorization").decode("latin-1"))
        body = await self._read_body(_header(scope, b"content-length"), receive)
        loop = asyncio.get_running_loop()
        outcome = await loop.run_in_executor(self._pool, self.service.ingest_body, body)
        return outcome.status, JSON_HEADERS, outcome.body

    def _check_token(self, header: str) -> None:
        if self.auth.disabled:
            return
        scheme, _, token = header.partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        granted = self.auth.scopes(token) if token else None
        if granted is None:
            raise Refused(
                401, "missing or unknown bearer token", [(b"www-authenticate", b"Bearer")]
            )
        if "write" not in granted:
            raise Refused(403, "token lacks the 'write' scope")

    async def _read_body(self, declared: bytes, receive: Any) -> bytes:
        if declared.isdigit() and int(declared) > self.limit:
            raise Refused(413, f"body of {declared.decode()} bytes; limit is {self.limit}")
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise Refused(400, "client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                raise Refused(413, f"body over the limit of {self.limit} bytes")
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)


def _header(scope: dict, name: bytes) -> bytes:
    """The first value of a header (ASGI gives names in lower case), or b""."""
    return next((value for key, value in scope["headers"] if key == name), b"")
