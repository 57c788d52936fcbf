"""HTTP API of `distillguard serve` (FastAPI): thin handlers over `service.Service`."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from distillguard.serve.auth import Authenticator
from distillguard.serve.config import ServeConfig, signup_policy
from distillguard.serve.fastlane import EventsFastLane
from distillguard.serve.http import HttpError, read_limited, require_scope
from distillguard.serve.multiproc import Runtime
from distillguard.serve.otlp import decode_otlp, otlp_response
from distillguard.serve.service import Outcome, Service
from distillguard.serve.signups import register_signups

JSON = "application/json"


def scope_guard(auth: Authenticator, scope: str) -> Callable[[Request], None]:
    """A dependency: 401 without a valid token, 403 when the token lacks `scope`."""

    def check(request: Request) -> None:
        require_scope(auth, request.headers.get("authorization", ""), scope)

    return check


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or 413 as soon as it is known to exceed `limit` bytes."""
    return await read_limited(request.stream(), request.headers.get("content-length"), limit)


def _respond(outcome: Outcome) -> Response:
    return Response(outcome.body, status_code=outcome.status, media_type=JSON)


GC_YOUNG_THRESHOLD = 20_000  # allocations between young collections (CPython's default: 700)
REFREEZE_S = 60.0


def settle_heap() -> None:
    """Collect once, then freeze the heap of modules and replayed state: a full collection
    otherwise walks all of it, a 50-90 ms pause (measured) that lands on whichever POST is
    running. Fewer young collections too: the request path allocates a lot that dies young."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


async def refreeze_heap() -> None:
    """Every `REFREEZE_S`, objects that survived a young collection (the windows of new
    accounts, cached IPs) join the frozen heap, so no full collection ever walks the state.
    Only the youngest generation is collected first: collecting the middle one as well took
    23-31 ms under load (measured; a spike on whichever POST was running) and found nothing.
    Cyclic garbage that survived a young collection is frozen with the rest: in three 60 s
    runs at 5,000 events/s the middle generation held none (its collection freed 0 objects)."""
    while True:
        await asyncio.sleep(REFREEZE_S)
        gc.collect(0)
        gc.freeze()


class CountRequests:
    """Counts responses by route and status (`distillguard_http_requests_total`). Plain ASGI:
    Starlette's `BaseHTTPMiddleware` costs a task group and a stream per request."""

    def __init__(self, app: Any, metrics: Any) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = "500"

        async def send_counted(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = str(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.inc("distillguard_http_requests_total", route=path, status=status)


def create_app(
    cfg: ServeConfig,
    service: Service | None = None,
    runtime: Runtime | None = None,
    freeze_heap: bool = False,
) -> FastAPI:
    """The FastAPI app; the service's workers start and stop with the app's lifespan.
    `runtime`: this app is one of several request processes (serve/multiproc.py).
    `freeze_heap`: once started, move every object into the garbage collector's permanent
    generation (the server process: see `settle_heap`)."""
    signup = signup_policy(cfg)  # a bad policy file fails here, before any state is opened
    svc = service or Service(cfg, runtime=runtime)
    auth = Authenticator(cfg.tokens, bool(cfg.get("auth", "disabled")))
    limit = int(cfg.get("server", "max_body_bytes"))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        svc.start()
        refreezer = None
        if freeze_heap:
            settle_heap()
            refreezer = asyncio.create_task(refreeze_heap())
        try:
            yield
        finally:
            if refreezer is not None:
                refreezer.cancel()
            await run_in_threadpool(svc.stop)

    app = FastAPI(title="distillguard", version="1", lifespan=lifespan)
    app.state.service = svc
    read = Depends(scope_guard(auth, "read"))
    write = Depends(scope_guard(auth, "write"))

    @app.exception_handler(HttpError)
    async def _http_error(_: Request, exc: HttpError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, exc.status, headers=exc.headers)

    app.add_middleware(CountRequests, metrics=svc.metrics)
    if cfg.get("server", "fast_lane"):  # outermost: answers POST /v1/events before the rest
        app.add_middleware(EventsFastLane, service=svc, auth=auth, limit=limit, metrics=svc.metrics)

    @app.post("/v1/events", dependencies=[write])
    async def post_events(request: Request) -> Response:
        """A batch of contract events -> one decision per event, in order."""
        body = await read_body(request, limit)
        return _respond(await run_in_threadpool(svc.ingest_body, body))

    @app.post("/v1/traces", dependencies=[write])
    async def post_traces(request: Request) -> Response:
        """OTLP/HTTP traces (JSON or protobuf): GenAI spans are scored like events."""
        body = await read_body(request, limit)
        content_type = request.headers.get("content-type", JSON)
        encoding = request.headers.get("content-encoding", "")
        try:
            payload = decode_otlp(body, content_type, encoding)
        except ValueError as exc:
            raise HttpError(400, str(exc)) from None
        outcome = await run_in_threadpool(svc.ingest_otlp, payload)
        body, media = otlp_response(outcome, content_type)
        return Response(body, status_code=outcome.status, media_type=media)

    @app.post("/v1/litellm", dependencies=[write])
    async def post_litellm(request: Request) -> Response:
        """LiteLLM proxy logs: {"records": [<standard logging payload>, ...]}."""
        body = await read_body(request, limit)
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise HttpError(400, f"malformed JSON: {exc}") from None
        records = payload.get("records") if isinstance(payload, dict) else payload
        return _respond(await run_in_threadpool(svc.ingest_litellm, records))

    @app.get("/v1/accounts/{account_id}", dependencies=[read])
    async def get_account(account_id: str) -> Response:
        view = await run_in_threadpool(svc.account_view, account_id)
        if view is None:
            raise HttpError(404, f"account {account_id!r} not seen")
        return JSONResponse(view)

    @app.get("/v1/campaigns", dependencies=[read])
    async def get_campaigns() -> Response:
        return JSONResponse(await run_in_threadpool(svc.campaigns_view))

    register_signups(app, svc, write, limit, signup)  # POST /v1/signups (serve/signups.py)

    @app.get("/healthz")
    async def healthz() -> Response:
        return JSONResponse(svc.health())

    @app.get("/metrics", dependencies=[read])
    async def metrics() -> Response:
        return PlainTextResponse(
            svc.render_metrics(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    return app
