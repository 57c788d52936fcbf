"""Enforcement export (`export actions`): per-account actions from a policy file, plus advice on
which sign-up paths the campaigns used.

The policy (TOML, see default_policy.toml and docs/report.md) is an ordered list of rules; the
first rule an account matches decides its action. Rules are evaluated as NumPy masks over all
accounts at once; only the accounts that get an action are formatted one by one.
"""

from __future__ import annotations

import csv
import json
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from distillguard.errors import UserError
from distillguard.report.rundir import RunDir

# Least to most severe; a protected tier is capped at its policy's `max_action`.
ACTIONS = ("none", "review", "require_verification", "throttle", "block")
SEVERITY = {a: i for i, a in enumerate(ACTIONS)}
RULE_KEYS = {
    "name",
    "action",
    "min_risk",
    "require_campaign",
    "require_flagged",
    "min_reasons",
    "tiers",
}
# `signup` holds the sign-up check thresholds, validated by distillguard.signup.policy.
TOP_KEYS = {"version", "default_action", "protected", "throttle", "rule", "signup"}
# Sign-up paths an extraction operation abuses, with the control that closes each.
TIER_ADVICE = {
    "edu": "verify institutional e-mail or campus SSO before granting edu access",
    "startup": "review startup-programme applications (company registration, a human check) "
    "before granting credits",
    "research": "grant research access only after a reviewed application with a named sponsor",
    "free": "require phone or payment verification before free accounts reach high volume",
    "pro": "hold new pro accounts to lower rate limits until payment history builds up",
    "team": "check that team seats belong to the paying organisation's domain",
    "enterprise": "review the enterprise contract holder; enterprise accounts are never "
    "auto-blocked",
}
# A tier is called out when it holds this share of campaign accounts and is over-represented
# among them by this factor compared with all accounts.
MIN_TIER_SHARE = 0.1
MIN_TIER_LIFT = 1.5
MIN_DISPOSABLE_SHARE = 0.1
FRESH_DAYS = 7.0


@dataclass(frozen=True)
class Rule:
    name: str
    action: str
    min_risk: float = 0.0
    require_campaign: bool = False
    require_flagged: bool = False
    min_reasons: int = 0
    tiers: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...]
    default_action: str = "none"
    protected_tiers: tuple[str, ...] = ("enterprise",)
    protected_max: str = "review"
    throttle_rpm: int = 10
    source: str = "default"


@dataclass
class ActionPlan:
    """The result: one row per account that gets an action, counts, and access-control advice."""

    rows: list[dict[str, Any]]
    counts: dict[str, int]
    access: dict[str, Any]
    policy: Policy
    total_accounts: int = 0
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- policy file


def default_policy_path() -> Path:
    return Path(str(resources.files("distillguard.report").joinpath("default_policy.toml")))


def _fail(where: str, message: str) -> UserError:
    return UserError(f"policy {where}: {message}")


def _action(value: Any, where: str) -> str:
    if value not in SEVERITY:
        raise _fail(where, f"unknown action {value!r}; choose one of {', '.join(ACTIONS)}")
    return str(value)


