"""LiteLLM proxy "standard logging payload" records (one JSON object per line) -> contract events.

The account is `end_user` when the caller set one, else the hash of the virtual key
(`metadata.user_api_key_hash`): a proxy deployment without end users bills per key.
The mapping is in docs/ingest.md.
"""

from __future__ import annotations

from typing import Any

from distillguard.ingest.messages import (
    count_images,
    count_tool_calls,
    last_user_text,
    parse_json_value,
    system_text,
    text_of_messages,
    user_turns,
)
from distillguard.ingest.otel import _text


def _start_ms(value: Any) -> str | None:
    """LiteLLM writes epoch seconds as a float; accept ms integers and RFC 3339 strings too."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        # Anything above ~1e11 is already milliseconds (year 5138 in seconds).
        return str(int(value)) if abs(value) > 1e11 else str(round(value * 1000))
    return str(value)


def _status(record: dict[str, Any]) -> str:
    if record.get("status", "success") == "success":
        return "ok"
    info = record.get("error_information") or {}
    parts = (info.get("error_code"), info.get("error_class"), record.get("error_str"))
    text = " ".join(str(p) for p in parts if p).lower()
    if "429" in text or "ratelimit" in text or "rate limit" in text:
        return "rate_limited"
    if "contentpolicy" in text or "content_policy" in text or "content policy" in text:
        return "refused"
    return "error"


def litellm_record_to_event(record: dict[str, Any]) -> dict[str, str | None]:
    """One StandardLoggingPayload dict -> contract field -> string value (None when absent)."""
    meta = record.get("metadata") or {}
    params = record.get("model_parameters") or {}
    messages = parse_json_value(record.get("messages"))
    response = parse_json_value(record.get("response"))
    key_hash = meta.get("user_api_key_hash")
    account = record.get("end_user") or key_hash
    tools = params.get("tools")
    turns = user_turns(messages)
    if isinstance(response, dict) and "choices" not in response and "content" not in response:
        response_text: str | None = None  # an error body or an empty dict: no answer text
    else:
        response_text = text_of_messages(response) if response not in (None, "", {}) else None
    requester = meta.get("requester_metadata") or {}
    return {
        "request_id": _text(record.get("id")),
        "timestamp": _start_ms(record.get("startTime")),
        "account_id": _text(account),
        "api_key_id": _text(key_hash),
        "client_ip": _text(record.get("requester_ip_address") or meta.get("requester_ip_address")),
        "user_agent": _text(
            meta.get("user_agent")
            or (requester.get("user_agent") if isinstance(requester, dict) else None)
        ),
        "model": _text(record.get("model") or record.get("model_group")),
        "system": system_text(messages, roles_only=True) if messages is not None else None,
        # Prompts not stored (or redacted) by the proxy: the contract's "" for redacted content.
        "prompt": last_user_text(messages) if messages is not None else "",
        "response": response_text,
        "input_tokens": _text(record.get("prompt_tokens")),
        "output_tokens": _text(record.get("completion_tokens")),
        "max_tokens": _text(params.get("max_tokens", params.get("max_completion_tokens"))),
        "temperature": _text(params.get("temperature")),
        "thinking_budget": _text(
            (params.get("thinking") or {}).get("budget_tokens")
            if isinstance(params.get("thinking"), dict)
            else None
        ),
        "tools": str(len(tools)) if isinstance(tools, list) else None,
        "tool_calls": str(count_tool_calls(response))
        if isinstance(response, (dict, list))
        else None,
        "images": str(count_images(messages)) if isinstance(messages, list) else None,
        "conversation_id": _text(meta.get("session_id") or record.get("session_id")),
        "turn": str(turns - 1) if turns else None,
        "status": _status(record),
    }
