"""Simulator output: determinism, contract conformance, ground truth consistency, proportions."""

from __future__ import annotations

import hashlib
import ipaddress
import json
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from distillguard import contract
from distillguard.errors import UserError
from distillguard.simulate import builtin_names, load_scenario, simulate
from distillguard.simulate.accounts import scaled_counts

FILES = ("events.parquet", "accounts.parquet", "labels.parquet", "releases.parquet")


def content_hash(out: Path) -> str:
    """Hash of the table contents (not the file bytes, which embed writer metadata)."""
    h = hashlib.sha256()
    for name in FILES:
        table = pq.read_table(out / name)
        for batch in table.to_batches():
            for col in batch.columns:
                h.update(str(col.to_pylist()).encode())
    h.update((out / "ip_intel.csv").read_bytes())
    return h.hexdigest()


def test_same_seed_same_content_different_seed_differs(small_run: Path, tmp_path: Path) -> None:
    simulate("small", seed=1, out=tmp_path / "again")
    simulate("small", seed=2, out=tmp_path / "other")
    assert content_hash(tmp_path / "again") == content_hash(small_run)
    assert content_hash(tmp_path / "other") != content_hash(small_run)


def test_labels_agree_with_events(small_run: Path) -> None:
    events = set(
        pq.read_table(small_run / "events.parquet", columns=["account_id"])[
            "account_id"
        ].to_pylist()
    )
    labels = pq.read_table(small_run / "labels.parquet")
    accounts = pq.read_table(small_run / "accounts.parquet")
    assert events == set(labels["account_id"].to_pylist())
    assert set(accounts["account_id"].to_pylist()) == events
    benign = pc.equal(labels["campaign_id"].is_null(), True)
    attacker_personas = set(pc.filter(labels["persona"], pc.invert(benign)).to_pylist())
    assert attacker_personas and all(p.startswith("campaign_") for p in attacker_personas)


@pytest.mark.parametrize("name", ["small", "seed-report", "evasive", "benign-only"])
def test_every_scenario_generates_valid_events(name: str, tmp_path: Path) -> None:
    scale = {"small": 0.3, "benign-only": 0.002}.get(name, 0.0005)
    res = simulate(name, scale=scale, seed=5, out=tmp_path)
    events = pq.read_table(tmp_path / "events.parquet")
    assert events.schema.equals(contract.EVENTS)
    assert events.num_rows == res.events > 0
    for f in contract.EVENT_FIELDS:
        if f.required:
            assert events[f.name].null_count == 0, f.name
        if f.non_negative:
            assert pc.min(events[f.name]).as_py() >= 0, f.name
    assert set(pc.unique(events["status"]).to_pylist()) <= set(contract.STATUSES)
    assert pc.count_distinct(events["request_id"]).as_py() == events.num_rows
    ts = events["timestamp"].cast("int64").to_numpy()
    assert (ts[1:] >= ts[:-1]).all(), "events.parquet is in time order"
    for ip in pc.unique(events["client_ip"]).to_pylist()[:2000]:
        ipaddress.ip_address(ip)
    for fname, schema in (
        ("accounts.parquet", contract.ACCOUNTS),
        ("labels.parquet", contract.LABELS),
        ("releases.parquet", contract.RELEASES),
    ):
        assert pq.read_schema(tmp_path / fname).equals(schema), fname
    header = (tmp_path / "ip_intel.csv").read_text().splitlines()[0].replace('"', "")
    assert header == "cidr,asn,as_org,kind"
    lo, hi = pc.min_max(events["timestamp"]).values()
    sc = load_scenario(name)
    assert lo.value >= sc.start_ms and hi.value < sc.start_ms + sc.days * 86_400_000


def test_every_persona_in_its_intended_proportion(small_run: Path) -> None:
    sc = load_scenario("small")
    rows = duckdb.sql(
        f"SELECT persona, count(DISTINCT account_id), count(*) FROM "
        f"read_parquet('{small_run}/events.parquet') e "
        f"JOIN read_parquet('{small_run}/labels.parquet') l "
        "USING (account_id) GROUP BY 1"
    ).fetchall()
    got = {p: (a, e) for p, a, e in rows}
    assert set(got) == {p.name for p in sc.personas}
    for p in sc.personas:
        assert got[p.name] == scaled_counts(p, 1.0, sc.min_accounts)


def test_seed_report_campaign_volume_ratios(seed_report_run: Path) -> None:
    rows = duckdb.sql(
        f"SELECT campaign_id, count(*) FROM read_parquet('{seed_report_run}/events.parquet') e "
        f"JOIN read_parquet('{seed_report_run}/labels.parquet') l USING (account_id) "
        "WHERE campaign_id IS NOT NULL GROUP BY 1"
    ).fetchall()
    got = dict(rows)
    sc = load_scenario("seed-report")
    want: dict[str, int] = {}
    for p in sc.personas:
        if p.campaign:
            want[p.campaign] = want.get(p.campaign, 0) + p.events
    for c in ("B", "C"):
        ratio, target = got[c] / got["A"], want[c] / want["A"]
        assert abs(ratio - target) / target < 0.02, (c, ratio, target)
    assert want["A"] + want["B"] + want["C"] == pytest.approx(16.55e6, rel=0.01)
    total = sum(p.events for p in sc.personas)
    benign_accounts = sum(p.accounts for p in sc.personas if not p.campaign)
    attacker_accounts = sum(p.accounts for p in sc.personas if p.campaign)
    assert total >= 30_000_000 and benign_accounts > attacker_accounts >= 23_000


