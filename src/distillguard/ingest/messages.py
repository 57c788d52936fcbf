"""Chat-message helpers shared by the adapters: OTel GenAI `parts` and OpenAI-style `content`."""

from __future__ import annotations

import json
from typing import Any

_IMAGE_PART_TYPES = {"image", "image_url", "input_image"}
_MEDIA_PART_TYPES = {"blob", "uri", "file"}


def parse_json_value(value: Any) -> Any:
    """A JSON-encoded attribute (OTel stores messages as a JSON string) -> Python; else as is."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _parts(message: Any) -> list[Any]:
    if not isinstance(message, dict):
        return []
    if isinstance(message.get("parts"), list):
        return message["parts"]
    content = message.get("content")
    return content if isinstance(content, list) else []


def message_text(message: Any) -> str:
    """The text of one message (text parts joined by newlines)."""
    if isinstance(message, str):
        return message
    if not isinstance(message, dict):
        return ""
    if isinstance(message.get("content"), str):
        return message["content"]
    texts = []
    for part in _parts(message):
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict) and part.get("type", "text") in (
            "text",
            "input_text",
            "output_text",
        ):
            value = part.get("content", part.get("text"))
            if isinstance(value, str):
                texts.append(value)
    return "\n".join(texts)


def _as_list(messages: Any) -> list[Any]:
    if isinstance(messages, list):
        return messages
    if isinstance(messages, dict):
        return [messages]
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    return []


def last_user_text(messages: Any) -> str:
    """Text of the final user turn ("" when there is none)."""
    items = _as_list(messages)
    users = [m for m in items if isinstance(m, dict) and m.get("role") == "user"]
    if users:
        return message_text(users[-1])
    return message_text(items[-1]) if items else ""


def user_turns(messages: Any) -> int:
    return sum(1 for m in _as_list(messages) if isinstance(m, dict) and m.get("role") == "user")


def system_text(value: Any, roles_only: bool = False) -> str | None:
    """System prompt from OTel system instructions (a list of parts) or from system messages."""
    if value is None:
        return None
    if roles_only or (
        isinstance(value, list) and any(isinstance(v, dict) and "role" in v for v in value)
    ):
        texts = [
            message_text(m)
            for m in _as_list(value)
            if isinstance(m, dict) and m.get("role") in ("system", "developer")
        ]
        return "\n".join(texts) if texts else None
    if isinstance(value, list):
        return message_text({"parts": value})
    return str(value)


def text_of_messages(messages: Any) -> str:
    """All text of the given (output) messages."""
    if isinstance(messages, dict) and isinstance(messages.get("choices"), list):  # OpenAI response
        messages = [c.get("message", {}) for c in messages["choices"] if isinstance(c, dict)]
    return "\n".join(t for t in (message_text(m) for m in _as_list(messages)) if t)


def count_tool_calls(messages: Any) -> int:
    if isinstance(messages, dict) and isinstance(messages.get("choices"), list):
        messages = [c.get("message", {}) for c in messages["choices"] if isinstance(c, dict)]
    total = 0
    for m in _as_list(messages):
        if isinstance(m, dict):
            total += len(m.get("tool_calls") or [])
            total += sum(
                1 for p in _parts(m) if isinstance(p, dict) and p.get("type") == "tool_call"
            )
    return total


def _is_image(part: Any) -> bool:
    if not isinstance(part, dict):
        return False
    kind = part.get("type")
    if kind in _IMAGE_PART_TYPES:
        return True
    if kind in _MEDIA_PART_TYPES:
        return part.get("modality") == "image" or str(part.get("mime_type", "")).startswith(
            "image/"
        )
    return False


def count_images(messages: Any) -> int:
    return sum(sum(1 for p in _parts(m) if _is_image(p)) for m in _as_list(messages))
