"""Share detected campaigns with other providers as a STIX 2.1 bundle (`export stix`).

Mapping (see docs/report.md):
- each campaign -> `campaign` (first/last seen, a description with its numbers);
- its network -> one `infrastructure` per busy ASN (type `anonymization` for proxy/VPN/Tor);
- client IPs -> `indicator` `[ipv4-addr:value = '...']` (or ipv6-addr), ASNs -> `indicator`
  `[autonomous-system:number = N]`, prompt templates -> `indicator`
  `[x-distillguard-template:tpl_id = '...']` (a STIX pattern over a custom observable type);
- MITRE ATLAS techniques -> `attack-pattern` with `mitre-atlas` external references;
- relationships: campaign uses attack-pattern / infrastructure, indicator indicates campaign,
  IP indicator indicates the infrastructure of its ASN;
- every object carries the chosen TLP marking and is created by the producer's identity.

Only indicators that are specific to the campaign are shared: an IP, ASN or template also used
heavily by accounts outside the campaign (a NAT, a popular VPN, a common prompt) is left out so
that sharing does not hurt legitimate users elsewhere.
"""

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import stix2

from distillguard.errors import UserError
from distillguard.report import data
from distillguard.report.rundir import ANONYMOUS_KINDS, RunDir, sql_str

TLP = {
    "clear": stix2.TLP_WHITE,
    "white": stix2.TLP_WHITE,
    "green": stix2.TLP_GREEN,
    "amber": stix2.TLP_AMBER,
    "red": stix2.TLP_RED,
}
# MITRE ATLAS techniques every distillation campaign exhibits.
ATLAS = (
    ("AML.T0040", "AI Model Inference API Access"),
    ("AML.T0024", "Exfiltration via AI Inference API"),
    ("AML.T0024.002", "Extract AI Model"),
    ("AML.T0005", "Create Proxy AI Model"),
)
TEMPLATE_TYPE = "x-distillguard-template"
# An indicator is shared only when the campaign sends at least this share of its traffic.
MIN_IP_SHARE = 0.8
MIN_ASN_SHARE = 0.5
MIN_TEMPLATE_SHARE = 0.9
MIN_TEMPLATE_ACCOUNTS = 2
MIN_INFRA_SHARE = 0.05  # an ASN carrying less of the campaign's traffic gets no infrastructure
_NS = uuid.UUID("5d1c6c1e-6a53-4c55-9a2b-6f1d2d8b7e10")


@dataclass(frozen=True)
class ExportLimits:
    """Per-campaign caps on shared indicators (busiest first)."""

    ips: int = 200
    asns: int = 10
    templates: int = 20
    infrastructure: int = 5


def _sid(kind: str, *parts: str) -> str:
    """A deterministic STIX id, so re-exporting a run updates rather than duplicates objects."""
    return f"{kind}--{uuid.uuid5(_NS, '|'.join(parts))}"


def _campaign_traffic(run: RunDir, cid: str, column: str, limit: int) -> list[dict[str, Any]]:
    """Values of `column` in the campaign's requests, with the campaign's share of each value."""
    ids = run.account_ids_sql(cid)
    kind = "mode(ip_kind)" if run.has("enriched", "ip_kind") else "NULL"
    return run.rows(
        f"WITH c AS (SELECT {column} AS value, count(*) AS requests, "
        f"count(DISTINCT account_id) AS accounts, {kind} AS kind, "
        f"min(ts_ms) AS first_ms FROM enriched WHERE account_id IN {ids} "
        f"AND {column} IS NOT NULL GROUP BY 1), "
        f"t AS (SELECT {column} AS value, count(*) AS total FROM enriched "
        f"WHERE {column} IN (SELECT value FROM c) GROUP BY 1) "
        f"SELECT c.*, c.requests / t.total AS share FROM c JOIN t USING (value) "
        f"ORDER BY c.requests DESC, c.value LIMIT {int(limit) * 20}"
    )


