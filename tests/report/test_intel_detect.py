"""`detect --intel BUNDLE` end to end: shared indicators raise risk and add a reason, but never
flag an account on their own."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
import stix2

from distillguard.pipeline.detect import DetectConfig, run_detect
from distillguard.scoring.risk import BOOST, DEFAULT_THRESHOLD
from tests.report.synthetic import PROXY_NET, SyntheticInputs, write_inputs


def _detect(inputs: SyntheticInputs, out: Path, intel: list[Path] | None = None) -> dict:
    run_detect(
        DetectConfig(
            events=[inputs.events],
            accounts=[inputs.accounts],
            releases=[inputs.releases],
            ip_intel=[inputs.ip_intel],
            intel_bundles=intel,
            out=out,
            threads=1,
            memory_limit="1GB",
        )
    )
    return {r["account_id"]: r for r in pq.read_table(out / "accounts.parquet").to_pylist()}


def test_shared_intel_boosts_without_flagging(tmp_path: Path) -> None:
    inputs = write_inputs(tmp_path / "in")
    ident = stix2.Identity(name="ProviderB", identity_class="organization")
    indicators = [
        stix2.Indicator(
            pattern=p,
            pattern_type="stix",
            valid_from="2026-01-01T00:00:00Z",
            created_by_ref=ident.id,
        )
        for p in (f"[ipv4-addr:value = '{PROXY_NET}.0/24']", "[ipv4-addr:value = '198.51.100.1']")
    ]
    bundle = tmp_path / "providerb.json"
    bundle.write_text(stix2.Bundle(objects=[ident, *indicators]).serialize())

    before = _detect(inputs, tmp_path / "plain")
    after = _detect(inputs, tmp_path / "intel", [bundle])

    benign = inputs.benign[0]  # the only benign account on 198.51.100.1
    assert not before[benign]["flagged"] and not after[benign]["flagged"]
    assert after[benign]["risk"] == pytest.approx(
        min(before[benign]["risk"] + BOOST, DEFAULT_THRESHOLD - 1e-6), abs=1e-5
    )
    assert any("shared intelligence from ProviderB" in r for r in after[benign]["reasons"])
    untouched = inputs.benign[1]
    assert after[untouched]["risk"] == pytest.approx(before[untouched]["risk"])
    assert not any("shared intelligence" in r for r in after[untouched]["reasons"])
    attacker = inputs.attackers[0]
    assert after[attacker]["risk"] >= before[attacker]["risk"]
    assert any("IPs listed in shared intelligence" in r for r in after[attacker]["reasons"])
