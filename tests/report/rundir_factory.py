"""A small, fully synthetic `detect` run directory (every file the report stage reads).

Written directly (no pipeline run), so report tests do not depend on the simulator or on the
detector's tuning. Two campaigns (a proxy-pool hydra and a small reasoning harvest), benign
accounts, and one enterprise account inside the big campaign for the policy tests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from distillguard.contract import ACCOUNTS, DETECTED_ACCOUNTS, DETECTED_CAMPAIGNS, RELEASES

DAY = 86_400_000
T0 = 1_769_990_400_000  # 2026-02-02T00:00:00Z
D0 = T0 // DAY
CAPS = ("coding", "math", "reasoning", "tool_use", "agentic", "vision", "creative", "chitchat")
VIEWS = (
    "n_ip",
    "n_subnet",
    "n_template",
    "n_wrapper",
    "n_system",
    "n_sync",
    "n_payment",
    "n_device",
    "n_signup",
)
HYDRA_PROMPT = "You are an expert tutor. Think step by step, show all reasoning, then answer: {q}"
QUESTIONS = ("prove sqrt(2) is irrational", "merge two sorted lists in Go", "solve 3x+7=22")


@dataclass
class FakeRun:
    path: Path
    hydra: list[str]
    small: list[str]
    benign: list[str]
    enterprise: str
    proxy_ips: list[str]
    hydra_tpl: int


def _accounts(n_hydra: int, n_small: int, n_benign: int) -> tuple[list[str], list[str], list[str]]:
    return (
        [f"hx-{i:03d}" for i in range(n_hydra)],
        [f"rs-{i:03d}" for i in range(n_small)],
        [f"user-{i:03d}" for i in range(n_benign)],
    )


def _enriched(rng: np.random.Generator, run: FakeRun, with_campaigns: bool) -> pa.Table:
    parts = []
    hydra_ips = np.array(run.proxy_ips)
    for a in run.hydra:
        n = 60
        ts = T0 + np.sort(rng.integers(0, 12 * DAY, n))
        model = np.where((ts > T0 + 7 * DAY) & (rng.random(n) < 0.7), "atlas-4", "atlas-3")
        parts.append(
            (
                a,
                ts,
                rng.choice(hydra_ips, n),
                "AS64500",
                "proxy",
                "python-httpx/0.27",
                model,
                np.full(n, run.hydra_tpl),
                0b101,
                True,
            )
        )
    for a in run.small:
        n = 30
        ts = T0 + np.sort(rng.integers(3 * DAY, 9 * DAY, n))
        ips = rng.choice(["192.0.2.10", "192.0.2.11"], n)
        parts.append(
            (
                a,
                ts,
                ips,
                "AS64510",
                "datacenter",
                "curl/8.5",
                np.full(n, "atlas-3"),
                np.full(n, 4242),
                0b100,
                True,
            )
        )
    for i, a in enumerate([*run.benign, run.enterprise]):
        n = 12
        ts = T0 + np.sort(rng.integers(0, 14 * DAY, n))
        ip = f"198.51.100.{i + 1}"
        parts.append(
            (
                a,
                ts,
                np.full(n, ip),
                "AS64501",
                "residential",
                "Mozilla/5.0",
                rng.choice(["atlas-3", "atlas-3-mini"], n),
                rng.integers(1, 2**40, n),
                0b10000000,
                False,
            )
        )
    cols: dict[str, list] = {
        k: []
        for k in (
            "account_id",
            "ts_ms",
            "client_ip",
            "asn",
            "ip_kind",
            "user_agent",
            "model",
            "tpl_id",
            "cap_mask",
            "cot",
        )
    }
    for a, ts, ips, asn, kind, ua, model, tpl, mask, cot in parts:
        n = len(ts)
        cols["account_id"] += [a] * n
        cols["ts_ms"] += ts.tolist()
        cols["client_ip"] += list(ips)
        cols["asn"] += [asn] * n
        cols["ip_kind"] += [kind] * n
        cols["user_agent"] += [ua] * n
        cols["model"] += list(model)
        cols["tpl_id"] += [int(x) for x in tpl]
        cols["cap_mask"] += [mask] * n
        cols["cot"] += [cot] * n
    n = len(cols["account_id"])
    ts = np.array(cols["ts_ms"])
    mask = np.array(cols["cap_mask"], dtype=np.int32)
    first_cap = [CAPS[int(np.log2(m & -m))] if m else None for m in mask]
    return pa.table(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "account_id": cols["account_id"],
            "ts_ms": ts,
            "day": ts // DAY,
            "client_ip": cols["client_ip"],
            "subnet": [ip.rsplit(".", 1)[0] + ".0/24" for ip in cols["client_ip"]],
            "ip_kind": cols["ip_kind"],
            "asn": cols["asn"],
            "user_agent": cols["user_agent"],
            "model": cols["model"],
            "input_tokens": rng.integers(50, 300, n),
            "output_tokens": rng.integers(100, 4000, n),
            "tpl_id": pa.array(cols["tpl_id"], pa.int64()),
            "cap_mask": pa.array(mask, pa.int32()),
            "capability": first_cap,
            "cot": cols["cot"],
            "rubric": [False] * n,
            "censor": [False] * n,
        }
    )


def _events(e: pa.Table, run: FakeRun) -> pa.Table:
    acc = e["account_id"].to_pylist()
    hydra, small = set(run.hydra), set(run.small)
    prompts = [
        HYDRA_PROMPT.format(q=QUESTIONS[i % 3])
        if a in hydra
        else ("Grade this answer with a 1-10 rubric </script><b>x</b>" if a in small else "hi")
        for i, a in enumerate(acc)
    ]
    return pa.table(
        {
            "request_id": e["request_id"],
            "timestamp": pa.array(e["ts_ms"].to_numpy(), pa.timestamp("ms", tz="UTC")),
            "account_id": e["account_id"],
            "client_ip": e["client_ip"],
            "model": e["model"],
            "prompt": prompts,
            "input_tokens": e["input_tokens"],
            "output_tokens": e["output_tokens"],
        }
    )


def _scores(run: FakeRun, with_campaigns: bool) -> pa.Table:
    ids = [*run.hydra, *run.small, *run.benign, run.enterprise]
    risk, camp, reasons, cluster = [], [], [], []
    for a in ids:
        if a in run.hydra or a == run.enterprise:
            k = int(a.split("-")[1]) if a in run.hydra else 0
            risk.append(0.97 - 0.01 * (k % 5) if a in run.hydra else 0.99)
            camp.append("C1")
            cluster.append(0)
            reasons.append(
                [
                    f"used {20 + k} IPs in 3 subnets for 60 requests (rotating proxies)",
                    f"cluster of {len(run.hydra)} accounts shares a rare prompt template",
                    f"requests ask for chain-of-thought elicitation ({80 + k % 10}%)",
                    "cluster members sign up in batches",
                ]
            )
        elif a in run.small:
            risk.append(0.8)
            camp.append("C2")
            cluster.append(1)
            reasons.append(
                [
                    "requests ask for rubric/reward-model grading (90%)",
                    "cluster of 4 accounts shares a rare prompt template",
                ]
            )
        else:
            risk.append(0.05 + 0.01 * (int(a.split("-")[1]) % 40))
            camp.append(None)
            cluster.append(2 + int(a.split("-")[1]))
            reasons.append([])
    if not with_campaigns:
        camp = [None] * len(ids)
        risk = [min(r, 0.4) for r in risk]
    risk_arr = np.array(risk)
    return pa.table(
        {
            "account_id": ids,
            "risk": risk_arr,
            "flagged": risk_arr >= 0.5,
            "cluster": cluster,
            "behaviour": risk_arr,
            "reasons": pa.array(reasons, pa.list_(pa.string())),
            "campaign_id": pa.array(camp, pa.string()),
        }
    )


def _fingerprints(e: pa.Table, scores: pa.Table, run: FakeRun) -> pa.Table:
    import duckdb

    con = duckdb.connect()
    con.register("e", e)
    fp = con.sql(
        "SELECT account_id, count(*) AS requests, count(DISTINCT day) AS active_days, "
        "min(ts_ms) AS first_ms, max(ts_ms) AS last_ms, sum(output_tokens) AS output_tokens, "
        "avg(CASE WHEN ip_kind IN ('vpn','proxy','tor') THEN 1.0 ELSE 0.0 END) AS anon_share, "
        "count(DISTINCT client_ip) AS ips, count(DISTINCT subnet) AS subnets, "
        "count(DISTINCT asn) AS asns, avg(cot::INT) AS cot_share, "
        "avg(((cap_mask >> 0) & 1)::DOUBLE) AS cap_coding, "
        "avg(((cap_mask >> 2) & 1)::DOUBLE) AS cap_reasoning "
        "FROM e GROUP BY account_id ORDER BY account_id"
    ).to_arrow_table()
    tiers = {a: ("edu" if i % 2 else "startup") for i, a in enumerate(run.hydra)}
    tiers |= {a: "research" for a in run.small} | {a: "pro" for a in run.benign}
    tiers[run.enterprise] = "enterprise"
    ids = fp["account_id"].to_pylist()
    return (
        fp.append_column("tier", pa.array([tiers[a] for a in ids]))
        .append_column("disposable", pa.array([a in run.hydra for a in ids]))
        .append_column("age_days", pa.array([2.0 if a in run.hydra else 300.0 for a in ids]))
    )


def _edges(run: FakeRun) -> pa.Table:
    rows = []
    for group, base in (([*run.hydra, run.enterprise], 3.0), (run.small, 2.0)):
        for i, a in enumerate(group):
            for b in group[i + 1 : i + 4]:
                rows.append((min(a, b), max(a, b), base, (2, 1, 5, 1, 1, 3, 1, 1, 1)))
    rows.append(("user-000", "user-001", 0.2, (1, 1, 0, 0, 0, 0, 0, 0, 0)))
    cols: dict[str, list] = {"a": [r[0] for r in rows], "b": [r[1] for r in rows]}
    cols["weight"] = [r[2] for r in rows]
    for j, v in enumerate(VIEWS):
        cols[v] = [r[3][j] for r in rows]
    return pa.table(cols)


def _contract_outputs(scores: pa.Table, e: pa.Table, work: Path, out: Path) -> None:
    import duckdb

    pq.write_table(
        pa.table({c: scores[c] for c in DETECTED_ACCOUNTS.names}, schema=DETECTED_ACCOUNTS),
        out / "accounts.parquet",
    )
    con = duckdb.connect()
    con.register("e", e)
    con.register("s", scores)
    totals = con.sql(
        "SELECT campaign_id, count(DISTINCT account_id)::BIGINT AS accounts, "
        "count(*)::BIGINT AS requests, sum(output_tokens)::BIGINT AS output_tokens, "
        "make_timestamp(min(ts_ms) * 1000) AS first_seen, "
        "make_timestamp(max(ts_ms) * 1000) AS last_seen, "
        "count(DISTINCT client_ip)::BIGINT AS ips, count(DISTINCT asn)::BIGINT AS asns "
        "FROM e JOIN s USING (account_id) WHERE campaign_id IS NOT NULL "
        "GROUP BY campaign_id ORDER BY campaign_id"
    ).to_arrow_table()
    ids = totals["campaign_id"].to_pylist()
    caps = {"C1": ["reasoning", "coding"], "C2": ["reasoning"]}
    models = {"C1": ["atlas-3", "atlas-4"], "C2": ["atlas-3"]}
    camp = pa.table(
        {
            **{c: totals[c] for c in ("campaign_id", "accounts", "requests", "output_tokens")},
            "first_seen": totals["first_seen"].cast(pa.timestamp("ms", tz="UTC")),
            "last_seen": totals["last_seen"].cast(pa.timestamp("ms", tz="UTC")),
            "capabilities": pa.array([caps[c] for c in ids], pa.list_(pa.string())),
            "ips": totals["ips"],
            "asns": totals["asns"],
            "models": pa.array([models[c] for c in ids], pa.list_(pa.string())),
        },
        schema=DETECTED_CAMPAIGNS,
    )
    pq.write_table(camp, out / "campaigns.parquet")
    daily = con.sql(
        "SELECT campaign_id, day, model, count(*) AS requests, sum(output_tokens) AS output_tokens "
        "FROM e JOIN s USING (account_id) WHERE campaign_id IS NOT NULL GROUP BY ALL"
    ).to_arrow_table()
    pq.write_table(daily, work / "campaign_daily.parquet")
    rel = pa.table(
        {
            "campaign_id": ["C1", "C1"][: 2 if "C1" in ids else 0],
            "model": ["atlas-4", "atlas-3"][: 2 if "C1" in ids else 0],
            "hours_to_first": pa.array([20.5, None][: 2 if "C1" in ids else 0], pa.float64()),
            "share_after": pa.array([0.48, 0.52][: 2 if "C1" in ids else 0], pa.float64()),
            "requests_after": pa.array([300, 300][: 2 if "C1" in ids else 0], pa.int64()),
        }
    )
    pq.write_table(rel, work / "campaign_releases.parquet")


def _ingest(run: FakeRun, e: pa.Table, work: Path) -> None:
    ing = work / "ingest"
    (ing / "events").mkdir(parents=True, exist_ok=True)
    pq.write_table(_events(e, run), ing / "events" / "part-00000.parquet")
    ids = [*run.hydra, *run.small, *run.benign, run.enterprise]
    tier = {a: ("edu" if i % 2 else "startup") for i, a in enumerate(run.hydra)}
    tier |= {a: "research" for a in run.small} | {run.enterprise: "enterprise"}
    domain = {a: "mailinator.com" for a in run.hydra} | {a: "uni.example" for a in run.small}
    n = len(ids)
    pq.write_table(
        pa.table(
            {
                "account_id": ids,
                "created_at": pa.array([T0 - 2 * DAY] * n, pa.timestamp("ms", tz="UTC")),
                "tier": [tier.get(a, "pro") for a in ids],
                "email_domain": [domain.get(a, "gmail.com") for a in ids],
                **{
                    f.name: pa.nulls(n, f.type)
                    for f in ACCOUNTS
                    if f.name not in ("account_id", "created_at", "tier", "email_domain")
                },
            },
            schema=ACCOUNTS,
        ),
        ing / "accounts.parquet",
    )
    pq.write_table(
        pa.table(
            {"model": ["atlas-3", "atlas-4"], "released_at": [T0 - 200 * DAY, T0 + 7 * DAY]},
            schema=RELEASES,
        ),
        ing / "releases.parquet",
    )


def _summary(out: Path, n_events: int) -> None:
    summary = {
        "distillguard": "0.1.0",
        "inputs": {
            "events": ["/data/events.parquet"],
            "accounts": ["/data/accounts.parquet"],
            "releases": [],
            "ip_intel": [],
            "intel_bundles": [],
        },
        "ingest": {
            "sections": {
                "events": {
                    "read": n_events + 7,
                    "accepted": n_events,
                    "rejected": 5,
                    "duplicate": 2,
                    "by_reason": {"unparsable timestamp": 3, "invalid IP address": 2},
                },
            },
            "seconds": 0.4,
        },
        "thresholds": {"flag": 0.5},
        "counts": {"accounts": 0, "flagged": 0, "campaigns": 0},
        "timings_s": {
            "ingest": 0.4,
            "signals": 1.2,
            "fingerprints": 0.3,
            "links": 0.5,
            "clusters": 0.1,
            "scoring": 0.05,
            "campaigns": 0.2,
        },
        "engine": "duckdb",
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))


def build_run_dir(
    out: Path,
    *,
    n_hydra: int = 24,
    n_small: int = 4,
    n_benign: int = 40,
    with_campaigns: bool = True,
    seed: int = 5,
) -> FakeRun:
    """Write every file of a `detect --out` directory under `out`."""
    rng = np.random.default_rng(seed)
    hydra, small, benign = _accounts(n_hydra, n_small, n_benign)
    run = FakeRun(
        path=out,
        hydra=hydra,
        small=small,
        benign=benign,
        enterprise="ent-000",
        proxy_ips=[f"203.0.113.{i}" for i in range(1, 31)],
        hydra_tpl=7_777_777_777,
    )
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    e = _enriched(rng, run, with_campaigns)
    pq.write_table(e, work / "enriched.parquet")
    scores = _scores(run, with_campaigns)
    pq.write_table(scores, work / "scores.parquet")
    pq.write_table(_fingerprints(e, scores, run), work / "fingerprints.parquet")
    pq.write_table(_edges(run), work / "edges.parquet")
    pq.write_table(pa.table({"cluster": [0, 1], "size": [25.0, 4.0]}), work / "clusters.parquet")
    _contract_outputs(scores, e, work, out)
    _ingest(run, e, work)
    _summary(out, e.num_rows)
    return run