def policy_number(value: Any, where: str, lo: float, hi: float | None) -> float:
    """A number of the policy file at `where`, within [lo, hi] (hi None: no upper bound)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(where, f"expected a number, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        bound = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise _fail(where, f"expected a number {bound}, got {value!r}")
    return float(value)


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(where, f"expected true or false, got {value!r}")
    return value


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(where, f"expected a list of strings, got {value!r}")
    return tuple(v.lower() for v in value)


def _rule(raw: Any, i: int) -> Rule:
    where = f"rule[{i}]"
    if not isinstance(raw, dict):
        raise _fail(where, "expected a [[rule]] table")
    unknown = sorted(set(raw) - RULE_KEYS)
    if unknown:
        raise _fail(f"{where}.{unknown[0]}", f"unknown key (known: {', '.join(sorted(RULE_KEYS))})")
    if "action" not in raw:
        raise _fail(f"{where}.action", "missing key")
    return Rule(
        name=str(raw.get("name", f"rule-{i}")),
        action=_action(raw["action"], f"{where}.action"),
        min_risk=policy_number(raw.get("min_risk", 0.0), f"{where}.min_risk", 0.0, 1.0),
        require_campaign=_flag(raw.get("require_campaign", False), f"{where}.require_campaign"),
        require_flagged=_flag(raw.get("require_flagged", False), f"{where}.require_flagged"),
        min_reasons=int(policy_number(raw.get("min_reasons", 0), f"{where}.min_reasons", 0, None)),
        tiers=_strings(raw["tiers"], f"{where}.tiers") if "tiers" in raw else None,
    )


def parse_policy(raw: dict[str, Any], source: str = "policy") -> Policy:
    """Validate a decoded policy; every error names the offending key."""
    unknown = sorted(set(raw) - TOP_KEYS)
    if unknown:
        raise _fail(unknown[0], f"unknown key (known: {', '.join(sorted(TOP_KEYS))})")
    if raw.get("version", 1) != 1:
        raise _fail("version", f"unsupported version {raw.get('version')!r} (expected 1)")
    rules = raw.get("rule")
    if not isinstance(rules, list) or not rules:
        raise _fail("rule", "missing key: the policy needs at least one [[rule]] table")
    protected = raw.get("protected", {})
    throttle = raw.get("throttle", {})
    for key, table in (("protected", protected), ("throttle", throttle)):
        if not isinstance(table, dict):
            raise _fail(key, "expected a table")
    for key in sorted(set(protected) - {"tiers", "max_action"}):
        raise _fail(f"protected.{key}", "unknown key (known: max_action, tiers)")
    for key in sorted(set(throttle) - {"requests_per_minute"}):
        raise _fail(f"throttle.{key}", "unknown key (known: requests_per_minute)")
    return Policy(
        rules=tuple(_rule(r, i) for i, r in enumerate(rules, start=1)),
        default_action=_action(raw.get("default_action", "none"), "default_action"),
        protected_tiers=_strings(protected.get("tiers", ["enterprise"]), "protected.tiers"),
        protected_max=_action(protected.get("max_action", "review"), "protected.max_action"),
        throttle_rpm=int(
            policy_number(
                throttle.get("requests_per_minute", 10), "throttle.requests_per_minute", 1, None
            )
        ),
        source=source,
    )


def load_policy(path: Path | None) -> Policy:
    """Read and validate a policy file (the shipped conservative default when `path` is None)."""
    path = path or default_policy_path()
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"cannot read policy {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"policy {path} is not valid TOML: {exc}") from None
    return parse_policy(raw, source=str(path))


# ---------------------------------------------------------------- decisions


def _account_frame(run: RunDir) -> dict[str, Any]:
    """Per account: risk, flagged, campaign, number of reasons, tier (as NumPy arrays)."""
    s = run.scores_view
    if run.has("signup", "account_id", "tier"):
        tier_sql, join = "lower(g.tier)", "LEFT JOIN signup g USING (account_id)"
    elif run.has("fingerprints", "account_id", "tier"):
        tier_sql, join = "lower(f.tier)", "LEFT JOIN fingerprints f USING (account_id)"
    else:
        tier_sql, join = "NULL", ""
    campaign = "s.campaign_id" if run.has(s, "campaign_id") else "NULL"
    reasons = "s.reasons" if run.has(s, "reasons") else "[]::VARCHAR[]"
    t = run.sql(
        f"SELECT s.account_id, s.risk, s.flagged, {campaign} AS campaign_id, "
        f"{reasons} AS reasons, coalesce({tier_sql}, 'unknown') AS tier "
        f"FROM {s} s {join} ORDER BY s.risk DESC, s.account_id"
    )
    reasons_list = t["reasons"].to_pylist()
    return {
        "account_id": np.asarray(t["account_id"].to_pylist(), dtype=object),
        "risk": t["risk"].to_numpy(zero_copy_only=False).astype(float),
        "flagged": np.asarray(t["flagged"].fill_null(False).to_pylist(), dtype=bool),
        "campaign_id": np.asarray(t["campaign_id"].to_pylist(), dtype=object),
        "reasons": [r or [] for r in reasons_list],
        "n_reasons": np.asarray([len(r or []) for r in reasons_list], dtype=np.int64),
        "tier": np.asarray(t["tier"].to_pylist(), dtype=object),
    }


def _rule_mask(rule: Rule, f: dict[str, Any]) -> np.ndarray:
    mask = f["risk"] >= rule.min_risk  # inclusive: risk exactly at the threshold matches
    if rule.require_campaign:
        mask &= np.asarray([c is not None for c in f["campaign_id"]], dtype=bool)
    if rule.require_flagged:
        mask &= f["flagged"]
    if rule.min_reasons:
        mask &= f["n_reasons"] >= rule.min_reasons
    if rule.tiers is not None:
        mask &= np.isin(f["tier"], list(rule.tiers))
    return mask


def _why(rule: Rule | None, i: int, f: dict[str, Any]) -> str:
    if rule is None:
        return "no rule matched (default action)"
    parts = [f"risk {f['risk'][i]:.3f} >= {rule.min_risk:g}"]
    if rule.require_campaign:
        parts.append(f"member of campaign {f['campaign_id'][i]}")
    if rule.require_flagged:
        parts.append("flagged")
    if rule.min_reasons:
        parts.append(f"{f['n_reasons'][i]} reasons >= {rule.min_reasons}")
    if rule.tiers is not None:
        parts.append(f"tier {f['tier'][i]}")
    return f"rule '{rule.name}': " + ", ".join(parts)


def decide(run: RunDir, policy: Policy) -> ActionPlan:
    """Apply `policy` to every account of the run."""
    f = _account_frame(run)
    n = len(f["account_id"])
    chosen = np.full(n, -1, dtype=np.int64)  # index of the deciding rule, -1 = default
    for j, rule in enumerate(policy.rules):
        chosen[(chosen < 0) & _rule_mask(rule, f)] = j
    action_of = [r.action for r in policy.rules]
    actions = np.asarray(
        [action_of[j] if j >= 0 else policy.default_action for j in chosen], dtype=object
    )
    capped = np.isin(f["tier"], list(policy.protected_tiers)) & np.asarray(
        [SEVERITY[a] > SEVERITY[policy.protected_max] for a in actions], dtype=bool
    )
    lowered_from = actions.copy()
    actions[capped] = policy.protected_max
    rows = []
    for i in np.flatnonzero(actions != "none"):
        rule = policy.rules[chosen[i]] if chosen[i] >= 0 else None
        why = _why(rule, i, f)
        if capped[i]:
            why += (
                f"; lowered from {lowered_from[i]} to {actions[i]}: "
                f"tier {f['tier'][i]} is never acted on automatically"
            )
        rows.append(
            {
                "account_id": f["account_id"][i],
                "action": actions[i],
                "risk": round(float(f["risk"][i]), 4),
                "flagged": bool(f["flagged"][i]),
                "campaign_id": f["campaign_id"][i],
                "tier": f["tier"][i],
                "rule": rule.name if rule else "default",
                "policy_reason": why,
                "reasons": list(f["reasons"][i]),
                **(
                    {"requests_per_minute": policy.throttle_rpm} if actions[i] == "throttle" else {}
                ),
            }
        )
    counts = {a: int(np.sum(actions == a)) for a in ACTIONS}
    warnings = []
    if policy.protected_tiers and n and bool(np.all(f["tier"] == "unknown")):
        warnings.append(
            "no sign-up tiers in this run (detect was given no account records): protected "
            f"tiers ({', '.join(policy.protected_tiers)}) cannot be recognised"
        )
    return ActionPlan(
        rows=rows,
        counts=counts,
        access=access_control(run),
        policy=policy,
        total_accounts=n,
        warnings=warnings,
    )


# ---------------------------------------------------------------- access-control advice


def _disposable(domains: list[str | None]) -> list[bool]:
    import pyarrow as pa

    from distillguard.ingest.ipintel import is_disposable_domain

    flags = is_disposable_domain(pa.array(domains, pa.string()))
    return [bool(x) for x in flags.fill_null(False).to_pylist()]


def access_control(run: RunDir) -> dict[str, Any]:
    """Which sign-up paths (tiers, disposable e-mail domains) the campaigns' accounts used."""
    s = run.scores_view
    members = run.rows(
        f"SELECT account_id, campaign_id FROM {s} WHERE campaign_id IS NOT NULL"
        if run.has(s, "campaign_id")
        else f"SELECT account_id, NULL AS campaign_id FROM {s} WHERE false"
    )
    out: dict[str, Any] = {
        "campaign_accounts": len(members),
        "tiers": [],
        "email_domains": [],
        "disposable_accounts": 0,
        "fresh_accounts": None,
        "advice": [],
    }
    if not members:
        out["advice"].append("No campaign was detected: no sign-up path to tighten.")
        return out
    tiers_all = _tier_counts(run, None)
    tiers_c = _tier_counts(run, "campaign_id IS NOT NULL")
    n_all = sum(tiers_all.values()) or 1
    n_c = len(members)
    for tier, k in sorted(tiers_c.items(), key=lambda kv: (-kv[1], kv[0])):
        out["tiers"].append(
            {
                "tier": tier,
                "accounts": k,
                "share": k / n_c,
                "share_of_all_accounts": tiers_all.get(tier, 0) / n_all,
            }
        )
    _email_domains(run, out)
    _freshness(run, out)
    out["advice"] = _advice(out, n_c)
    return out