def _ip_pattern(ip: str) -> str | None:
    try:
        version = ipaddress.ip_address(ip).version
    except ValueError:
        return None
    return f"[ipv{version}-addr:value = '{ip}']"


def _asn_number(asn: str) -> int | None:
    digits = asn[2:] if asn.upper().startswith("AS") else ""
    return int(digits) if digits.isdigit() else None


def _as_orgs(run: RunDir) -> dict[str, str]:
    if not run.has("ip_intel", "asn", "as_org"):
        return {}
    rows = run.rows(
        "SELECT 'AS' || CAST(asn AS VARCHAR) AS asn, any_value(as_org) AS org FROM ip_intel "
        "WHERE asn IS NOT NULL AND as_org IS NOT NULL GROUP BY 1"
    )
    return {r["asn"]: r["org"] for r in rows}


def _ms_time(ms: int | None, fallback: datetime) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC) if ms is not None else fallback


class _Builder:
    """Accumulates the STIX objects of one bundle."""

    def __init__(self, producer: str, marking: stix2.MarkingDefinition, created: datetime):
        self.marking = marking
        self.created = created
        self.identity = stix2.Identity(
            id=_sid("identity", producer),
            name=producer,
            identity_class="organization",
            sectors=["technology"],
            description="LLM API provider sharing distillation-attack intelligence (distillguard).",
            created=created,
            modified=created,
            object_marking_refs=[marking.id],
        )
        self.objects: list[Any] = [marking, self.identity]
        self.producer = producer

    def common(self) -> dict[str, Any]:
        return {
            "created_by_ref": self.identity.id,
            "object_marking_refs": [self.marking.id],
            "created": self.created,
            "modified": self.created,
        }

    def add(self, obj: Any) -> Any:
        self.objects.append(obj)
        return obj

    def relate(self, source: Any, kind: str, target: Any) -> None:
        self.add(
            stix2.Relationship(
                id=_sid("relationship", self.producer, source.id, kind, target.id),
                source_ref=source.id,
                relationship_type=kind,
                target_ref=target.id,
                **self.common(),
            )
        )


def _attack_patterns(b: _Builder) -> list[stix2.AttackPattern]:
    out = []
    for tid, name in ATLAS:
        out.append(
            b.add(
                stix2.AttackPattern(
                    id=_sid("attack-pattern", "mitre-atlas", tid),
                    name=name,
                    external_references=[
                        {
                            "source_name": "mitre-atlas",
                            "external_id": tid,
                            "url": f"https://atlas.mitre.org/techniques/{tid}",
                        }
                    ],
                    **b.common(),
                )
            )
        )
    return out


def _description(c: data.Campaign, adaptation: list[str]) -> str:
    text = (
        f"Distillation (model-extraction) campaign detected by distillguard: {c.accounts:,} "
        f"accounts sent {c.requests:,} requests and received {c.output_tokens:,} output tokens "
        f"between {data.fmt_time(c.first_seen)} and {data.fmt_time(c.last_seen)}. "
        f"{100 * c.anon_share:.0f}% of requests came through proxies, VPNs or Tor, from "
        f"{c.ips:,} IPs in {c.asns:,} ASNs."
    )
    if c.capabilities:
        text += f" Targeted capabilities: {', '.join(c.capabilities)}."
    if c.models:
        text += f" Models queried: {', '.join(c.models)}."
    for s in adaptation:
        text += f" It {s}."
    return text


def _campaign_objects(
    run: RunDir, b: _Builder, c: data.Campaign, techniques: list, limits: ExportLimits, orgs: dict
) -> None:
    first = c.first_seen or b.created
    campaign = b.add(
        stix2.Campaign(
            id=_sid("campaign", b.producer, c.campaign_id, data.fmt_time(c.first_seen)),
            name=f"Distillation campaign {c.campaign_id}",
            description=_description(c, data.adaptation_sentences(run, c.campaign_id)),
            first_seen=first,
            last_seen=c.last_seen or first,
            objective="Harvest model outputs through the inference API to train a competing "
            "model (distillation).",
            **b.common(),
        )
    )
    for t in techniques:
        b.relate(campaign, "uses", t)
    if not run.has("enriched", "account_id", "client_ip"):
        return
    infra = _infrastructure(run, b, c, campaign, limits, orgs)
    _ip_indicators(run, b, c, campaign, infra, limits)
    _asn_indicators(run, b, c, campaign, limits, orgs)
    _template_indicators(run, b, c, campaign, limits)


