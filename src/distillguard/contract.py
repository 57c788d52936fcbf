"""The data contract (../shared/spec/data-contract.md, v1) as Arrow schemas.

Every stage reads and writes these schemas, so a field is named and typed once, here.
The contract is additive-only: a new optional field may be added, nothing is removed.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

CONTRACT_VERSION = "1"

TIMESTAMP = pa.timestamp("ms", tz="UTC")

STATUSES = ("ok", "refused", "error", "rate_limited")
TIERS = ("free", "pro", "team", "enterprise", "edu", "startup", "research")
IP_KINDS = ("datacenter", "residential", "mobile", "vpn", "proxy", "tor")
CAPABILITIES = (
    "coding",
    "math",
    "reasoning",
    "tool_use",
    "agentic",
    "vision",
    "creative",
    "chitchat",
    "sensitive",
)


@dataclass(frozen=True)
class Field:
    """One contract field: its name, Arrow type and whether a record must carry it."""

    name: str
    type: pa.DataType
    required: bool = False
    non_negative: bool = False


# Section 1: events, one record per API request.
EVENT_FIELDS: tuple[Field, ...] = (
    Field("request_id", pa.string(), required=True),
    Field("timestamp", TIMESTAMP, required=True),
    Field("account_id", pa.string(), required=True),
    Field("api_key_id", pa.string()),
    Field("client_ip", pa.string(), required=True),
    Field("user_agent", pa.string()),
    Field("model", pa.string(), required=True),
    Field("system", pa.string()),
    Field("prompt", pa.string(), required=True),
    Field("response", pa.string()),
    Field("input_tokens", pa.int64(), required=True, non_negative=True),
    Field("output_tokens", pa.int64(), required=True, non_negative=True),
    Field("max_tokens", pa.int64()),
    Field("temperature", pa.float64()),
    Field("thinking_budget", pa.int64()),
    Field("tools", pa.int32()),
    Field("tool_calls", pa.int32()),
    Field("images", pa.int32()),
    Field("conversation_id", pa.string()),
    Field("turn", pa.int32()),
    Field("status", pa.string()),
)

# Section 2: accounts.
ACCOUNT_FIELDS: tuple[Field, ...] = (
    Field("account_id", pa.string(), required=True),
    Field("created_at", TIMESTAMP),
    Field("tier", pa.string()),
    Field("email_domain", pa.string()),
    Field("payment_fingerprint", pa.string()),
    Field("country", pa.string()),
    Field("org_id", pa.string()),
    Field("signup_ip", pa.string()),
    # Used in memory for naming-pattern features only; never written to any output.
    Field("email", pa.string()),
    Field("device_fingerprint", pa.string()),
)

# Section 3: model releases.
RELEASE_FIELDS: tuple[Field, ...] = (
    Field("model", pa.string(), required=True),
    Field("released_at", TIMESTAMP, required=True),
)

# Section 4: IP intelligence (CSV `cidr,asn,as_org,kind`).
IP_INTEL_FIELDS: tuple[Field, ...] = (
    Field("cidr", pa.string(), required=True),
    Field("asn", pa.int64()),
    Field("as_org", pa.string()),
    Field("kind", pa.string(), required=True),
)

# Section 5: ground truth written by the simulator.
LABEL_FIELDS: tuple[Field, ...] = (
    Field("account_id", pa.string(), required=True),
    Field("persona", pa.string(), required=True),
    Field("campaign_id", pa.string()),
)

# Section 6: detection output.
DETECTED_ACCOUNT_FIELDS: tuple[Field, ...] = (
    Field("account_id", pa.string(), required=True),
    Field("risk", pa.float64(), required=True),
    Field("flagged", pa.bool_(), required=True),
    Field("campaign_id", pa.string()),
    Field("reasons", pa.list_(pa.string()), required=True),
)

DETECTED_CAMPAIGN_FIELDS: tuple[Field, ...] = (
    Field("campaign_id", pa.string(), required=True),
    Field("accounts", pa.int64(), required=True),
    Field("requests", pa.int64(), required=True),
    Field("output_tokens", pa.int64(), required=True),
    Field("first_seen", TIMESTAMP, required=True),
    Field("last_seen", TIMESTAMP, required=True),
    Field("capabilities", pa.list_(pa.string()), required=True),
    Field("ips", pa.int64(), required=True),
    Field("asns", pa.int64(), required=True),
    Field("models", pa.list_(pa.string()), required=True),
)


def schema(fields: tuple[Field, ...]) -> pa.Schema:
    """The Arrow schema of a contract section."""
    return pa.schema([pa.field(f.name, f.type, nullable=not f.required) for f in fields])


EVENTS = schema(EVENT_FIELDS)
ACCOUNTS = schema(ACCOUNT_FIELDS)
RELEASES = schema(RELEASE_FIELDS)
IP_INTEL = schema(IP_INTEL_FIELDS)
LABELS = schema(LABEL_FIELDS)
DETECTED_ACCOUNTS = schema(DETECTED_ACCOUNT_FIELDS)
DETECTED_CAMPAIGNS = schema(DETECTED_CAMPAIGN_FIELDS)

# Fields that never leave memory (contract section 2: `email`).
PRIVATE_FIELDS = frozenset({"email"})

SECTIONS: dict[str, tuple[Field, ...]] = {
    "events": EVENT_FIELDS,
    "accounts": ACCOUNT_FIELDS,
    "releases": RELEASE_FIELDS,
    "ip_intel": IP_INTEL_FIELDS,
    "labels": LABEL_FIELDS,
}
