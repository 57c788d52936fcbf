"""Use another provider's STIX 2.1 bundle in `detect --intel BUNDLE`.

The bundle's IP (address or CIDR), ASN and distillguard prompt-template indicators are matched
against the enriched requests; every account that touched one gets a reason such as
"used 3 IPs listed in shared intelligence from ProviderX (bundle.json)". Scoring raises these
accounts' risk but never flags an account on shared intelligence alone (`scoring.risk`).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ibis
import pyarrow as pa
import stix2

from distillguard.errors import UserError
from distillguard.report.stix_export import TEMPLATE_TYPE

_QUOTED = r"'((?:[^'\\]|\\.)*)'"
_IP_EQ = re.compile(rf"ipv[46]-addr:value\s*=\s*{_QUOTED}")
_IP_IN = re.compile(r"ipv[46]-addr:value\s+IN\s*\(([^)]*)\)", re.IGNORECASE)
_ASN_EQ = re.compile(r"autonomous-system:number\s*=\s*'?(\d+)'?")
_ASN_IN = re.compile(r"autonomous-system:number\s+IN\s*\(([^)]*)\)", re.IGNORECASE)
_TPL_EQ = re.compile(rf"{re.escape(TEMPLATE_TYPE)}:tpl_id\s*=\s*'?(-?\d+)'?")
_TPL_IN = re.compile(rf"{re.escape(TEMPLATE_TYPE)}:tpl_id\s+IN\s*\(([^)]*)\)", re.IGNORECASE)
MIN_ASN_SHARE = 0.5  # share of an account's requests from listed ASNs for an ASN-only match
REASON_SCHEMA = pa.schema([("account_id", pa.string()), ("reason", pa.string())])


@dataclass
class SharedIntel:
    """Indicator values of one bundle, and who shared it."""

    source: str
    ips: set[str] = field(default_factory=set)
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = field(default_factory=list)
    asns: set[int] = field(default_factory=set)
    templates: set[int] = field(default_factory=set)

    def empty(self) -> bool:
        return not (self.ips or self.networks or self.asns or self.templates)


def _in_list(body: str) -> list[str]:
    return [v.strip().strip("'") for v in body.split(",") if v.strip()]


def _add_address(intel: SharedIntel, value: str) -> None:
    try:
        if "/" in value:
            net = ipaddress.ip_network(value, strict=False)
            if net.num_addresses == 1:
                intel.ips.add(str(net.network_address))
            else:
                intel.networks.append(net)
        else:
            intel.ips.add(str(ipaddress.ip_address(value)))
    except ValueError:
        pass  # a malformed value in someone else's bundle: skip that value only


def _read_pattern(intel: SharedIntel, pattern: str) -> None:
    for v in _IP_EQ.findall(pattern):
        _add_address(intel, v)
    for body in _IP_IN.findall(pattern):
        for v in _in_list(body):
            _add_address(intel, v)
    intel.asns.update(int(v) for v in _ASN_EQ.findall(pattern))
    for body in _ASN_IN.findall(pattern):
        intel.asns.update(int(v) for v in _in_list(body) if v.isdigit())
    intel.templates.update(int(v) for v in _TPL_EQ.findall(pattern))
    for body in _TPL_IN.findall(pattern):
        intel.templates.update(int(v) for v in _in_list(body) if v.lstrip("-").isdigit())


def _source_name(objects: list[Any], path: Path) -> str:
    identities = {o.id: o.name for o in objects if o.get("type") == "identity" and "name" in o}
    for o in objects:
        if o.get("type") == "indicator" and o.get("created_by_ref") in identities:
            return f"{identities[o['created_by_ref']]} ({path.name})"
    if identities:
        return f"{next(iter(identities.values()))} ({path.name})"
    return path.name


def read_bundle(path: Path) -> SharedIntel:
    """The IP, ASN and template indicator values of one STIX 2.1 bundle file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        json.loads(text)
        bundle = stix2.parse(text, allow_custom=True)
    except OSError as exc:
        raise UserError(f"cannot read STIX bundle {path}: {exc.strerror or exc}") from None
    except (ValueError, stix2.exceptions.STIXError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{path} is not a valid STIX 2.1 bundle: {first}") from None
    if bundle.get("type") != "bundle":
        raise UserError(f"{path} is a STIX {bundle.get('type')} object, not a bundle")
    objects = list(bundle.get("objects") or [])
    intel = SharedIntel(source=_source_name(objects, Path(path)))
    for o in objects:
        if o.get("type") != "indicator" or o.get("revoked", False):
            continue
        if o.get("pattern_type", "stix") == "stix":
            _read_pattern(intel, str(o.get("pattern", "")))
    return intel


def _networks_hits(e: ibis.Table, nets: list) -> set[str]:
    """Distinct client IPs of `e` inside any of `nets` (one parse per distinct address)."""
    if not nets:
        return set()
    distinct = e.select("client_ip").distinct().to_pyarrow()["client_ip"].to_pylist()
    addrs = []
    for s in distinct:
        try:
            addrs.append((s, ipaddress.ip_address(s)))
        except (TypeError, ValueError):
            continue
    return {s for s, a in addrs if any(a.version == n.version and a in n for n in nets)}


def _count_hits(
    e: ibis.Table, column: str, values: list, dtype: pa.DataType
) -> dict[str, tuple[int, int]]:
    """Per account: (distinct listed values of `column` it used, its requests using them)."""
    if not values or column not in e.columns:
        return {}
    listed = ibis.memtable(pa.table({"listed": pa.array(values, dtype)}))
    j = e.join(listed, e[column] == listed.listed)
    counts = j.group_by("account_id").aggregate(n=j[column].nunique(), r=j.count()).to_pyarrow()
    return {
        a: (n, r)
        for a, n, r in zip(
            counts["account_id"].to_pylist(),
            counts["n"].to_pylist(),
            counts["r"].to_pylist(),
            strict=True,
        )
    }


def _mostly_on_listed_asns(e: ibis.Table, asn_hits: dict[str, tuple[int, int]]) -> set[str]:
    """Accounts that sent at least MIN_ASN_SHARE of their requests from listed ASNs."""
    if not asn_hits:
        return set()
    ids = ibis.memtable(pa.table({"hit_account": pa.array(sorted(asn_hits), pa.string())}))
    j = e.join(ids, e.account_id == ids.hit_account)
    totals = j.group_by("account_id").aggregate(n=j.count()).to_pyarrow()
    return {
        a
        for a, n in zip(totals["account_id"].to_pylist(), totals["n"].to_pylist(), strict=True)
        if asn_hits[a][1] >= MIN_ASN_SHARE * n
    }


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _hits(e: ibis.Table, intel: SharedIntel) -> dict[str, str]:
    ips = sorted(intel.ips | _networks_hits(e, intel.networks))
    per_kind = {
        "IP": _count_hits(e, "client_ip", ips, pa.string()),
        "ASN": _count_hits(e, "asn", [f"AS{a}" for a in sorted(intel.asns)], pa.string()),
        "prompt template": _count_hits(e, "tpl_id", sorted(intel.templates), pa.int64()),
    }
    # An ASN (a VPN provider, a proxy network) also carries legitimate users: a match on ASNs
    # alone counts only for accounts that sent most of their traffic from listed ASNs.
    specific = set(per_kind["IP"]) | set(per_kind["prompt template"])
    asn_only = {a: v for a, v in per_kind["ASN"].items() if a not in specific}
    mostly = _mostly_on_listed_asns(e, asn_only)
    accounts = sorted(specific | mostly)
    out = {}
    for account in accounts:
        parts = [
            _plural(hits[account][0], kind) for kind, hits in per_kind.items() if account in hits
        ]
        listed = ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1]
        out[account] = f"used {listed} listed in shared intelligence from {intel.source}"
    return out


def matching_accounts(bundles: list[Path], be: Any, e: ibis.Table, acc: Any) -> pa.Table:
    """Accounts that touched an indicator of any bundle: columns account_id, reason.

    `be` is the ibis backend and `acc` the accounts table (both unused for now: indicators are
    matched on requests only); `e` is the ibis table of enriched requests.
    """
    del be, acc
    reasons: dict[str, list[str]] = defaultdict(list)
    for path in bundles:
        intel = read_bundle(Path(path))
        if intel.empty():
            continue
        for account, reason in _hits(e, intel).items():
            reasons[account].append(reason)
    ids = sorted(reasons)
    return pa.table(
        {
            "account_id": pa.array(ids, pa.string()),
            "reason": pa.array(["; ".join(reasons[a]) for a in ids], pa.string()),
        },
        schema=REASON_SCHEMA,
    )


def indicator_counts(intel: SharedIntel) -> dict[str, int]:
    """How many values of each kind a bundle lists (for messages and tests)."""
    return {
        "ips": len(intel.ips),
        "networks": len(intel.networks),
        "asns": len(intel.asns),
        "templates": len(intel.templates),
    }


__all__ = ["SharedIntel", "indicator_counts", "matching_accounts", "read_bundle"]
