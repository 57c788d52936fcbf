"""Small hand-made known states and sign-ups for the sign-up check tests."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from distillguard import contract
from distillguard.signup.known import HISTORY_SCHEMA, TRAFFIC_SCHEMA, KnownState
from distillguard.signup.policy import SignupPolicy

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MINUTE = 60_000
DAY = 86_400_000
# What a provider knows about these ranges (contract section 4).
INTEL = pa.table(
    {
        "cidr": ["203.0.112.0/22", "198.51.100.0/24", "100.64.0.0/16"],
        "asn": [64500, 64501, 64502],
        "as_org": ["Example Hosting", "Other Hosting", "Home ISP"],
        "kind": ["datacenter", "datacenter", "residential"],
    },
    schema=contract.IP_INTEL,
)
ASN_OF = {"203.0.113": "AS64500", "203.0.114": "AS64500", "198.51.100": "AS64501"}
ASN_OF |= {"100.64.1": "AS64502", "100.64.9": "AS64502"}
KIND_OF = {k: "residential" if v == "AS64502" else "datacenter" for k, v in ASN_OF.items()}


def history_row(account: str, **kw: Any) -> dict[str, Any]:
    ip = kw.get("signup_ip")
    prefix = ip.rsplit(".", 1)[0] if ip else None
    return {
        "account_id": account,
        "created_ms": kw.get("created_ms", T0 - 30 * DAY),
        "signup_ip": ip,
        "subnet": f"{prefix}.0/24" if prefix else None,
        "asn": ASN_OF.get(prefix or ""),
        "ip_kind": KIND_OF.get(prefix or ""),
        "payment_fingerprint": kw.get("payment"),
        "device_fingerprint": kw.get("device"),
        "email_domain": kw.get("domain"),
        "name_pattern": kw.get("pattern"),
        "org_id": kw.get("org"),
    }


def traffic_row(account: str, ip: str, requests: int) -> dict[str, Any]:
    prefix = ip.rsplit(".", 1)[0]
    return {
        "account_id": account,
        "client_ip": ip,
        "subnet": f"{prefix}.0/24",
        "asn": ASN_OF.get(prefix, "unknown"),
        "ip_kind": KIND_OF.get(prefix, "unknown"),
        "requests": requests,
    }


def known_state(
    flagged: dict[str, str],
    history: list[dict[str, Any]],
    traffic: list[dict[str, Any]] | None = None,
    policy: SignupPolicy | None = None,
) -> KnownState:
    """`flagged`: account -> campaign id. Accounts in history but not in `flagged` are benign."""
    everyone = sorted({h["account_id"] for h in history} | set(flagged))
    verdicts = pa.table(
        {
            "account_id": everyone,
            "campaign_id": [flagged.get(a) for a in everyone],
            "flagged": [a in flagged for a in everyone],
        }
    )
    hist = pa.Table.from_pylist(history, schema=HISTORY_SCHEMA)
    traf = pa.Table.from_pylist(traffic, schema=TRAFFIC_SCHEMA) if traffic else None
    return KnownState.from_tables(verdicts, hist, traf, policy or SignupPolicy())


def signups(*rows: dict[str, Any]) -> pa.Table:
    """Contract accounts rows; `created_at` in epoch ms (default T0)."""
    full = []
    for r in rows:
        row = {f: None for f in contract.ACCOUNTS.names}
        row.update(r)
        row["created_at"] = row["created_at"] if row["created_at"] is not None else T0
        full.append(row)
    table = pa.Table.from_pylist(
        full,
        schema=contract.ACCOUNTS.set(
            contract.ACCOUNTS.get_field_index("created_at"), pa.field("created_at", pa.int64())
        ),
    )
    i = table.schema.get_field_index("created_at")
    return table.set_column(i, "created_at", table["created_at"].cast(contract.TIMESTAMP))
