"""Service configuration: `default.toml` merged with the operator's TOML file, key by key."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from distillguard.errors import UserError

if TYPE_CHECKING:
    from distillguard.signup.policy import SignupPolicy

DEFAULT_PATH = Path(__file__).with_name("default.toml")
BACKENDS = ("sqlite", "redis")
SYNC_MODES = ("FULL", "NORMAL", "EXTRA")
MAX_WORKERS = 64


@dataclass(frozen=True)
class Token:
    """A bearer token: its hash (never the token) and the scopes it grants."""

    name: str
    hash: str
    scopes: frozenset[str]


@dataclass
class ServeConfig:
    """Every knob of `distillguard serve`, with defaults from default.toml."""

    raw: dict[str, Any]
    base_dir: Path
    tokens: list[Token] = field(default_factory=list)

    def get(self, section: str, key: str) -> Any:
        return self.raw[section][key]

    @property
    def state_path(self) -> Path:
        return self.resolve(self.get("state", "path"))

    def resolve(self, name: str) -> Path:
        """A path from the config: relative ones are relative to the config file's folder."""
        path = Path(name)
        return path if path.is_absolute() else self.base_dir / path


def signup_policy(cfg: ServeConfig) -> SignupPolicy:
    """`[signups].policy` (a file with a `[signup]` table), or the shipped default policy."""
    from distillguard.signup.policy import load_signup_policy

    name = cfg.get("signups", "policy")
    return load_signup_policy(cfg.resolve(name) if name else None)


def _release_ms(value: Any, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, datetime):
        stamp = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(stamp.timestamp() * 1000)
    if isinstance(value, str):
        try:
            stamp = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            stamp = None
        if stamp is not None and stamp.tzinfo is not None:
            return int(stamp.timestamp() * 1000)
    raise UserError(f"{where}: released_at must be RFC 3339 with an offset or epoch ms")


def release_times(cfg: ServeConfig) -> dict[str, int]:
    """model -> release time (epoch ms) from `[releases]` entries and file; the earliest wins."""
    out: dict[str, int] = {}
    for i, entry in enumerate(cfg.get("releases", "models")):
        where = f"config [releases].models #{i + 1}"
        if not isinstance(entry, dict) or "model" not in entry or "released_at" not in entry:
            raise UserError(f"{where}: needs model and released_at")
        ms = _release_ms(entry["released_at"], where)
        out[str(entry["model"])] = min(ms, out.get(str(entry["model"]), ms))
    name = cfg.get("releases", "file")
    if name:
        path = Path(name) if Path(name).is_absolute() else cfg.base_dir / name
        try:
            t = pq.read_table(path, columns=["model", "released_at"])
        except (OSError, KeyError, ValueError) as exc:
            raise UserError(f"config [releases].file {path}: {exc}") from None
        released = pc.cast(pc.cast(t["released_at"], pa.timestamp("ms", "UTC")), pa.int64())
        for model, ms in zip(t["model"].to_pylist(), released.to_pylist(), strict=True):
            if model is not None and ms is not None:
                out[model] = min(ms, out.get(model, ms))
    return out


def ip_intel_table(cfg: ServeConfig) -> pa.Table | None:
    """`[ip_intel].file` (contract section 4, CSV, JSONL or Parquet) read and checked by the
    ingest section reader, as `distillguard ingest --ip-intel` reads it; None when not set.
    A row the contract rejects stops the start: a config file is fixed, not half used."""
    from distillguard.ingest import read_section

    name = cfg.get("ip_intel", "file")
    if not name:
        return None
    path = cfg.resolve(name)
    try:
        table, counts = read_section("ip_intel", [path])
    except UserError as exc:
        raise UserError(f"config [ip_intel].file: {exc}") from None
    where = f"config [ip_intel].file {path}"
    absent = sorted(
        key.split(":", 1)[1]
        for key, n in counts.by_field.items()
        if key.startswith("missing_field:") and n == counts.read
    )
    if absent:
        raise UserError(f"{where}: no column {', '.join(absent)} (or no value in it)")
    if counts.rejected:
        detail = ", ".join(f"{key} x{n}" for key, n in sorted(counts.by_field.items()))
        raise UserError(f"{where}: {counts.rejected} of {counts.read} rows rejected ({detail})")
    return table


def _merge(base: dict[str, Any], over: dict[str, Any], where: str = "") -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if key not in base:
            raise UserError(f"config: unknown key {where}{key}")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise UserError(f"config: {where}{key} must be a table")
            out[key] = _merge(base[key], value, f"{where}{key}.")
        else:
            out[key] = value
    return out


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: invalid TOML ({exc})") from None


def _tokens(entries: list[Any], where: str) -> list[Token]:
    tokens = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "hash" not in entry:
            raise UserError(f"{where}: token #{i + 1} needs a 'hash'")
        scopes = frozenset(entry.get("scopes", ["read"]))
        if not scopes <= {"read", "write"}:
            raise UserError(f"{where}: token #{i + 1} has unknown scopes {sorted(scopes)}")
        algo = str(entry["hash"]).split(":", 1)[0]
        if algo not in ("sha256", "scrypt"):
            raise UserError(f"{where}: token #{i + 1} hash must start with sha256: or scrypt:")
        tokens.append(Token(str(entry.get("name", f"token-{i + 1}")), str(entry["hash"]), scopes))
    return tokens


def _check(raw: dict[str, Any]) -> None:
    if raw["state"]["backend"] not in BACKENDS:
        raise UserError(f"config: state.backend must be one of {', '.join(BACKENDS)}")
    if str(raw["state"]["synchronous"]).upper() not in SYNC_MODES:
        raise UserError(f"config: state.synchronous must be one of {', '.join(SYNC_MODES)}")
    d = raw["decisions"]
    if not 0 <= d["throttle"] <= d["challenge"] <= d["block"] <= 1:
        raise UserError("config: need 0 <= throttle <= challenge <= block <= 1 in [decisions]")
    for key in ("max_body_bytes", "max_batch_events", "workers"):
        if int(raw["server"][key]) <= 0:
            raise UserError(f"config: server.{key} must be positive")
    if int(raw["server"]["workers"]) > MAX_WORKERS:
        raise UserError(f"config: server.workers must be at most {MAX_WORKERS}")


def load_config(path: Path | None = None, overrides: dict[str, Any] | None = None) -> ServeConfig:
    """Defaults, then `path` (if given), then `overrides` (a nested dict, used by tests)."""
    raw = _read_toml(DEFAULT_PATH)
    base_dir = Path.cwd()
    if path is not None:
        raw = _merge(raw, _read_toml(path))
        base_dir = path.resolve().parent
    if overrides:
        raw = _merge(raw, overrides)
    _check(raw)
    tokens = _tokens(raw["auth"]["tokens"], "config [auth].tokens")
    tokens_file = raw["auth"]["tokens_file"]
    if tokens_file:
        tf = Path(tokens_file)
        tf = tf if tf.is_absolute() else base_dir / tf
        tokens += _tokens(_read_toml(tf).get("tokens", []), str(tf))
    if not tokens and not raw["auth"]["disabled"]:
        raise UserError(
            "config: no [auth] tokens; add one (distillguard serve-token) or set auth.disabled"
        )
    return ServeConfig(raw=raw, base_dir=base_dir, tokens=tokens)
