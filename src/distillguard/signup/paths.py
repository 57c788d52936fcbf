"""Per sign-up path (tier): the accounts campaigns created through it and the verification that
would have stopped them. Feeds the "Sign-up paths" section of the HTML report.

"Would have stopped" is judged from the sign-up records the run holds, per check:
  * institutional e-mail: the account's domain is not an institution's (.edu, .ac.xx, .edu.xx or
    a listed university domain) - a webmail, disposable or look-alike address fails the check;
  * organisation: no organisation id, or an e-mail domain no organisation owns (webmail,
    disposable, look-alike);
  * payment: no payment instrument, or one shared with another campaign account (a card that
    pays for several throwaway accounts fails a one-card-one-account check).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from distillguard.ingest.ipintel import is_disposable_domain
from distillguard.report.rundir import RunDir
from distillguard.signup.features import lookalike_domains
from distillguard.signup.policy import CHECK_NAMES, WEBMAIL, SignupPolicy, load_signup_policy

INSTITUTIONAL = r"(\.edu|\.ac\.[a-z]{2}|\.edu\.[a-z]{2})$"
# universities outside .edu / .ac.xx (a real deployment would load a full list)
UNIVERSITY_DOMAINS = ("ethz.ch", "epfl.ch", "tum.de", "uni-heidelberg.de", "u-tokyo.ac.jp")


def _members(run: RunDir) -> pa.Table | None:
    if not run.has("signup", "account_id", "tier"):
        return None
    view = run.scores_view
    col = run.column_or
    return run.sql(
        f"""
        SELECT g.account_id, coalesce(lower(g.tier), 'unknown') AS tier,
               s.campaign_id IS NOT NULL AS in_campaign,
               lower({col("signup", "email_domain", "NULL::VARCHAR")}) AS domain,
               {col("signup", "org_id", "NULL::VARCHAR")} AS org_id,
               {col("signup", "payment_fingerprint", "NULL::VARCHAR")} AS payment
        FROM signup g LEFT JOIN {view} s USING (account_id)
        """
    )


def _fails(t: pa.Table, check: str) -> pa.Array:
    """Per campaign account: True when the named check would have failed it."""
    domain = t["domain"].combine_chunks()
    untrusted = pc.or_(
        pc.or_(is_disposable_domain(domain), pc.is_valid(lookalike_domains(domain))),
        pc.fill_null(pc.is_in(domain, value_set=pa.array(list(WEBMAIL))), False),
    )
    if check == "institutional_email":
        inst = pc.or_(
            pc.fill_null(pc.match_substring_regex(domain, INSTITUTIONAL), False),
            pc.fill_null(pc.is_in(domain, value_set=pa.array(UNIVERSITY_DOMAINS)), False),
        )
        return pc.invert(inst)
    if check == "organisation":
        return pc.or_(pc.is_null(t["org_id"]), untrusted)
    pay = t["payment"].combine_chunks()
    counts = pc.value_counts(pay.filter(pc.is_valid(pay)))
    shared = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
    return pc.or_(pc.is_null(pay), pc.fill_null(pc.is_in(pay, value_set=shared), False))


def signup_paths(run: RunDir, policy: SignupPolicy | None = None) -> list[dict[str, Any]]:
    """One row per tier that campaigns used, most campaign accounts first."""
    t = _members(run)
    if t is None or t.num_rows == 0:
        return []
    p = policy or load_signup_policy(None)
    in_campaign = t.filter(t["in_campaign"])
    total_campaign = in_campaign.num_rows
    rows = []
    for tier in sorted(set(in_campaign["tier"].to_pylist())):
        mine = in_campaign.filter(pc.equal(in_campaign["tier"], tier))
        everyone = int(pc.sum(pc.equal(t["tier"], tier)).as_py() or 0)
        check = p.checks.get(tier, p.checks.get("unknown", "payment"))
        stopped = int(pc.sum(_fails(mine, check)).as_py() or 0)
        rows.append(
            {
                "tier": tier,
                "campaign_accounts": mine.num_rows,
                "share_of_campaign": mine.num_rows / total_campaign if total_campaign else 0.0,
                "tier_accounts": everyone,
                "share_of_tier": mine.num_rows / everyone if everyone else 0.0,
                "check": CHECK_NAMES[check],
                "stopped": stopped,
                "why": _why(check),
            }
        )
    return sorted(rows, key=lambda r: -r["campaign_accounts"])


def _why(check: str) -> str:
    return {
        "institutional_email": "signed up without an institution's e-mail domain",
        "organisation": "had no organisation behind them or an e-mail domain no organisation owns",
        "payment": "paid with no card or with a card shared by several campaign accounts",
    }[check]
