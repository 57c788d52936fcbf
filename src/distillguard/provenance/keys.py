"""Secret watermark keys: creation, key files, and per-purpose seeds derived with HMAC.

The raw secret never enters a hash directly: each use (context hashing, token hashing,
canary choices) gets its own 64-bit seed from HMAC-SHA256(secret, purpose), so leaking one
derived seed does not reveal the others.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from distillguard.errors import UserError

KEY_FILE_VERSION = 1


@dataclass(frozen=True)
class WatermarkKey:
    """A provider secret. `key_id` is a public label (safe to log); `secret` is not."""

    secret: bytes
    key_id: str = ""

    def __post_init__(self) -> None:
        if len(self.secret) < 16:
            raise UserError("watermark key secret must be at least 16 bytes")

    def seed(self, purpose: str) -> int:
        """A 64-bit seed for one purpose (e.g. 'context', 'token', 'canary')."""
        digest = hmac.new(self.secret, purpose.encode("utf-8"), hashlib.sha256).digest()
        return int.from_bytes(digest[:8], "little")

    def digest(self, message: bytes) -> bytes:
        """HMAC-SHA256 of `message` under this key (used for keyed discrete choices)."""
        return hmac.new(self.secret, message, hashlib.sha256).digest()

    @classmethod
    def from_seed(cls, seed: int, key_id: str = "") -> WatermarkKey:
        """A deterministic key for tests and experiments (never for production)."""
        secret = hashlib.sha256(f"distillguard-test-key-{seed}".encode()).digest()
        return cls(secret=secret, key_id=key_id or f"test-{seed}")


def new_key(key_id: str = "") -> WatermarkKey:
    """A fresh random 256-bit key."""
    secret = secrets.token_bytes(32)
    return WatermarkKey(secret=secret, key_id=key_id or secret[:4].hex())


def save_key(key: WatermarkKey, path: Path, params: dict[str, float | int] | None = None) -> None:
    """Write a key file (JSON, mode 0600). `params` records the watermark settings used."""
    payload = {
        "version": KEY_FILE_VERSION,
        "key_id": key.key_id,
        "secret_hex": key.secret.hex(),
        "params": params or {},
    }
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    path.chmod(0o600)


def load_key(path: Path) -> tuple[WatermarkKey, dict[str, float | int]]:
    """Read a key file written by `save_key`; returns the key and its recorded params."""
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
        secret = bytes.fromhex(payload["secret_hex"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"cannot read watermark key file {path}: {exc}") from exc
    return WatermarkKey(secret=secret, key_id=str(payload.get("key_id", ""))), dict(
        payload.get("params", {})
    )