def test_campaign_a_moves_half_its_traffic_to_the_new_model(seed_report_run: Path) -> None:
    truth = json.loads((seed_report_run / "truth.json").read_text())
    release = load_scenario("seed-report").release_ms("atlas-4")
    assert truth["releases"]["atlas-4"] == 14.0
    share = dict(
        duckdb.sql(
            f"SELECT coalesce(campaign_id, 'benign'), avg((model = 'atlas-4')::int) "
            f"FROM read_parquet('{seed_report_run}/events.parquet') e "
            f"JOIN read_parquet('{seed_report_run}/labels.parquet') l USING (account_id) "
            f"WHERE epoch_ms(timestamp) > {release + 24 * 3_600_000} GROUP BY 1"
        ).fetchall()
    )
    before = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{seed_report_run}/events.parquet') e "
        f"WHERE model = 'atlas-4' AND epoch_ms(timestamp) < {release}"
    ).fetchall()[0][0]
    assert before == 0
    assert 0.42 < share["A"] < 0.58
    assert share["benign"] < 0.2


def test_evasive_accounts_do_not_share_wrappers() -> None:
    from distillguard.simulate.accounts import SharedPools, build_persona_accounts
    from distillguard.simulate.engine import _seq

    sc = load_scenario("evasive")
    pools = SharedPools.create(_seq(1), 1000)
    for i, p in enumerate(sc.personas):
        if p.campaign:
            acc = build_persona_accounts(sc, p, i, 0.02, _seq(1, i), pools, [], account_salt=i)
            assert len(np.unique(acc.template)) == len(acc.template), p.name


def test_shipped_scenarios_and_bad_files(tmp_path: Path) -> None:
    assert {"small", "seed-report", "evasive", "benign-only"} <= set(builtin_names())
    bad = tmp_path / "bad.toml"
    bad.write_text('extends = "small"\n[[persona]]\nname = "chat_user"\nbogus_key = 1\n')
    with pytest.raises(UserError, match="bogus_key"):
        load_scenario(bad)
    with pytest.raises(UserError, match="unknown scenario"):
        load_scenario("no-such-scenario")
    with pytest.raises(UserError, match="not found"):
        load_scenario(tmp_path / "missing.toml")


def test_user_agents_come_from_each_personas_library(small_run: Path) -> None:
    from distillguard.simulate.network import ua_library

    rows = duckdb.sql(
        f"SELECT DISTINCT persona, user_agent FROM read_parquet('{small_run}/events.parquet') e "
        f"JOIN read_parquet('{small_run}/labels.parquet') l USING (account_id)"
    ).fetchall()
    kinds = {p.name: p.ua for p in load_scenario("small").personas}
    for persona, ua in rows:
        assert ua in set(ua_library(kinds[persona])[0].tolist()), (persona, ua)


def test_accounts_exist_before_they_send_requests(seed_report_run: Path) -> None:
    d = seed_report_run
    rows = duckdb.sql(
        f"SELECT count(*) FILTER (WHERE a.created_at >= f.first), count(*), "
        "count(*) FILTER (WHERE a.email IS NULL OR a.signup_ip IS NULL OR a.tier IS NULL) "
        f"FROM read_parquet('{d}/accounts.parquet') a JOIN (SELECT account_id, min(timestamp) "
        f"AS first FROM read_parquet('{d}/events.parquet') GROUP BY 1) f USING (account_id)"
    ).fetchall()
    late, total, incomplete = rows[0]
    assert total > 100 and late == 0 and incomplete == 0


def test_home_users_never_come_from_datacenters_and_attackers_do(seed_report_run: Path) -> None:
    from distillguard.simulate.network import in_hosting

    rows = duckdb.sql(
        f"SELECT persona, client_ip FROM read_parquet('{seed_report_run}/events.parquet') e "
        f"JOIN read_parquet('{seed_report_run}/labels.parquet') l USING (account_id) "
        "WHERE persona IN ('chat_user', 'corporate_nat', 'campaign_a')"
    ).fetchall()
    as_int = {p: [] for p in ("chat_user", "corporate_nat", "campaign_a")}
    for persona, ip in rows:
        as_int[persona].append(int(ipaddress.IPv4Address(ip)))
    assert not in_hosting(np.array(as_int["chat_user"])).any()
    assert not in_hosting(np.array(as_int["corporate_nat"])).any()
    assert in_hosting(np.array(as_int["campaign_a"])).mean() > 0.5  # datacenter/VPN proxies


def test_evasive_proxies_exit_in_the_declared_country() -> None:
    from distillguard.simulate.accounts import SharedPools, build_persona_accounts
    from distillguard.simulate.engine import _seq
    from distillguard.simulate.network import pool

    isp = [pool("residential"), pool("mobile")]
    starts = np.concatenate([x.starts for x in isp]).astype(np.int64)
    ends = np.concatenate([x.ends for x in isp]).astype(np.int64)
    countries = np.concatenate([x.countries for x in isp])
    sc = load_scenario("evasive")
    p = next(p for p in sc.personas if p.name == "campaign_a")
    pools = SharedPools.create(_seq(1), 1000)
    acc = build_persona_accounts(sc, p, 0, 0.05, _seq(4), pools, [], account_salt=1)
    flat = pools.flat().astype(np.int64)
    declared = np.array(acc.table["country"].to_pylist())
    checked = 0
    for a in range(len(declared)):
        for ip in flat[acc.ip_off[a] : acc.ip_off[a] + acc.ip_cnt[a]]:
            hit = np.flatnonzero((starts <= ip) & (ends >= ip))
            assert len(hit) == 1
            assert countries[hit[0]] == declared[a]
            checked += 1
    assert checked > 500