def _infrastructure(
    run: RunDir, b: _Builder, c: data.Campaign, campaign: Any, limits: ExportLimits, orgs: dict
) -> dict[str, Any]:
    """One infrastructure object per ASN carrying a real part of the campaign's traffic."""
    out: dict[str, Any] = {}
    if not run.has("enriched", "asn"):
        return out
    for a in c.top_asns[: limits.infrastructure]:
        if a["share"] < MIN_INFRA_SHARE:
            continue
        kind = _dominant_kind(run, c.campaign_id, a["value"])
        anonymising = kind in ANONYMOUS_KINDS
        org = f" ({orgs[a['value']]})" if a["value"] in orgs else ""
        label = "proxy pool" if anonymising else f"{kind} addresses"
        infra = b.add(
            stix2.Infrastructure(
                id=_sid("infrastructure", b.producer, c.campaign_id, a["value"]),
                name=f"{c.campaign_id} {label} in {a['value']}{org}",
                description=(
                    f"{a['ips']:,} client IPs in {a['value']}{org}, mostly {kind}, carried "
                    f"{a['requests']:,} requests ({100 * a['share']:.0f}% of the campaign)."
                ),
                infrastructure_types=["anonymization"] if anonymising else ["unknown"],
                first_seen=c.first_seen or b.created,
                last_seen=c.last_seen or c.first_seen or b.created,
                **b.common(),
            )
        )
        b.relate(campaign, "uses", infra)
        out[a["value"]] = infra
    return out


def _dominant_kind(run: RunDir, cid: str, asn: str) -> str:
    if not run.has("enriched", "ip_kind"):
        return "unknown"
    rows = run.rows(
        f"SELECT coalesce(ip_kind, 'unknown') AS kind, count(*) AS n FROM enriched "
        f"WHERE asn = {sql_str(asn)} AND account_id IN {run.account_ids_sql(cid)} "
        "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1"
    )
    return rows[0]["kind"] if rows else "unknown"


def _indicator(b: _Builder, key: str, name: str, pattern: str, kinds: list[str], **kw: Any) -> Any:
    return b.add(
        stix2.Indicator(
            id=_sid("indicator", b.producer, key),
            name=name,
            pattern=pattern,
            pattern_type="stix",
            indicator_types=kinds,
            **kw,
            **b.common(),
        )
    )


def _ip_indicators(
    run: RunDir, b: _Builder, c: data.Campaign, campaign: Any, infra: dict, limits: ExportLimits
) -> None:
    asn_of = (
        {
            r["client_ip"]: r["asn"]
            for r in run.rows(
                "SELECT client_ip, any_value(asn) AS asn FROM enriched "
                f"WHERE account_id IN {run.account_ids_sql(c.campaign_id)} GROUP BY 1"
            )
        }
        if run.has("enriched", "asn")
        else {}
    )
    rows = [r for r in _campaign_traffic(run, c.campaign_id, "client_ip", limits.ips)]
    shared = [r for r in rows if r["share"] >= MIN_IP_SHARE][: limits.ips]
    for r in shared:
        pattern = _ip_pattern(str(r["value"]))
        if pattern is None:
            continue
        anonymising = r["kind"] in ANONYMOUS_KINDS
        ind = _indicator(
            b,
            f"ip|{r['value']}",
            f"{c.campaign_id} client IP {r['value']}",
            pattern,
            ["anonymization" if anonymising else "malicious-activity"],
            description=(
                f"{r['requests']:,} requests from {r['accounts']} campaign accounts "
                f"({100 * r['share']:.0f}% of this address's traffic); network kind {r['kind']}."
            ),
            valid_from=_ms_time(r["first_ms"], b.created),
        )
        b.relate(ind, "indicates", campaign)
        asn = asn_of.get(r["value"])
        if asn in infra:
            b.relate(ind, "indicates", infra[asn])


