"""Build small enriched-event tables (the narrow table `pipeline.enrich` writes) for stage tests."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

DAY = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def enriched(
    account_ids: list[str],
    requests_each: int,
    *,
    seed: int = 0,
    ips: list[str] | None = None,
    subnets: list[str] | None = None,
    ip_kind: str = "residential",
    templates: list[int] | None = None,
    sys_id: int | None = None,
    cot: float = 0.0,
    days: int = 10,
    synced: bool = False,
) -> pa.Table:
    """`requests_each` requests per account; shared attributes drawn from the given pools."""
    rng = np.random.default_rng(seed)
    n = len(account_ids) * requests_each
    acc = np.repeat(account_ids, requests_each)
    if synced:  # everyone fires on the same schedule
        base = np.tile(np.sort(rng.integers(0, days * DAY, requests_each)), len(account_ids))
        ts = T0 + base + rng.integers(0, 60_000, n)
    else:
        ts = T0 + rng.integers(0, days * DAY, n)
    ip_pool = ips or [f"10.{i % 250}.{i // 250}.{7}" for i in range(len(account_ids))]
    # Without a shared pool each account has its own address.
    ip = np.repeat(ip_pool, requests_each) if ips is None else rng.choice(ip_pool, n)
    sub = (
        rng.choice(subnets, n) if subnets else np.array([s.rsplit(".", 1)[0] + ".0/24" for s in ip])
    )
    tpl = rng.choice(templates, n) if templates else rng.integers(1, 2**62, n)
    return pa.table(
        {
            "request_id": [f"{a}-{i}" for i, a in enumerate(acc)],
            "account_id": acc,
            "client_ip": ip,
            "user_agent": ["sdk/1.0"] * n,
            "model": ["m1"] * n,
            "input_tokens": rng.integers(50, 500, n),
            "output_tokens": rng.integers(100, 900, n),
            "max_tokens": pa.array([4096] * n, pa.int64()),
            "thinking_budget": pa.array([0] * n, pa.int64()),
            "tools": pa.array([0] * n, pa.int32()),
            "tool_calls": pa.array([0] * n, pa.int32()),
            "images": pa.array([0] * n, pa.int32()),
            "conversation_id": pa.array([None] * n, pa.string()),
            "turn": pa.array([0] * n, pa.int32()),
            "status": ["ok"] * n,
            "ts_ms": ts,
            "day": ts // DAY,
            "hour": (ts % DAY) // 3_600_000,
            "weekday": ((ts // DAY) + 3) % 7,
            "tpl_id": tpl.astype(np.int64),
            "tpl_prefix": tpl.astype(np.int64),
            "tpl_suffix": tpl.astype(np.int64),
            "tpl_bands": pa.array([[int(t) ^ 0x5BD1E995] for t in tpl], pa.list_(pa.int64())),
            "sent_ids": pa.array([[int(t) ^ 0x1F2E3D] for t in tpl], pa.list_(pa.int64())),
            "sys_id": pa.array([sys_id] * n, pa.int64()),
            "cap_mask": pa.array([1] * n, pa.int32()),
            "capability": ["coding"] * n,
            "cot": rng.random(n) < cot,
            "rubric": np.zeros(n, bool),
            "censor": np.zeros(n, bool),
            "train_shaped": np.zeros(n, bool),
            "max_out": np.zeros(n, bool),
            "thinking": np.zeros(n, bool),
            "subnet": sub,
            "ip_kind": [ip_kind] * n,
            "asn": ["AS1"] * n,
        }
    )
