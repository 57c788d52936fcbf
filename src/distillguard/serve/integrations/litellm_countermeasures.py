"""LiteLLM proxy hooks that apply distillguard countermeasures to flagged accounts' calls.

    litellm_settings:
      callbacks: litellm_countermeasures.countermeasures_hook

Pre-call it lowers the output and thinking budgets (`caps`); post-call it summarises the
reasoning trace, truncates and plants canaries (`summarise_reasoning`, `caps`, `canary`), as the
account's last `distillguard serve` decision names them. An account whose decision names no
countermeasure (every `allow`) gets its request and response objects back untouched.

Where decisions come from: `HttpDecisions` asks `GET /v1/accounts/{id}` (a read token in
DISTILLGUARD_READ_TOKEN) and caches each answer DISTILLGUARD_DECISION_TTL_S seconds (default
30); a gateway that already holds decisions (e.g. from the logging callback's POST responses)
passes its own `DecisionSource`. The account is the request's `user` field, else the virtual
key's hash, as in the service's LiteLLM adapter.

litellm is NOT imported when this module is imported: `countermeasures_hook` is built on first
access (module `__getattr__`), when LiteLLM itself loads the callback, as a subclass of its
`CustomLogger`. The logic lives in `CountermeasureHook`, which needs only
`distillguard.countermeasures` (NumPy; SciPy for canaries). In LiteLLM's environment install
distillguard with `pip install --no-deps` (its full dependency set clashes with LiteLLM's pins).
"""

from __future__ import annotations

import os
import time
from typing import Any, Protocol

from distillguard.countermeasures.gate import (
    DEFAULT_SETTINGS,
    Settings,
    apply_chat,
    last_user_prompt,
    measures_of,
    request_params,
)


class DecisionSource(Protocol):
    async def get(self, account_id: str) -> dict[str, Any] | None: ...


class HttpDecisions:
    """Last decisions from `distillguard serve`, cached per account for `ttl_s` seconds."""

    def __init__(self, url: str, token: str, ttl_s: float = 30.0) -> None:
        self.url, self.token, self.ttl_s = url.rstrip("/"), token, ttl_s
        self.cache: dict[str, tuple[float, dict[str, Any] | None]] = {}

    async def get(self, account_id: str) -> dict[str, Any] | None:
        hit = self.cache.get(account_id)
        if hit and time.monotonic() - hit[0] < self.ttl_s:
            return hit[1]
        decision = await self._fetch(account_id)
        self.cache[account_id] = (time.monotonic(), decision)
        return decision

    async def _fetch(self, account_id: str) -> dict[str, Any] | None:
        import httpx  # a LiteLLM dependency; lazy so that tests need no network client

        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            async with httpx.AsyncClient(timeout=2.0) as client:
                r = await client.get(f"{self.url}/v1/accounts/{account_id}", headers=headers)
        except httpx.HTTPError:
            return None  # fail open: the service being down must not break the gateway
        return r.json().get("last_decision") if r.status_code == 200 else None


def account_of(data: dict[str, Any], user_api_key_dict: Any) -> str:
    """The request's `user`, else the virtual key's hash (the service adapter's account)."""
    user = data.get("user")
    if isinstance(user, str) and user:
        return user
    token = getattr(user_api_key_dict, "token", None) or getattr(user_api_key_dict, "api_key", "")
    return str(token or "")


class CountermeasureHook:
    """LiteLLM pre/post-call hooks (the `CustomLogger` methods), without importing litellm."""

    def __init__(self, decisions: DecisionSource, settings: Settings = DEFAULT_SETTINGS) -> None:
        self.decisions, self.settings = decisions, settings
        self.applied = 0

    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict[str, Any], call_type: str
    ) -> dict[str, Any]:
        decision = await self.decisions.get(account_of(data, user_api_key_dict))
        if not measures_of(decision):
            return data
        return request_params(decision, data, self.settings)

    async def async_post_call_success_hook(
        self, data: dict[str, Any], user_api_key_dict: Any, response: Any
    ) -> Any:
        account = account_of(data, user_api_key_dict)
        decision = await self.decisions.get(account)
        if not measures_of(decision):
            return response
        self.applied += 1
        prompt = last_user_prompt(data.get("messages"))
        return apply_chat(decision, response, self.settings, prompt, account)


def make_litellm_callback(
    decisions: DecisionSource | None = None, settings: Settings = DEFAULT_SETTINGS
) -> Any:
    """A `litellm.integrations.custom_logger.CustomLogger` running `CountermeasureHook`."""
    from litellm.integrations.custom_logger import CustomLogger

    class DistillguardCountermeasures(CountermeasureHook, CustomLogger):  # type: ignore[misc]
        def __init__(self) -> None:
            CustomLogger.__init__(self)
            CountermeasureHook.__init__(self, decisions or _env_decisions(), settings)

    return DistillguardCountermeasures()


def _env_decisions() -> HttpDecisions:
    return HttpDecisions(
        os.environ.get("DISTILLGUARD_URL", "http://127.0.0.1:8765"),
        os.environ.get("DISTILLGUARD_READ_TOKEN", ""),
        float(os.environ.get("DISTILLGUARD_DECISION_TTL_S", "30")),
    )


_built: dict[str, Any] = {}


def __getattr__(name: str) -> Any:
    """`countermeasures_hook` is built when LiteLLM loads it (litellm is imported then)."""
    if name != "countermeasures_hook":
        raise AttributeError(name)
    if name not in _built:
        _built[name] = make_litellm_callback()
    return _built[name]
