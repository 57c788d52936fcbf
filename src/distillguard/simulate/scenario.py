"""Scenario files: who sends traffic, how much, when, and how.

A scenario is a TOML file (shipped ones live in `simulate/scenarios/`). It names a time window, the
models and their release times, and a list of personas. Every persona is a population of accounts
that behave alike: benign ones (chat users, batch pipelines, ...) and attacker ones (campaign
personas carry a `campaign` id). Counts are given at scale 1.0 and multiplied by `--scale`.
See docs/simulator.md for every key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from distillguard.errors import UserError

TIMINGS = ("human", "flat", "burst", "office")
NETWORKS = ("home", "mobile", "nat", "campus", "datacenter", "vpn", "proxy_pool")
PROMPT_STYLES = ("casual", "workplace", "agent", "batch", "benchmark", "attack")
LENGTH_PROFILES = ("conv", "code", "reason", "vision")
SIGNUPS = ("organic", "batch", "staggered")
EMAIL_KINDS = ("consumer", "corporate", "university", "startup", "attacker", "attacker_corporate")
UA_KINDS = ("browser_mix", "sdk_python", "sdk_mix", "agent_cli", "batch", "scripted", "varied")


@dataclass(frozen=True)
class Persona:
    """One population of similar accounts. Numbers are at scale 1.0."""

    name: str
    kind: str  # "benign" or "attacker"
    accounts: int
    events: int
    campaign: str | None = None
    main_capability: str | None = None
    capabilities: dict[str, float] = field(default_factory=lambda: {"chitchat": 1.0})
    # Per-account volume is lognormal with this sigma (0 = all accounts equal).
    volume_sigma: float = 1.0
    # Share of the scenario window each account is active for (min, max) and where it may start.
    active_share: tuple[float, float] = (1.0, 1.0)
    timing: str = "human"
    session_events: float = 4.0  # mean requests per session
    gap_s: float = 60.0  # mean seconds between requests inside a session
    gap_cv: float = 1.0  # coefficient of variation of those gaps
    weekend_factor: float = 0.4  # relative activity on Saturday/Sunday (human/office timing)
    jitter_s: float = 0.0  # extra uniform jitter added to every timestamp
    burst_days: float = 1.5  # span of a benchmark burst
    prompt_style: str = "casual"
    length_profile: str = "conv"  # calibrated input-length profile (conv, code, reason, vision)
    output_profile: str | None = None  # output-length profile; default: length_profile
    network: str = "home"
    ips_per_account: tuple[int, int] = (1, 3)
    mobile_share: float = 0.2
    proxy_pool: int = 0  # size of a shared proxy pool (attackers), at scale 1.0
    proxy_kinds: dict[str, float] = field(default_factory=lambda: {"datacenter": 1.0})
    proxy_sticky: int = 30  # proxy IPs one account rotates through
    proxy_match_country: bool = False  # residential/mobile exits in the declared country
    ua: str = "sdk_mix"
    tiers: dict[str, float] = field(default_factory=lambda: {"free": 0.6, "pro": 0.4})
    email: str = "consumer"
    signup: str = "organic"
    new_account_share: float = 0.08  # organic: accounts that sign up during the window
    accounts_per_org: float = 1.0  # >1: accounts grouped into organisations (shared org_id)
    shared_payment: float = 0.0  # share of accounts paying with an org/pool card
    device_reuse: float = 0.0  # share of accounts reusing a device fingerprint of the pool
    turns: float = 1.0  # mean user turns per conversation
    models: dict[str, float] = field(default_factory=dict)
    new_model_share: float = 0.1  # share of traffic on a newly released model once adopted
    new_model_lag_h: float = 240.0  # hours after the release until that share is reached
    thinking_prob: float = 0.05
    tools: tuple[int, int] = (0, 0)  # tool definitions per request when tools are sent
    tools_prob: float = 0.0
    images: tuple[int, int] = (1, 2)  # images per request for vision prompts
    screenshot_prob: float = 0.0  # agentic requests carrying a screenshot (computer use)
    max_tokens: tuple[int, ...] = (1024, 2048, 4096)
    temperature: tuple[float, float] = (0.0, 1.0)
    output_scale: float = 1.0  # multiplies output lengths (attackers ask for long answers)
    cover_share: float = 0.0  # attackers: share of ordinary-looking requests
    wrapper_templates: int = 3  # attackers: shared wrapper variants (0 = one per account)
    paraphrase: float = 0.0  # attackers: per-request chance of re-wording one wrapper slot
    system_prompt: str = "none"  # none | generic | org | agent | campaign
    refusal_rate: float = 0.01
    rate_limited: float = 0.002

    @property
    def is_attacker(self) -> bool:
        return self.kind == "attacker"


@dataclass(frozen=True)
class Release:
    model: str
    at_day: float  # days after the scenario start (negative: before the window)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    start: datetime
    days: float
    models: tuple[str, ...]
    releases: tuple[Release, ...]
    personas: tuple[Persona, ...]
    default_scale: float = 0.01
    min_accounts: int = 1  # every persona keeps at least this many accounts at any scale

    @property
    def start_ms(self) -> int:
        return int(self.start.timestamp() * 1000)

    def release_ms(self, model: str) -> int | None:
        for rel in self.releases:
            if rel.model == model:
                return self.start_ms + int(rel.at_day * 86_400_000)
        return None

    @property
    def new_models(self) -> tuple[Release, ...]:
        """Models released inside the window (the ones attackers may chase)."""
        return tuple(r for r in self.releases if 0 <= r.at_day < self.days)


def builtin_names() -> list[str]:
    files = resources.files("distillguard.simulate") / "scenarios"
    return sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".toml"))


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a shipped scenario by name, or any scenario TOML file by path."""
    return parse_scenario(_load_raw(str(name_or_path), depth=0), str(name_or_path))


