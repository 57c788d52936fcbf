"""LiteLLM proxy callback that forwards every logged request to `distillguard serve`.

Copy this file next to the LiteLLM proxy config and add to it:

    litellm_settings:
      callbacks: litellm_callback.distillguard_logger
    general_settings:
      use_x_forwarded_for: true   # when LiteLLM sits behind a load balancer: the client's IP

Environment: DISTILLGUARD_URL (e.g. http://127.0.0.1:8765), DISTILLGUARD_TOKEN (a write token),
DISTILLGUARD_BATCH (records per POST, default 1; raise it under load: records wait until the
batch fills or DISTILLGUARD_FLUSH_S, default 1 s, passes). It runs inside LiteLLM's own Python
environment, so it needs nothing but httpx (a LiteLLM dependency) and imports no distillguard
code. The service maps LiteLLM's standard logging payload (`end_user` or the key hash is the
account, `requester_ip_address` the IP) with the ingest LiteLLM adapter.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import httpx
from litellm.integrations.custom_logger import CustomLogger


class DistillguardLogger(CustomLogger):
    def __init__(self) -> None:
        super().__init__()
        self.url = os.environ.get("DISTILLGUARD_URL", "http://127.0.0.1:8765").rstrip("/")
        self.token = os.environ.get("DISTILLGUARD_TOKEN", "")
        self.batch = max(1, int(os.environ.get("DISTILLGUARD_BATCH", "1")))
        self.flush_s = float(os.environ.get("DISTILLGUARD_FLUSH_S", "1"))
        self.pending: list[dict[str, Any]] = []
        self.last_flush = time.monotonic()
        self.lock = asyncio.Lock()
        self.clients: dict[int, httpx.AsyncClient] = {}
        self.sent = 0
        self.failed = 0

    async def _post(self, records: list[dict[str, Any]]) -> None:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        body = json.dumps({"records": records}, default=str)
        try:
            r = await self._client().post(f"{self.url}/v1/litellm", content=body, headers=headers)
            if r.status_code == 200:
                self.sent += len(records)
                return
        except httpx.HTTPError:
            pass
        self.failed += len(records)

    def _client(self) -> httpx.AsyncClient:
        # One keep-alive client per event loop: creating a client per POST costs tens of
        # milliseconds (TLS context set-up) on the proxy's event loop, for every request.
        loop = asyncio.get_running_loop()
        client = self.clients.get(id(loop))
        if client is None:
            client = self.clients[id(loop)] = httpx.AsyncClient(timeout=10.0)
        return client

    async def _log(self, kwargs: dict[str, Any]) -> None:
        record = kwargs.get("standard_logging_object")
        if not isinstance(record, dict):
            return
        async with self.lock:
            self.pending.append(record)
            due = len(self.pending) >= self.batch or (
                time.monotonic() - self.last_flush >= self.flush_s
            )
            if not due:
                return
            records, self.pending = self.pending, []
            self.last_flush = time.monotonic()
        await self._post(records)

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        await self._log(kwargs)

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
        await self._log(kwargs)


distillguard_logger = DistillguardLogger()
