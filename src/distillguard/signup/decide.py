"""Sign-up decisions: allow, require verification (naming the check) or deny, with reasons.

Scores and decisions are NumPy over all sign-ups at once; reason sentences are built column-wise
(one string array per kind of evidence, masked, then gathered into lists).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from distillguard.signup.features import evidence, evidence_matrix, prepare_new
from distillguard.signup.known import KnownState
from distillguard.signup.policy import CHECK_NAMES, EVIDENCE, IDENTITY, SignupPolicy

DECISIONS = ("allow", "require_verification", "deny")
DECISION_SCHEMA = pa.schema(
    [
        ("account_id", pa.string()),
        ("decision", pa.string()),
        ("verification", pa.string()),
        ("score", pa.float64()),
        ("campaign_id", pa.string()),
        ("tier", pa.string()),
        ("evidence", pa.list_(pa.string())),
        ("reasons", pa.list_(pa.string())),
    ]
)
# Campaign named in the decision: from the strongest link that has one.
CAMPAIGN_COLUMNS = (
    "payment_campaign",
    "device_campaign",
    "ip_campaign",
    "org_campaign",
    "subnet_campaign",
    "pool_campaign",
    "domain_campaign",
    "pattern_campaign",
)


def _s(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    c = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    return pc.fill_null(c.cast(pa.string()), "?")


def _pct(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    values = np.round(np.nan_to_num(col.to_numpy(zero_copy_only=False).astype(float)) * 100)
    return pa.array(values.astype(np.int64).astype(str).astype(object), pa.string())


def _join(*parts: pa.Array | str) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def reason_columns(t: pa.Table, p: SignupPolicy) -> dict[str, pa.Array]:
    """One readable sentence per kind of evidence, for every row (used where the flag is set)."""
    return {
        "payment": _join(
            "payment instrument already used by ", _s(t["payment_n"]),
            " flagged account(s) of ", _s(t["payment_campaign"]),
        ),
        "device": _join(
            "device fingerprint seen on ", _s(t["device_n"]),
            " flagged account(s) of ", _s(t["device_campaign"]),
        ),
        "ip": _join(
            "sign-up IP ", _s(t["signup_ip"]), " is an address of ", _s(t["ip_campaign"]),
            " (", _pct(t["ip_share"]), "% of its traffic from flagged accounts)",
        ),
        "org": _join(
            "organisation ", _s(t["org_id"]), ": ", _s(t["org_n"]), " of its ", _s(t["org_seen"]),
            " active member(s) are flagged accounts of ", _s(t["org_campaign"]),
        ),
        "subnet": _join(
            "sign-up subnet ", _s(t["subnet"]), " is address space of ", _s(t["subnet_campaign"]),
            " (", _pct(t["subnet_share"]), "% of its traffic from flagged accounts)",
        ),
        "pool": _join(
            "sign-up network ", _s(t["asn"]), " (", _s(t["ip_kind"]), ") is the proxy pool of ",
            _s(t["pool_campaign"]), " (", _pct(t["pool_share"]),
            "% of its traffic from flagged accounts)",
        ),
        "domain": _join(
            "e-mail domain ", _s(t["email_domain"]), " is used by ", _s(t["domain_n"]),
            " flagged accounts of ", _s(t["domain_campaign"]),
        ),
        "pattern": _join(
            "templated e-mail name follows the pattern of ", _s(t["pattern_n"]),
            " flagged accounts of ", _s(t["pattern_campaign"]),
        ),
        "lookalike": _join(
            "look-alike e-mail domain ", _s(t["email_domain"]), " (imitates ",
            _s(t["lookalike_brand"]), ")",
        ),
        "disposable": _join("disposable e-mail domain ", _s(t["email_domain"])),
        "naming": _join(
            "templated e-mail name: ", _s(t["naming_k"]), " other sign-up(s) in the previous ",
            f"{p.naming_hours:g} h follow the same name pattern",
        ),
        "burst": _join(
            _s(t["burst_k"]), " other sign-up(s) from ", _s(t["burst_key"]),
            f" in the previous {p.burst_minutes:g} min",
        ),
        "programme": _join("signed up through the ", _s(t["tier"]), " programme"),
        "proxy_exit": _join(
            "sign-up IP ", _s(t["signup_ip"]), " is a listed ", _s(t["ip_kind"]),
            " exit (anonymising relay)",
        ),
        "card_reuse": _join(
            "payment instrument already pays for ", _s(t["card_k"]),
            " other account(s) outside this account's organisation",
        ),
        "unbacked": _join(
            "the ", _s(t["tier"]), " programme's eligibility is not shown by the e-mail domain ",
            _s(t["email_domain"]), " (webmail, disposable or look-alike)",
        ),
    }  # fmt: skip


def _lists(matrix: np.ndarray, columns: list[np.ndarray]) -> pa.Array:
    """Row-wise lists of the strings in `columns` where `matrix` is True, in column order."""
    n = matrix.shape[0]
    if not columns:
        return pa.array([[] for _ in range(n)], pa.list_(pa.string()))
    grid = np.column_stack(columns)
    values = grid[matrix]
    offsets = np.concatenate([[0], np.cumsum(matrix.sum(axis=1))]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, pa.string()))


def _checks(t: pa.Table, p: SignupPolicy) -> np.ndarray:
    tiers = t["tier"].to_numpy(zero_copy_only=False).astype(object)
    default = p.checks.get("unknown", "payment")
    check = np.array([p.checks.get(x, default) for x in np.unique(tiers)], dtype=object)
    out = check[np.searchsorted(np.unique(tiers), tiers)] if len(tiers) else tiers
    # an account that names an organisation on a consumer path proves the organisation instead
    has_org = t["org_id"].is_valid().to_numpy(zero_copy_only=False)
    return np.where(has_org & (out == "payment"), "organisation", out)


def decide(t: pa.Table, p: SignupPolicy) -> pa.Table:
    """Evidence table (features.evidence) -> DECISION_SCHEMA rows, in the same order."""
    n = t.num_rows
    matrix = evidence_matrix(t, EVIDENCE)
    weights = np.array([p.weights[k] for k in EVIDENCE])
    score = np.round(matrix.astype(float) @ weights, 3) if n else np.zeros(0)
    kinds = matrix.sum(axis=1)
    identity = matrix[:, [EVIDENCE.index(k) for k in IDENTITY]].any(axis=1)
    deny = (
        (score >= p.deny_score)
        & (kinds >= p.deny_min_evidence)
        & (identity | (not p.deny_requires_identity))
    )
    verify = ~deny & (score >= p.verify_score)
    decision = np.where(deny, "deny", np.where(verify, "require_verification", "allow"))
    check = _checks(t, p) if n else np.zeros(0, object)
    check_name = np.array([CHECK_NAMES[c] for c in check], dtype=object) if n else check
    s = score.astype(str).astype(object)
    head = np.where(
        deny,
        "deny: score " + s + f" >= {p.deny_score:g} with " + kinds.astype(str).astype(object)
        + " kinds of evidence including a payment or device link to a campaign",
        np.where(
            verify,
            "require " + check_name + ": score " + s + f" >= {p.verify_score:g}",
            "allow: score " + s + f" < {p.verify_score:g}"
            + np.where(kinds == 0, "; no link to a known campaign", ""),
        ),
    )  # fmt: skip
    sentences = reason_columns(t, p)
    cols = [sentences[k].to_numpy(zero_copy_only=False).astype(object) for k in EVIDENCE]
    reasons_matrix = np.column_stack([np.ones(n, bool), matrix])
    reasons = _lists(reasons_matrix, [head.astype(object), *cols])
    names = np.array(EVIDENCE, dtype=object)
    ev = _lists(matrix, [np.full(n, k, dtype=object) for k in names])
    campaign = pc.coalesce(*[t[c].combine_chunks() for c in CAMPAIGN_COLUMNS])
    return pa.table(
        {
            "account_id": t["account_id"],
            "decision": pa.array(decision.astype(object), pa.string()),
            "verification": pa.array(np.where(verify, check, None).astype(object), pa.string()),
            "score": pa.array(score, pa.float64()),
            "campaign_id": campaign,
            "tier": t["tier"],
            "evidence": ev,
            "reasons": reasons,
        },
        schema=DECISION_SCHEMA,
    )


def check_signups(
    new: pa.Table, known: KnownState, policy: SignupPolicy, intel: pa.Table | None = None
) -> pa.Table:
    """Judge new sign-ups (contract ACCOUNTS rows, e-mail included) against `known`."""
    prepared = prepare_new(new, intel)
    return decide(evidence(prepared, known, policy), policy)
