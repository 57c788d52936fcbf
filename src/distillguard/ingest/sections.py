"""What each contract section looks like to the validator: field kinds, enums and dedup keys.

The Arrow schemas live in `distillguard.contract`; this module only adds what validation needs
on top of them (which string fields are IPs or enums, which field identifies a record).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from distillguard import contract
from distillguard.errors import UserError


@dataclass(frozen=True)
class FieldRule:
    """How one contract field is parsed and checked."""

    name: str
    kind: str  # string | int64 | int32 | float | timestamp | ip | cidr | enum
    required: bool = False
    non_negative: bool = False
    allowed: tuple[str, ...] = ()  # enum values (compared lower-cased)
    default: str | None = None  # enum value used when the field is absent


@dataclass(frozen=True)
class Section:
    """A contract section: its rules, output schema and the field that identifies a record."""

    name: str
    rules: tuple[FieldRule, ...]
    schema: pa.Schema
    key: str
    output_name: str  # file (or directory) under OUT

    @property
    def private_fields(self) -> frozenset[str]:
        return frozenset(r.name for r in self.rules) & contract.PRIVATE_FIELDS

    @property
    def output_schema(self) -> pa.Schema:
        """The schema written to disk: the contract schema without private fields."""
        keep = [f for f in self.schema if f.name not in contract.PRIVATE_FIELDS]
        return pa.schema(keep)


# Fields whose string values have a closed vocabulary or a parsed form.
_SPECIAL: dict[tuple[str, str], dict[str, object]] = {
    ("events", "client_ip"): {"kind": "ip"},
    ("events", "status"): {"kind": "enum", "allowed": contract.STATUSES, "default": "ok"},
    ("accounts", "signup_ip"): {"kind": "ip"},
    ("accounts", "tier"): {"kind": "enum", "allowed": contract.TIERS},
    ("ip_intel", "cidr"): {"kind": "cidr"},
    ("ip_intel", "kind"): {"kind": "enum", "allowed": contract.IP_KINDS},
}


def _kind_of(field: contract.Field) -> str:
    t = field.type
    if pa.types.is_timestamp(t):
        return "timestamp"
    if pa.types.is_int64(t):
        return "int64"
    if pa.types.is_int32(t):
        return "int32"
    if pa.types.is_floating(t):
        return "float"
    return "string"


def _rules(section: str, fields: tuple[contract.Field, ...]) -> tuple[FieldRule, ...]:
    rules = []
    for f in fields:
        extra = _SPECIAL.get((section, f.name), {})
        rules.append(
            FieldRule(
                name=f.name,
                kind=str(extra.get("kind", _kind_of(f))),
                required=f.required,
                non_negative=f.non_negative,
                allowed=tuple(extra.get("allowed", ())),  # type: ignore[arg-type]
                default=extra.get("default"),  # type: ignore[arg-type]
            )
        )
    return tuple(rules)


SECTIONS: dict[str, Section] = {
    "events": Section(
        "events", _rules("events", contract.EVENT_FIELDS), contract.EVENTS, "request_id", "events"
    ),
    "accounts": Section(
        "accounts",
        _rules("accounts", contract.ACCOUNT_FIELDS),
        contract.ACCOUNTS,
        "account_id",
        "accounts.parquet",
    ),
    "releases": Section(
        "releases",
        _rules("releases", contract.RELEASE_FIELDS),
        contract.RELEASES,
        "model",
        "releases.parquet",
    ),
    "ip_intel": Section(
        "ip_intel",
        _rules("ip_intel", contract.IP_INTEL_FIELDS),
        contract.IP_INTEL,
        "cidr",
        "ip_intel.parquet",
    ),
}


def get_section(name: str) -> Section:
    """Look a section up by name (`ip-intel` and `ip_intel` are the same)."""
    key = name.replace("-", "_")
    if key not in SECTIONS:
        raise UserError(
            f"unknown section {name!r}; expected one of: events, accounts, releases, ip-intel"
        )
    return SECTIONS[key]
