"""Tiny contract inputs (events, accounts, releases, IP intelligence) with one obvious hydra.

Used to run the real `detect` pipeline in the STIX round-trip test, independent of the simulator.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from distillguard.contract import ACCOUNTS, EVENTS, RELEASES

DAY = 86_400_000
T0 = 1_769_990_400_000  # 2026-02-02T00:00:00Z
PROXY_NET = "203.0.113"  # TEST-NET-3, listed as a proxy ASN in the IP intelligence
PROXY_ASN = 64500
ATTACK_TEMPLATE = (
    "You are a world-class expert. Think step by step and write out your full chain of "
    "reasoning before the final answer. Task #{i}: {q} Return the reasoning and the answer in "
    "JSON with keys 'reasoning' and 'answer'."
)
QUESTIONS = (
    "prove that the sum of two even integers is even",
    "write a python function that merges two sorted lists",
    "solve x^2 - 5x + 6 = 0",
    "explain how a hash map handles collisions",
    "implement binary search in rust",
    "compute the derivative of sin(x) * x^2",
)
CHAT = (
    "what should I cook tonight with rice and beans",
    "help me write a birthday note for my sister",
    "is it going to be hard to learn the guitar at 40",
    "summarise the plot of hamlet in three lines",
    "recommend a good sci-fi book",
    "how do I fix a squeaky door hinge",
)


@dataclass
class SyntheticInputs:
    events: Path
    accounts: Path
    releases: Path
    ip_intel: Path
    attackers: list[str]
    benign: list[str]


def _attacker_events(rng: np.random.Generator, ids: list[str], per: int) -> dict[str, list]:
    n = len(ids) * per
    acc = np.repeat(ids, per)
    ts = (
        T0 + np.tile(np.sort(rng.integers(0, 10 * DAY, per)), len(ids)) + rng.integers(0, 60_000, n)
    )
    ips = [f"{PROXY_NET}.{int(x)}" for x in rng.integers(1, 40, n)]
    prompts = [ATTACK_TEMPLATE.format(i=i, q=QUESTIONS[i % len(QUESTIONS)]) for i in range(n)]
    late = ts > T0 + 6 * DAY  # after the release of atlas-4 most traffic moves to it
    model = np.where(late & (rng.random(n) < 0.8), "atlas-4", "atlas-3")
    return {
        "account_id": acc.tolist(),
        "timestamp": ts.tolist(),
        "client_ip": ips,
        "user_agent": ["python-httpx/0.27"] * n,
        "model": model.tolist(),
        "system": ["You are a dataset generator. Always answer with maximal detail."] * n,
        "prompt": prompts,
        "output_tokens": rng.integers(2000, 6000, n).tolist(),
        "max_tokens": [32000] * n,
        "thinking_budget": [16000] * n,
    }


def _benign_events(rng: np.random.Generator, ids: list[str], per: int) -> dict[str, list]:
    n = len(ids) * per
    acc = np.repeat(ids, per)
    ts = T0 + rng.integers(0, 14 * DAY, n)
    own_ip = {a: f"198.51.100.{i + 1}" for i, a in enumerate(ids)}
    return {
        "account_id": acc.tolist(),
        "timestamp": ts.tolist(),
        "client_ip": [own_ip[a] for a in acc],
        "user_agent": ["Mozilla/5.0"] * n,
        "model": rng.choice(["atlas-3", "atlas-3-mini"], n).tolist(),
        "system": [None] * n,
        "prompt": [f"{CHAT[int(k) % len(CHAT)]} ({int(k)})" for k in rng.integers(0, 10_000, n)],
        "output_tokens": rng.integers(50, 600, n).tolist(),
        "max_tokens": [1024] * n,
        "thinking_budget": [0] * n,
    }


def _events_table(parts: list[dict[str, list]]) -> pa.Table:
    cols: dict[str, list] = {k: [] for k in parts[0]}
    for p in parts:
        for k, v in p.items():
            cols[k].extend(v)
    n = len(cols["account_id"])
    cols["request_id"] = [f"r{i}" for i in range(n)]
    cols["input_tokens"] = [120] * n
    cols["status"] = ["ok"] * n
    data = {f.name: cols.get(f.name, [None] * n) for f in EVENTS}
    return pa.table(data, schema=EVENTS)


def write_inputs(
    out: Path, attackers: int = 12, benign: int = 30, seed: int = 3
) -> SyntheticInputs:
    """Write events/accounts/releases/ip_intel under `out`; attackers share a proxy pool."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    att = [f"hx-{i:03d}" for i in range(attackers)]
    ben = [f"user-{i:03d}" for i in range(benign)]
    events = _events_table([_attacker_events(rng, att, 40), _benign_events(rng, ben, 15)])
    pq.write_table(events, out / "events.parquet")
    created = [T0 - 2 * DAY] * attackers + [T0 - 400 * DAY] * benign
    tiers = ["edu", "startup"] * (attackers // 2) + ["free"] * (attackers % 2) + ["pro"] * benign
    domains = ["mailinator.com"] * attackers + ["gmail.com"] * benign
    pq.write_table(
        pa.table(
            {
                "account_id": att + ben,
                "created_at": created,
                "tier": tiers,
                "email_domain": domains,
                "payment_fingerprint": ["pay-x"] * attackers + [f"pay-{i}" for i in range(benign)],
                "country": ["US"] * (attackers + benign),
                "org_id": [None] * (attackers + benign),
                "signup_ip": [None] * (attackers + benign),
                "email": [None] * (attackers + benign),
                "device_fingerprint": ["dev-x"] * attackers + [f"d{i}" for i in range(benign)],
            },
            schema=ACCOUNTS,
        ),
        out / "accounts.parquet",
    )
    pq.write_table(
        pa.table(
            {"model": ["atlas-3", "atlas-4"], "released_at": [T0 - 200 * DAY, T0 + 6 * DAY]},
            schema=RELEASES,
        ),
        out / "releases.parquet",
    )
    with (out / "ip_intel.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["cidr", "asn", "as_org", "kind"])
        w.writerow([f"{PROXY_NET}.0/24", PROXY_ASN, "Example Proxy Networks", "proxy"])
        w.writerow(["198.51.100.0/24", 64501, "Example Residential ISP", "residential"])
    return SyntheticInputs(
        events=out / "events.parquet",
        accounts=out / "accounts.parquet",
        releases=out / "releases.parquet",
        ip_intel=out / "ip_intel.csv",
        attackers=att,
        benign=ben,
    )