def _tier_counts(run: RunDir, where: str | None) -> dict[str, int]:
    s = run.scores_view
    cond = f"WHERE s.{where}" if where else ""
    if run.has("signup", "account_id", "tier"):
        tier, join = "g.tier", "LEFT JOIN signup g USING (account_id)"
    elif run.has("fingerprints", "account_id", "tier"):
        tier, join = "f.tier", "LEFT JOIN fingerprints f USING (account_id)"
    else:
        tier, join = "NULL", ""
    rows = run.rows(
        f"SELECT coalesce(lower({tier}), 'unknown') AS tier, count(*) AS n FROM {s} s {join} "
        f"{cond} GROUP BY 1"
    )
    return {r["tier"]: int(r["n"]) for r in rows}


def _email_domains(run: RunDir, out: dict[str, Any]) -> None:
    if not run.has("signup", "account_id", "email_domain"):
        return
    rows = run.rows(
        f"SELECT lower(email_domain) AS domain, count(*) AS accounts FROM signup "
        f"WHERE account_id IN (SELECT account_id FROM {run.scores_view} "
        f"WHERE campaign_id IS NOT NULL) AND email_domain IS NOT NULL "
        f"GROUP BY 1 ORDER BY 2 DESC, 1"
    )
    flags = _disposable([r["domain"] for r in rows])
    for r, disposable in zip(rows, flags, strict=True):
        r["disposable"] = disposable
    out["email_domains"] = rows[:20]
    out["disposable_accounts"] = sum(r["accounts"] for r, d in zip(rows, flags, strict=True) if d)


