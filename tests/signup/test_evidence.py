"""Each kind of sign-up evidence: fires on a true positive, stays quiet on a look-alike negative."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from distillguard.signup.decide import check_signups
from distillguard.signup.features import email_columns, lookalike_of
from distillguard.signup.known import HISTORY_SCHEMA, KnownState
from distillguard.signup.policy import SignupPolicy

from .helpers import (
    DAY,
    INTEL,
    MINUTE,
    T0,
    history_row,
    known_state,
    signups,
    traffic_row,
)

CAMPAIGN = {f"bad{i}": "C1" for i in range(4)}


def judge(known: KnownState, *rows: dict[str, Any]) -> list[dict[str, Any]]:
    return check_signups(signups(*rows), known, SignupPolicy(), INTEL).to_pylist()


def evidence_of(known: KnownState, **row: Any) -> list[str]:
    return judge(known, {"account_id": "new", **row})[0]["evidence"]


def empty() -> KnownState:
    return known_state({}, [])


def test_payment_shared_with_flagged_accounts() -> None:
    hist = [history_row(a, payment="pm_burned") for a in CAMPAIGN]
    # a company card: one falsely flagged holder among many colleagues
    hist += [history_row("odd", payment="pm_company")]
    hist += [history_row(f"colleague{i}", payment="pm_company") for i in range(6)]
    known = known_state({**CAMPAIGN, "odd": "C9"}, hist)
    assert "payment" in evidence_of(known, payment_fingerprint="pm_burned")
    assert "payment" not in evidence_of(known, payment_fingerprint="pm_company")
    reason = judge(known, {"account_id": "n", "payment_fingerprint": "pm_burned"})[0]["reasons"]
    assert any("payment instrument already used by 4 flagged" in r and "C1" in r for r in reason)


def test_holders_that_never_sent_a_request_are_unknown_not_innocent() -> None:
    # the rest of the sign-up batch: same card, no traffic yet (no verdict row)
    hist = [history_row(a, payment="pm_batch") for a in CAMPAIGN]
    hist += [history_row(f"unused{i}", payment="pm_batch") for i in range(10)]
    verdicts = pa.table(
        {"account_id": list(CAMPAIGN), "campaign_id": ["C1"] * 4, "flagged": [True] * 4}
    )
    known = KnownState.from_tables(
        verdicts, pa.Table.from_pylist(hist, schema=HISTORY_SCHEMA), None, SignupPolicy()
    )
    assert "payment" in evidence_of(known, payment_fingerprint="pm_batch")


def test_device_seen_on_flagged_accounts() -> None:
    hist = [history_row(a, device="dev_farm") for a in CAMPAIGN]
    hist += [history_row("odd", device="dev_family")]
    hist += [history_row(f"kid{i}", device="dev_family") for i in range(3)]
    known = known_state({**CAMPAIGN, "odd": "C9"}, hist)
    assert "device" in evidence_of(known, device_fingerprint="dev_farm")
    assert "device" not in evidence_of(known, device_fingerprint="dev_family")


def test_signup_ip_used_by_a_campaign() -> None:
    traffic = [traffic_row(a, "203.0.113.7", 50) for a in CAMPAIGN]
    # an office NAT: one flagged account among many ordinary users
    traffic += [traffic_row("bad0", "198.51.100.9", 20)]
    traffic += [traffic_row(f"staff{i}", "198.51.100.9", 30) for i in range(5)]
    known = known_state(CAMPAIGN, [], traffic)
    assert "ip" in evidence_of(known, signup_ip="203.0.113.7")
    assert "ip" not in evidence_of(known, signup_ip="198.51.100.9")


def test_signup_subnet_of_a_campaign() -> None:
    traffic = [traffic_row(a, f"203.0.113.{10 + i}", 40) for i, a in enumerate(CAMPAIGN)]
    traffic += [traffic_row("bad0", "100.64.1.5", 5)]
    traffic += [traffic_row(f"home{i}", f"100.64.1.{20 + i}", 40) for i in range(5)]
    known = known_state(CAMPAIGN, [], traffic)
    assert "subnet" in evidence_of(known, signup_ip="203.0.113.99")
    assert "subnet" not in evidence_of(known, signup_ip="100.64.1.99")


def test_proxy_pool_of_a_campaign_but_never_a_home_isp() -> None:
    # the campaign rents a hosting network (AS64500) and also rides a home ISP (AS64502)
    traffic = [traffic_row(a, f"203.0.113.{10 + i}", 40) for i, a in enumerate(CAMPAIGN)]
    traffic += [traffic_row(a, f"100.64.1.{10 + i}", 40) for i, a in enumerate(CAMPAIGN)]
    traffic += [traffic_row("api_app", "198.51.100.3", 400)]
    known = known_state(CAMPAIGN, [], traffic)
    assert known.pool["key"].to_pylist() == ["AS64500"]
    # another /24 of the campaign's hosting network: only the pool links it
    assert evidence_of(known, signup_ip="203.0.114.5") == ["pool"]
    # another /24 of the home ISP: everybody's ISP, never a campaign's pool
    assert evidence_of(known, signup_ip="100.64.9.9") == []
    assert evidence_of(known, signup_ip="198.51.100.77") == []


def test_templated_email_names_in_a_series() -> None:
    earlier = [
        {"account_id": f"s{i}", "email": f"devbuild{48213 + i * 7}@mailbox.test",
         "created_at": T0 - (3 - i) * 60 * MINUTE}
        for i in range(3)
    ]  # fmt: skip
    rows = judge(
        empty(),
        *earlier,
        {"account_id": "new", "email": "devbuild90001@other.test", "created_at": T0},
        # people: same first names, numbered handles with two digits are not a series
        {"account_id": "p1", "email": "james.smith@example.com", "created_at": T0 - 3 * MINUTE},
        {"account_id": "p2", "email": "james.smith@example.org", "created_at": T0 - 2 * MINUTE},
        {"account_id": "p3", "email": "james.smith@example.net", "created_at": T0},
        {"account_id": "q1", "email": "annalee42@example.com", "created_at": T0 - 2 * MINUTE},
        {"account_id": "q2", "email": "annalee17@example.com", "created_at": T0 - MINUTE},
        {"account_id": "q3", "email": "annalee99@example.com", "created_at": T0},
    )
    by_id = {r["account_id"]: r for r in rows}
    assert "naming" in by_id["new"]["evidence"]
    assert "naming" not in by_id["s0"]["evidence"]  # causal: nothing before the first one
    for person in ("p3", "q3"):
        assert "naming" not in by_id[person]["evidence"]


def _pattern_of(email: str) -> str:
    _, pattern = email_columns(pa.array([email]), pa.nulls(1, pa.string()))
    return pattern[0].as_py()


def test_name_pattern_of_flagged_accounts() -> None:
    series = _pattern_of("devbuild48213@mailbox.test")
    assert series == _pattern_of("DevBuild-771@other.test")  # stem, not digits or domain
    assert _pattern_of("james.smith@example.com") is None  # people's names carry no pattern
    hist = [history_row(a, pattern=series) for a in CAMPAIGN]
    # a pattern one flagged account shares with many ordinary users says nothing
    hist += [history_row("odd", pattern=_pattern_of("teamlead123@x.test"))]
    hist += [history_row(f"u{i}", pattern=_pattern_of("teamlead456@x.test")) for i in range(4)]
    known = known_state({**CAMPAIGN, "odd": "C9"}, hist)
    [d] = judge(known, {"account_id": "n", "email": "devbuild90001@gmail.com", "tier": "edu"})
    assert "pattern" in d["evidence"] and d["decision"] == "require_verification"
    assert any("pattern of 4 flagged accounts of C1" in r for r in d["reasons"])
    assert "pattern" not in evidence_of(known, email="teamlead999@x.test")
    assert "pattern" not in evidence_of(known, email="dev.build@gmail.com")


def test_disposable_domain() -> None:
    assert "disposable" in evidence_of(empty(), email="x@mailinator.com")
    assert "disposable" not in evidence_of(empty(), email="x@gmail.com")


def test_lookalike_domain() -> None:
    assert "lookalike" in evidence_of(empty(), email="x@gmaill.com")
    assert lookalike_of("outlook-mail.net") == "outlook"
    assert lookalike_of("protonmai1.com") == "protonmail"
    for real in ("gmail.com", "email.com", "yahoo.co.jp", "stanford.edu", "northwind.com"):
        assert lookalike_of(real) is None, real
    assert "lookalike" not in evidence_of(empty(), email="x@gmail.com")


def test_domain_of_flagged_accounts_but_never_big_webmail() -> None:
    hist = [history_row(a, domain="devmail.test") for a in CAMPAIGN]
    hist += [history_row(a, domain="gmail.com") for a in CAMPAIGN]
    known = known_state(CAMPAIGN, hist)
    assert "domain" in evidence_of(known, email="zz@devmail.test")
    assert "domain" not in evidence_of(known, email="zz@gmail.com")


def test_burst_of_signups_from_one_subnet_within_minutes() -> None:
    burst = [
        {"account_id": f"b{i}", "signup_ip": f"100.64.1.{i + 1}", "created_at": T0 + i * MINUTE}
        for i in range(4)
    ]
    spread = [
        {"account_id": f"s{i}", "signup_ip": f"100.64.1.{50 + i}", "created_at": T0 + i * DAY}
        for i in range(1, 5)
    ]
    rows = {r["account_id"]: r for r in judge(empty(), *burst, *spread)}
    assert "burst" in rows["b3"]["evidence"]
    assert any("3 other sign-up(s) from 100.64.1.0/24" in r for r in rows["b3"]["reasons"])
    assert "burst" not in rows["b1"]["evidence"]
    assert "burst" not in rows["s4"]["evidence"]


def test_signup_path() -> None:
    assert "programme" in evidence_of(empty(), tier="edu")
    assert "programme" not in evidence_of(empty(), tier="pro")


@pytest.mark.parametrize(
    ("tier", "org", "check"),
    [
        ("edu", None, "institutional_email"),
        ("research", None, "institutional_email"),
        ("startup", None, "organisation"),
        ("free", None, "payment"),
        ("free", "org_1", "organisation"),
    ],
)
def test_verification_names_the_check(tier: str, org: str | None, check: str) -> None:
    traffic = [traffic_row(a, "203.0.113.7", 50) for a in CAMPAIGN]
    known = known_state(CAMPAIGN, [], traffic)
    [d] = judge(known, {"account_id": "n", "signup_ip": "203.0.113.7", "tier": tier,
                        "org_id": org})  # fmt: skip
    assert d["decision"] == "require_verification"
    assert d["verification"] == check
    assert d["reasons"][0].startswith("require ") and "verification" in d["reasons"][0]
    assert d["campaign_id"] == "C1"


def test_deny_needs_an_identity_link_and_corroboration() -> None:
    hist = [history_row(a, payment="pm_burned", device="dev_farm") for a in CAMPAIGN]
    traffic = [traffic_row(a, "203.0.113.7", 50) for a in CAMPAIGN]
    known = known_state(CAMPAIGN, hist, traffic)
    [deny] = judge(
        known,
        {"account_id": "n", "payment_fingerprint": "pm_burned", "device_fingerprint": "dev_farm",
         "signup_ip": "203.0.113.7", "email": "q@gmaill.com"},
    )  # fmt: skip
    assert deny["decision"] == "deny" and deny["verification"] is None
    assert deny["reasons"][0].startswith("deny: score")
    # strong network and e-mail evidence but no identity link: verification, never deny
    [no_id] = judge(
        known,
        {"account_id": "m", "signup_ip": "203.0.113.7", "email": "devbuild12345@gmaill.com",
         "tier": "edu"},
    )  # fmt: skip
    assert no_id["decision"] == "require_verification"
    [clean] = judge(known, {"account_id": "c", "signup_ip": "100.64.1.3", "email": "a@b.org"})
    assert clean["decision"] == "allow" and clean["evidence"] == []
    assert clean["reasons"] == ["allow: score 0.0 < 0.7; no link to a known campaign"]


def test_an_account_never_matches_itself() -> None:
    hist = [history_row(a, payment="pm_burned") for a in CAMPAIGN]
    verdicts = pa.table(
        {"account_id": list(CAMPAIGN), "campaign_id": ["C1"] * 4, "flagged": [True] * 4}
    )
    known = KnownState.from_tables(
        verdicts,
        pa.Table.from_pylist(hist, schema=HISTORY_SCHEMA),
        None,
        SignupPolicy(identity_flagged_share=1.0),
        exclude=pa.array(["bad0", "bad1", "bad2", "bad3"]),
    )
    assert known.payment.num_rows == 0
