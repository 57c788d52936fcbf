"""Bearer tokens, stored only as hashes, with `read` and `write` scopes.

`sha256:<hex>` is fine for long random tokens (what `serve-token` makes); `scrypt:<salt>:<hash>`
is for tokens a person chose. scrypt costs tens of milliseconds, so a token that verified once is
remembered in memory by its SHA-256 (never written anywhere).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading

from distillguard.serve.config import Token

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


def sha256_hash(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def scrypt_hash(token: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(token.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    return f"scrypt:{salt.hex()}:{digest.hex()}"


def new_token() -> str:
    """A random token with 256 bits of entropy."""
    return "dg_" + secrets.token_urlsafe(32)


def _matches(token: str, stored: str) -> bool:
    algo, _, rest = stored.partition(":")
    if algo == "sha256":
        return hmac.compare_digest(sha256_hash(token), stored)
    if algo == "scrypt":
        salt_hex, _, digest_hex = rest.partition(":")
        try:
            salt = bytes.fromhex(salt_hex)
        except ValueError:
            return False
        digest = hashlib.scrypt(token.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
        return hmac.compare_digest(digest.hex(), digest_hex)
    return False


class Authenticator:
    """Token -> scopes, or None for an unknown token."""

    def __init__(self, tokens: list[Token], disabled: bool = False) -> None:
        self.tokens = tokens
        self.disabled = disabled
        self._verified: dict[str, frozenset[str]] = {}
        self._lock = threading.Lock()

    def scopes(self, token: str) -> frozenset[str] | None:
        if self.disabled:
            return frozenset({"read", "write"})
        key = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            if key in self._verified:
                return self._verified[key]
        granted = [t.scopes for t in self.tokens if _matches(token, t.hash)]
        if not granted:
            return None
        scopes = frozenset().union(*granted)
        with self._lock:
            self._verified[key] = scopes
        return scopes
