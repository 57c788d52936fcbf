"""The `[signup]` section of the enforcement policy file (shared with `export actions`).

Every threshold of the sign-up check lives here, with the shipped defaults in
`report/default_policy.toml`. Unknown keys and wrong types are a `UserError` naming the key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from distillguard.errors import UserError
from distillguard.report.actions import policy_number

# Evidence kinds, strongest campaign link first (the order also picks the campaign named).
EVIDENCE = (
    "payment",
    "device",
    "ip",
    "org",
    "subnet",
    "pool",
    "domain",
    "pattern",
    "lookalike",
    "disposable",
    "naming",
    "burst",
    "programme",
    "proxy_exit",
    "card_reuse",
    "unbacked",
)
# Links from a new account's own identity to accounts a campaign already burned.
IDENTITY = ("payment", "device")
CHECKS = ("payment", "institutional_email", "organisation")
CHECK_NAMES = {
    "payment": "payment verification",
    "institutional_email": "institutional e-mail verification",
    "organisation": "organisation verification",
}
DEFAULT_WEIGHTS = {
    "payment": 1.0,
    "device": 1.0,
    "ip": 0.8,
    "org": 0.8,
    "subnet": 0.5,
    "pool": 0.4,
    "domain": 0.5,
    "pattern": 0.7,
    "lookalike": 0.4,
    "disposable": 0.3,
    "naming": 0.4,
    "burst": 0.4,
    "programme": 0.2,
    "proxy_exit": 0.5,
    "card_reuse": 0.4,
    "unbacked": 0.3,
}
DEFAULT_CHECKS = {
    "free": "payment",
    "pro": "payment",
    "team": "organisation",
    "enterprise": "organisation",
    "startup": "organisation",
    "edu": "institutional_email",
    "research": "institutional_email",
    "unknown": "payment",
}

# Real mailbox providers; look-alikes imitate these (one edit away, or brand plus decoration).
WEBMAIL = {
    "gmail.com": "gmail",
    "googlemail.com": "googlemail",
    "outlook.com": "outlook",
    "hotmail.com": "hotmail",
    "live.com": "live",
    "yahoo.com": "yahoo",
    "yahoo.co.jp": "yahoo",
    "icloud.com": "icloud",
    "me.com": "me",
    "proton.me": "proton",
    "protonmail.com": "protonmail",
    "gmx.de": "gmx",
    "gmx.net": "gmx",
    "fastmail.com": "fastmail",
    "aol.com": "aol",
    "qq.com": "qq",
    "163.com": "163",
    "naver.com": "naver",
    # real providers one letter away from a brand: never look-alikes
    "email.com": "email",
    "mail.com": "mail",
    "ymail.com": "ymail",
}


@dataclass(frozen=True)
class SignupPolicy:
    """Thresholds of the sign-up check; see docs/signup.md for each key."""

    verify_score: float = 0.7
    deny_score: float = 1.8
    deny_min_evidence: int = 3
    deny_requires_identity: bool = True
    burst_minutes: float = 30.0
    burst_min_signups: int = 3
    naming_hours: float = 24.0
    naming_min_signups: int = 2
    ip_campaign_share: float = 0.8
    pool_campaign_share: float = 0.5
    identity_flagged_share: float = 0.5
    domain_min_flagged: int = 2
    card_reuse_min: int = 2
    programme_tiers: tuple[str, ...] = ("edu", "startup", "research")
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    checks: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_CHECKS))


NUMBER_KEYS = {
    "verify_score": (0.0, None),
    "deny_score": (0.0, None),
    "burst_minutes": (0.0, None),
    "naming_hours": (0.0, None),
    "ip_campaign_share": (0.0, 1.0),
    "pool_campaign_share": (0.0, 1.0),
    "identity_flagged_share": (0.0, 1.0),
}
INT_KEYS = {
    "deny_min_evidence",
    "burst_min_signups",
    "naming_min_signups",
    "domain_min_flagged",
    "card_reuse_min",
}


def _fail(key: str, message: str) -> UserError:
    return UserError(f"policy signup.{key}: {message}")


def _number(value: Any, key: str, lo: float, hi: float | None) -> float:
    return policy_number(value, f"signup.{key}", lo, hi)


def parse_signup_policy(raw: Any) -> SignupPolicy:
    """Validate a decoded `[signup]` table (missing keys keep their defaults)."""
    if raw is None:
        return SignupPolicy()
    if not isinstance(raw, dict):
        raise UserError("policy signup: expected a [signup] table")
    known = {f.name for f in fields(SignupPolicy)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise _fail(unknown[0], f"unknown key (known: {', '.join(sorted(known))})")
    out: dict[str, Any] = {}
    for key, (lo, hi) in NUMBER_KEYS.items():
        if key in raw:
            out[key] = _number(raw[key], key, lo, hi)
    for key in INT_KEYS:
        if key in raw:
            out[key] = int(_number(raw[key], key, 0, None))
    if "deny_requires_identity" in raw:
        if not isinstance(raw["deny_requires_identity"], bool):
            raise _fail("deny_requires_identity", "expected true or false")
        out["deny_requires_identity"] = raw["deny_requires_identity"]
    if "programme_tiers" in raw:
        tiers = raw["programme_tiers"]
        if not isinstance(tiers, list) or not all(isinstance(t, str) for t in tiers):
            raise _fail("programme_tiers", f"expected a list of tiers, got {tiers!r}")
        out["programme_tiers"] = tuple(t.lower() for t in tiers)
    base = SignupPolicy()
    out["weights"] = _weights(raw.get("weights", {}), base.weights)
    out["checks"] = _checks(raw.get("checks", {}), base.checks)
    return replace(base, **out)


def _weights(raw: Any, base: dict[str, float]) -> dict[str, float]:
    if not isinstance(raw, dict):
        raise _fail("weights", "expected a table")
    weights = dict(base)
    for key, value in raw.items():
        if key not in weights:
            raise _fail(f"weights.{key}", f"unknown evidence (known: {', '.join(EVIDENCE)})")
        weights[key] = _number(value, f"weights.{key}", 0.0, None)
    return weights


def _checks(raw: Any, base: dict[str, str]) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise _fail("checks", "expected a table of tier = check")
    checks = dict(base)
    for tier, check in raw.items():
        if check not in CHECKS:
            raise _fail(f"checks.{tier}", f"unknown check {check!r}; choose one of {CHECKS}")
        checks[str(tier).lower()] = check
    return checks


def load_signup_policy(path: Path | None) -> SignupPolicy:
    """The `[signup]` section of a policy file (the shipped default policy when None)."""
    from distillguard.report.actions import default_policy_path, parse_policy

    path = Path(path) if path else default_policy_path()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"cannot read policy {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"policy {path} is not valid TOML: {exc}") from None
    if "rule" in raw:  # a full enforcement policy: validate the rest of it too
        parse_policy(raw, source=str(path))
    return parse_signup_policy(raw.get("signup"))