def _load_raw(name: str, depth: int) -> dict[str, Any]:
    """Read a scenario's TOML, resolving `extends = "other"` (the base's keys, then this file's)."""
    text = _read_scenario_text(name)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"scenario {name}: invalid TOML: {exc}") from exc
    base_name = raw.pop("extends", None)
    if base_name is None:
        return raw
    if depth > 4:
        raise UserError(f"scenario {name}: `extends` nests too deeply")
    return merge_scenarios(_load_raw(str(base_name), depth + 1), raw)


def merge_scenarios(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """Child keys override the base; `defaults` merge per kind; personas merge by name.

    A child persona with a known name updates that persona's keys; a new name is appended;
    `drop_personas = [names]` removes personas of the base.
    """
    merged = {k: v for k, v in base.items() if k not in ("persona", "defaults")}
    merged.update(
        {k: v for k, v in child.items() if k not in ("persona", "defaults", "drop_personas")}
    )
    defaults = {kind: dict(v) for kind, v in base.get("defaults", {}).items()}
    for kind, values in child.get("defaults", {}).items():
        defaults.setdefault(kind, {}).update(values)
    merged["defaults"] = defaults
    drop = set(child.get("drop_personas", []))
    personas = [dict(p) for p in base.get("persona", []) if p.get("name") not in drop]
    for p in personas:  # the child's defaults re-tune the base's personas of that kind too
        p.update(child.get("defaults", {}).get(p.get("kind", "benign"), {}))
    by_name = {p["name"]: p for p in personas}
    for p in child.get("persona", []):
        if p.get("name") in by_name:
            by_name[p["name"]].update(p)
        else:
            personas.append(dict(p))
    merged["persona"] = personas
    return merged


def _read_scenario_text(name: str) -> str:
    path = Path(name)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise UserError(f"scenario file not found: {name}")
        return path.read_text(encoding="utf-8")
    res = resources.files("distillguard.simulate") / "scenarios" / f"{name}.toml"
    if not res.is_file():
        raise UserError(f"unknown scenario {name!r}; built-in: {', '.join(builtin_names())}")
    return res.read_text(encoding="utf-8")


_PERSONA_FIELDS = {f.name: f for f in fields(Persona)}


def _persona(raw: dict[str, Any], where: str, defaults: dict[str, Any]) -> Persona:
    merged = {**defaults.get(raw.get("kind", "benign"), {}), **raw}
    unknown = sorted(set(merged) - set(_PERSONA_FIELDS))
    if unknown:
        raise UserError(f"{where}: unknown persona keys {unknown}")
    for key in ("name", "kind", "accounts", "events"):
        if key not in merged:
            raise UserError(f"{where}: persona needs {key!r}")
    for key, value in merged.items():
        if isinstance(value, list):
            merged[key] = tuple(value)
    persona = Persona(**merged)
    _check_persona(persona, where)
    return persona


def _check_persona(p: Persona, where: str) -> None:
    choices = {
        "kind": ("benign", "attacker"),
        "timing": TIMINGS,
        "network": NETWORKS,
        "prompt_style": PROMPT_STYLES,
        "length_profile": LENGTH_PROFILES,
        "output_profile": (*LENGTH_PROFILES, None),
        "signup": SIGNUPS,
        "email": EMAIL_KINDS,
        "ua": UA_KINDS,
    }
    for key, allowed in choices.items():
        if getattr(p, key) not in allowed:
            raise UserError(f"{where} ({p.name}): {key} must be one of {allowed}")
    if p.session_events < 0:
        raise UserError(f"{where} ({p.name}): session_events must be >= 0 (0 = continuous)")
    if p.accounts < 1 or p.events < p.accounts:
        raise UserError(f"{where} ({p.name}): need accounts >= 1 and events >= accounts")
    if p.is_attacker and not p.campaign:
        raise UserError(f"{where} ({p.name}): attacker personas need a campaign id")
    if not p.is_attacker and p.campaign:
        raise UserError(f"{where} ({p.name}): benign personas have no campaign")
    if p.network == "proxy_pool" and p.proxy_pool < 1:
        raise UserError(f"{where} ({p.name}): network proxy_pool needs proxy_pool > 0")


def parse_scenario(raw: dict[str, Any], where: str = "scenario") -> Scenario:
    try:
        start = datetime.fromisoformat(str(raw["start"]).replace("Z", "+00:00"))
        models = tuple(raw["models"])
        personas_raw = raw["persona"]
    except KeyError as exc:
        raise UserError(f"{where}: missing key {exc.args[0]!r}") from exc
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    defaults = raw.get("defaults", {})
    personas = tuple(
        _persona(p, f"{where} persona #{i}", defaults) for i, p in enumerate(personas_raw)
    )
    names = [p.name for p in personas]
    if len(set(names)) != len(names):
        raise UserError(f"{where}: persona names must be unique")
    releases = tuple(Release(str(r["model"]), float(r["at_day"])) for r in raw.get("release", []))
    for p in personas:
        for m in p.models:
            if m not in models:
                raise UserError(f"{where} ({p.name}): model {m!r} not in scenario models")
    return Scenario(
        name=str(raw.get("name", where)),
        description=str(raw.get("description", "")),
        start=start,
        days=float(raw.get("days", 28)),
        models=models,
        releases=releases,
        personas=personas,
        default_scale=float(raw.get("default_scale", 0.01)),
        min_accounts=int(raw.get("min_accounts", 1)),
    )
