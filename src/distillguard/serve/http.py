"""The request checks shared by the FastAPI routes and the ASGI fast lane: bearer token and
scope (401 / 403), and reading a body under the size limit (413). One definition, so both
ways into the service refuse alike."""

from __future__ import annotations

from collections.abc import AsyncIterator

from distillguard.serve.auth import Authenticator


class HttpError(Exception):
    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        self.status, self.detail, self.headers = status, detail, headers or {}


def require_scope(auth: Authenticator, authorization: str, scope: str) -> None:
    """401 without a valid bearer token in the `Authorization` header, 403 without `scope`."""
    if auth.disabled:
        return
    scheme, _, token = authorization.partition(" ")
    token = token.strip() if scheme.lower() == "bearer" else ""
    granted = auth.scopes(token) if token else None
    if granted is None:
        raise HttpError(401, "missing or unknown bearer token", {"WWW-Authenticate": "Bearer"})
    if scope not in granted:
        raise HttpError(403, f"token lacks the '{scope}' scope")


async def read_limited(chunks: AsyncIterator[bytes], declared: str | None, limit: int) -> bytes:
    """The body, or 413 as soon as it is known to exceed `limit` bytes (from the declared
    `Content-Length`, else while reading)."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HttpError(413, f"body of {declared} bytes; limit is {limit}")
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise HttpError(413, f"body over the limit of {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)