def _freshness(run: RunDir, out: dict[str, Any]) -> None:
    if not run.has("fingerprints", "account_id", "age_days"):
        return
    row = run.rows(
        f"SELECT count_if(age_days < {FRESH_DAYS}) AS fresh, count(age_days) AS known, "
        f"median(age_days) AS median_age FROM fingerprints WHERE account_id IN "
        f"(SELECT account_id FROM {run.scores_view} WHERE campaign_id IS NOT NULL)"
    )[0]
    if row["known"]:
        out["fresh_accounts"] = {
            "accounts": int(row["fresh"]),
            "of": int(row["known"]),
            "within_days": FRESH_DAYS,
            "median_age_days": round(float(row["median_age"]), 1),
        }


def _advice(out: dict[str, Any], n: int) -> list[str]:
    advice = []
    for t in out["tiers"]:
        over = t["share"] >= MIN_TIER_LIFT * t["share_of_all_accounts"]
        if t["share"] >= MIN_TIER_SHARE and over and t["tier"] != "unknown":
            control = TIER_ADVICE.get(t["tier"], f"review how {t['tier']} accounts are granted")
            advice.append(
                f"{t['accounts']} of {n} campaign accounts ({100 * t['share']:.0f}%) signed up "
                f"as {t['tier']} (vs {100 * t['share_of_all_accounts']:.0f}% of all accounts): "
                f"{control}."
            )
    d = out["disposable_accounts"]
    if d and d / n >= MIN_DISPOSABLE_SHARE:
        names = [r["domain"] for r in out["email_domains"] if r["disposable"]][:5]
        advice.append(
            f"{d} of {n} campaign accounts ({100 * d / n:.0f}%) used disposable e-mail domains "
            f"({', '.join(names)}): refuse disposable domains at sign-up."
        )
    fresh = out["fresh_accounts"]
    if fresh and fresh["of"] and fresh["accounts"] / fresh["of"] >= 0.5:
        advice.append(
            f"{fresh['accounts']} of {fresh['of']} campaign accounts started sending requests "
            f"within {fresh['within_days']:g} days of sign-up (median {fresh['median_age_days']} "
            "days): apply lower rate limits to new accounts until they build history."
        )
    return advice or ["The campaigns used no single sign-up path disproportionately."]


# ---------------------------------------------------------------- output


CSV_COLUMNS = (
    "account_id",
    "action",
    "risk",
    "flagged",
    "campaign_id",
    "tier",
    "rule",
    "policy_reason",
    "reasons",
    "requests_per_minute",
)


def write_plan(plan: ActionPlan, prefix: Path) -> tuple[Path, Path]:
    """PREFIX.csv (one row per account with an action) and PREFIX.json (rows, counts, advice)."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    csv_path = prefix.with_name(prefix.name + ".csv")
    json_path = prefix.with_name(prefix.name + ".json")
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in plan.rows:
            w.writerow({**r, "reasons": " | ".join(r["reasons"]), "campaign_id": r["campaign_id"]})
    doc = {
        "policy": plan.policy.source,
        "accounts": plan.total_accounts,
        "counts": plan.counts,
        "warnings": plan.warnings,
        "actions": plan.rows,
        "access_control": plan.access,
    }
    json_path.write_text(json.dumps(doc, indent=2, default=str), encoding="utf-8")
    return csv_path, json_path