def _asn_indicators(
    run: RunDir, b: _Builder, c: data.Campaign, campaign: Any, limits: ExportLimits, orgs: dict
) -> None:
    if not run.has("enriched", "asn"):
        return
    rows = _campaign_traffic(run, c.campaign_id, "asn", limits.asns)
    # Only anonymising networks: a cloud or ISP ASN says nothing about an account elsewhere.
    kept = [
        r
        for r in rows
        if r["share"] >= MIN_ASN_SHARE
        and r["kind"] in ANONYMOUS_KINDS
        and _asn_number(str(r["value"]))
    ]
    for r in kept[: limits.asns]:
        number = _asn_number(str(r["value"]))
        org = f" ({orgs[r['value']]})" if r["value"] in orgs else ""
        ind = _indicator(
            b,
            f"asn|{number}",
            f"{c.campaign_id} network {r['value']}{org}",
            f"[autonomous-system:number = {number}]",
            ["anonymization" if r["kind"] in ANONYMOUS_KINDS else "malicious-activity"],
            description=(
                f"{r['requests']:,} requests from {r['accounts']} campaign accounts "
                f"({100 * r['share']:.0f}% of this ASN's traffic seen by the producer)."
            ),
            valid_from=_ms_time(r["first_ms"], b.created),
        )
        b.relate(ind, "indicates", campaign)


def _template_indicators(
    run: RunDir, b: _Builder, c: data.Campaign, campaign: Any, limits: ExportLimits
) -> None:
    if not run.has("enriched", "tpl_id"):
        return
    rows = _campaign_traffic(run, c.campaign_id, "tpl_id", limits.templates)
    kept = [
        r
        for r in rows
        if r["share"] >= MIN_TEMPLATE_SHARE and r["accounts"] >= MIN_TEMPLATE_ACCOUNTS
    ]
    for r in kept[: limits.templates]:
        ind = _indicator(
            b,
            f"tpl|{r['value']}",
            f"{c.campaign_id} prompt template {r['value']}",
            f"[{TEMPLATE_TYPE}:tpl_id = '{int(r['value'])}']",
            ["malicious-activity"],
            description=(
                "distillguard prompt-template fingerprint (signals.template tpl_id: hash of the "
                "masked prompt prefix and suffix; same distillguard version computes the same "
                f"id). Used in {r['requests']:,} requests by {r['accounts']} campaign accounts."
            ),
            valid_from=_ms_time(r["first_ms"], b.created),
        )
        b.relate(ind, "indicates", campaign)


def build_bundle(
    run_dir: Path,
    tlp: str = "amber",
    producer: str = "distillguard",
    limits: ExportLimits | None = None,
) -> stix2.Bundle:
    """The STIX 2.1 bundle of every campaign of a run."""
    marking = TLP.get(tlp.lower())
    if marking is None:
        raise UserError(f"unknown TLP level {tlp!r}; choose one of {', '.join(TLP)}")
    run = RunDir(run_dir)
    created = datetime.fromtimestamp((run.path / "accounts.parquet").stat().st_mtime, tz=UTC)
    b = _Builder(producer, marking, created)
    campaigns = data.campaigns(run, detailed=None)
    if campaigns:
        techniques = _attack_patterns(b)
        orgs = _as_orgs(run)
        for c in campaigns:
            _campaign_objects(run, b, c, techniques, limits or ExportLimits(), orgs)
    return stix2.Bundle(objects=b.objects)


def write_bundle(bundle: stix2.Bundle, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(bundle.serialize(pretty=True), encoding="utf-8")
    return out
