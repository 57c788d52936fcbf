"""STIX 2.1 export and import: valid bundle, TLP everywhere, ATLAS, caps, round trip, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import stix2

from distillguard.engines.duckdb import connect, ibis_backend
from distillguard.errors import UserError
from distillguard.report.stix_export import ExportLimits, build_bundle, write_bundle
from distillguard.report.stix_import import matching_accounts, read_bundle
from tests.report.rundir_factory import FakeRun

ATLAS_IDS = {"AML.T0024", "AML.T0024.002", "AML.T0040", "AML.T0005"}


def _objects(bundle: stix2.Bundle, kind: str) -> list:
    return [o for o in bundle.objects if o["type"] == kind]


@pytest.fixture(scope="module")
def exported(
    fake_run_master: FakeRun, tmp_path_factory: pytest.TempPathFactory
) -> tuple[FakeRun, Path, stix2.Bundle]:
    out = tmp_path_factory.mktemp("stix") / "b.json"
    path = write_bundle(build_bundle(fake_run_master.path, producer="ProviderA"), out)
    return fake_run_master, path, stix2.parse(path.read_text(), allow_custom=True)


def test_bundle_parses_and_marks_every_object(exported) -> None:
    _, path, bundle = exported
    strict = stix2.parse(path.read_text())  # no custom objects or properties needed
    assert len(strict.objects) == len(bundle.objects)
    markings = _objects(bundle, "marking-definition")
    assert [m.id for m in markings] == [stix2.TLP_AMBER.id]
    for o in bundle.objects:
        if o["type"] != "marking-definition":
            assert o.object_marking_refs == [stix2.TLP_AMBER.id], o.id


def test_campaigns_techniques_and_relationships(exported) -> None:
    run, _, bundle = exported
    campaigns = {c.name: c for c in _objects(bundle, "campaign")}
    assert set(campaigns) == {"Distillation campaign C1", "Distillation campaign C2"}
    table = pq.read_table(run.path / "campaigns.parquet").to_pylist()
    c1 = next(r for r in table if r["campaign_id"] == "C1")
    obj = campaigns["Distillation campaign C1"]
    assert obj.first_seen == c1["first_seen"] and obj.last_seen == c1["last_seen"]
    assert f"{c1['requests']:,} requests" in obj.description
    refs = {r.external_references[0].external_id: r for r in _objects(bundle, "attack-pattern")}
    assert set(refs) == ATLAS_IDS
    assert all(r.external_references[0].source_name == "mitre-atlas" for r in refs.values())
    ids = {o.id for o in bundle.objects}
    rels = _objects(bundle, "relationship")
    assert all(r.source_ref in ids and r.target_ref in ids for r in rels)
    uses = {(r.source_ref, r.target_ref) for r in rels if r.relationship_type == "uses"}
    assert all((obj.id, ap.id) in uses for ap in refs.values())
    infra = _objects(bundle, "infrastructure")
    pool = next(i for i in infra if "AS64500" in i.name)
    assert pool.infrastructure_types == ["anonymization"] and (obj.id, pool.id) in uses
    indicates = {(r.source_ref, r.target_ref) for r in rels if r.relationship_type == "indicates"}
    assert all(
        (i.id, obj.id) in indicates or any(s == i.id for s, _ in indicates)
        for i in _objects(bundle, "indicator")
    )


def test_indicator_patterns_are_campaign_specific(exported) -> None:
    run, _, bundle = exported
    patterns = {i.pattern for i in _objects(bundle, "indicator")}
    assert f"[ipv4-addr:value = '{run.proxy_ips[0]}']" in patterns
    assert "[autonomous-system:number = 64500]" in patterns
    assert f"[x-distillguard-template:tpl_id = '{run.hydra_tpl}']" in patterns
    # A benign user's own address and the residential ASN they share are not campaign-specific.
    assert "[ipv4-addr:value = '198.51.100.1']" not in patterns
    assert "[autonomous-system:number = 64501]" not in patterns
    # A datacenter ASN (campaign C2's hosting) is infrastructure, not a shareable indicator.
    assert "[autonomous-system:number = 64510]" not in patterns


def test_ids_are_stable_and_caps_apply(fake_run: FakeRun) -> None:
    a = build_bundle(fake_run.path, limits=ExportLimits(ips=3))
    b = build_bundle(fake_run.path, limits=ExportLimits(ips=3))
    assert [o.id for o in a.objects] == [o.id for o in b.objects]
    ips = [i for i in _objects(a, "indicator") if "ipv4-addr" in i.pattern]
    assert len([i for i in ips if i.name.startswith("C1 ")]) == 3


def test_tlp_choice_and_bad_tlp(fake_run: FakeRun) -> None:
    bundle = build_bundle(fake_run.path, tlp="red")
    assert all(
        o.object_marking_refs == [stix2.TLP_RED.id]
        for o in bundle.objects
        if o["type"] != "marking-definition"
    )
    with pytest.raises(UserError, match="TLP"):
        build_bundle(fake_run.path, tlp="purple")


def test_run_without_campaigns_exports_only_producer(quiet_run: FakeRun) -> None:
    bundle = build_bundle(quiet_run.path)
    assert sorted(o["type"] for o in bundle.objects) == ["identity", "marking-definition"]


def _enriched(run: FakeRun):
    be = ibis_backend(connect())
    return be, be.read_parquet(run.path / "work" / "enriched.parquet", table_name="enriched")


def test_round_trip_matches_campaign_accounts(exported) -> None:
    run, path, _ = exported
    be, e = _enriched(run)
    hits = matching_accounts([path], be, e, None)
    reasons = dict(zip(hits["account_id"].to_pylist(), hits["reason"].to_pylist(), strict=True))
    assert set(run.hydra) <= set(reasons)
    assert not set(run.benign) & set(reasons)
    assert "listed in shared intelligence from ProviderA (b.json)" in reasons[run.hydra[0]]
    assert "1 prompt template" in reasons[run.hydra[0]] and "1 ASN" in reasons[run.hydra[0]]


def _bundle_with(tmp: Path, *patterns: str) -> Path:
    ident = stix2.Identity(name="ProviderB", identity_class="organization")
    inds = [
        stix2.Indicator(
            pattern=p,
            pattern_type="stix",
            valid_from="2026-01-01T00:00:00Z",
            created_by_ref=ident.id,
        )
        for p in patterns
    ]
    path = tmp / "other.json"
    path.write_text(stix2.Bundle(objects=[ident, *inds]).serialize())
    return path


def test_asn_only_match_needs_most_of_the_traffic(fake_run: FakeRun, tmp_path: Path) -> None:
    path = _bundle_with(tmp_path, "[autonomous-system:number IN (64500, 64501)]")
    be, e = _enriched(fake_run)
    matched = set(matching_accounts([path], be, e, None)["account_id"].to_pylist())
    # Everyone here sends all traffic from a listed ASN; drop one ASN and re-check.
    assert set(fake_run.hydra) <= matched and set(fake_run.benign) <= matched
    path = _bundle_with(tmp_path, "[autonomous-system:number = 64501]")
    matched = set(matching_accounts([path], be, e, None)["account_id"].to_pylist())
    assert set(fake_run.benign) <= matched and not set(fake_run.hydra) & matched


def test_asn_share_threshold(tmp_path: Path) -> None:
    be = ibis_backend(connect())
    e = be.create_table(
        "e",
        pa.table(
            {
                "account_id": ["mixed"] * 10 + ["vpn-user"] * 4,
                "client_ip": [f"192.0.2.{i}" for i in range(14)],
                "asn": ["AS1"] * 3 + ["AS2"] * 7 + ["AS1"] * 2 + ["AS3"] * 2,
                "tpl_id": pa.array(range(14), pa.int64()),
            }
        ),
    )
    one = _bundle_with(tmp_path, "[autonomous-system:number = 1]")
    # mixed: 30% of its requests on AS1 -> no; vpn-user: 50% -> yes (inclusive).
    assert matching_accounts([one], be, e, None)["account_id"].to_pylist() == ["vpn-user"]
    two = _bundle_with(tmp_path, "[autonomous-system:number = 2]")
    assert matching_accounts([two], be, e, None)["account_id"].to_pylist() == ["mixed"]


def test_import_cidr_and_in_lists(fake_run: FakeRun, tmp_path: Path) -> None:
    path = _bundle_with(
        tmp_path,
        "[ipv4-addr:value = '203.0.113.0/24']",
        "[ipv4-addr:value IN ('198.51.100.1', '198.51.100.2')]",
    )
    intel = read_bundle(path)
    assert intel.ips == {"198.51.100.1", "198.51.100.2"} and len(intel.networks) == 1
    be, e = _enriched(fake_run)
    hits = matching_accounts([path], be, e, None).to_pylist()
    matched = {h["account_id"] for h in hits}
    assert set(fake_run.hydra) <= matched
    assert {"user-000", "user-001"} <= matched and "user-002" not in matched
    assert all("ProviderB (other.json)" in h["reason"] for h in hits)


@pytest.mark.parametrize(
    "content, message",
    [
        ("not json", "not a valid STIX 2.1 bundle"),
        ('{"hello": 1}', "not a valid STIX 2.1 bundle"),
        (
            json.dumps(
                {
                    "type": "identity",
                    "spec_version": "2.1",
                    "name": "x",
                    "id": "identity--311b2d2d-f010-4473-83ec-1edf84858f4c",
                    "created": "2026-01-01T00:00:00Z",
                    "modified": "2026-01-01T00:00:00Z",
                }
            ),
            "not a bundle",
        ),
    ],
)
def test_bad_bundle_is_a_user_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        read_bundle(path)
    with pytest.raises(UserError, match="cannot read"):
        read_bundle(tmp_path / "missing.json")
