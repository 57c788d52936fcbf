"""Evidence added for careful operators (org links, anonymising exits, card reuse, programme
eligibility): each fires on a true positive and stays quiet on its look-alike negative."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from distillguard import contract
from distillguard.signup.decide import check_signups
from distillguard.signup.known import KnownState
from distillguard.signup.policy import SignupPolicy

from .helpers import DAY, INTEL, T0, history_row, known_state, signups, traffic_row

CAMPAIGN = {f"bad{i}": "C1" for i in range(4)}
# IP intel with a listed residential-proxy exit (/32 inside a home ISP block) and a Tor range
PROXY_INTEL = pa.concat_tables(
    [
        INTEL,
        pa.table(
            {
                "cidr": ["100.64.1.77/32", "192.0.2.0/24", "100.72.0.0/16"],
                "asn": [None, 64510, 64511],
                "as_org": ["residential proxy exit", "Tor", "Example VPN"],
                "kind": ["proxy", "tor", "vpn"],
            },
            schema=contract.IP_INTEL,
        ),
    ]
)


def judge(known: KnownState, *rows: dict[str, Any]) -> list[dict[str, Any]]:
    return check_signups(signups(*rows), known, SignupPolicy(), PROXY_INTEL).to_pylist()


def one(known: KnownState, **row: Any) -> dict[str, Any]:
    return judge(known, {"account_id": "new", **row})[0]


def test_organisation_of_flagged_accounts() -> None:
    hist = [history_row(a, org="org_front") for a in CAMPAIGN]
    # a real company: one falsely flagged employee among many colleagues
    hist += [history_row("odd", org="org_real")]
    hist += [history_row(f"staff{i}", org="org_real") for i in range(9)]
    known = known_state({**CAMPAIGN, "odd": "C9"}, hist)
    d = one(known, org_id="org_front", tier="team")
    assert "org" in d["evidence"] and d["decision"] == "require_verification"
    assert d["verification"] == "organisation" and d["campaign_id"] == "C1"
    assert any("4 of its 4 active member(s) are flagged accounts of C1" in r for r in d["reasons"])
    clean = one(known, org_id="org_real", tier="team")
    assert "org" not in clean["evidence"] and clean["decision"] == "allow"


def test_anonymising_exit_needs_corroboration() -> None:
    known = known_state({}, [])
    alone = one(known, signup_ip="100.64.1.77", tier="pro")
    assert alone["evidence"] == ["proxy_exit"] and alone["decision"] == "allow"
    assert any("is a listed proxy exit" in r for r in alone["reasons"])
    assert one(known, signup_ip="192.0.2.9")["evidence"] == ["proxy_exit"]
    # with a programme path it is enough to ask for the programme's check
    combined = one(known, signup_ip="100.64.1.77", tier="edu", email="li.wei@stanford.edu")
    assert combined["decision"] == "require_verification"
    assert combined["verification"] == "institutional_email"
    # commercial VPNs and home addresses next to the listed exit are not anonymisers here
    assert one(known, signup_ip="100.72.3.4", tier="edu")["evidence"] == ["programme"]
    assert one(known, signup_ip="100.64.1.78")["evidence"] == []


def test_listed_exits_are_not_a_campaign_pool() -> None:
    # every listed exit carries the same intel label: flagged traffic on some of them must not
    # make the label a "pool" (that would double-count the exit itself)
    traffic = [traffic_row(a, f"100.64.9.{10 + i}", 30) for i, a in enumerate(CAMPAIGN)]
    traffic = [{**t, "asn": "residential proxy exit", "ip_kind": "proxy"} for t in traffic]
    known = known_state(CAMPAIGN, [], traffic)
    assert known.pool["key"].to_pylist() == ["residential proxy exit"]
    assert one(known, signup_ip="100.64.1.77")["evidence"] == ["proxy_exit"]


def test_card_paying_for_other_personal_accounts() -> None:
    hist = [history_row(f"p{i}", payment="pm_reused", created_ms=T0 - i * DAY) for i in (1, 2)]
    # a company card: colleagues of the same organisation sharing it is normal
    hist += [history_row(f"c{i}", payment="pm_company", org="org_1") for i in range(10)]
    # a card used by one other account (a couple sharing a card)
    hist += [history_row("partner", payment="pm_couple")]
    known = known_state({}, hist)
    d = one(known, payment_fingerprint="pm_reused")
    assert "card_reuse" in d["evidence"] and d["decision"] == "allow"
    assert any("pays for 2 other account(s)" in r for r in d["reasons"])
    colleague = one(known, payment_fingerprint="pm_company", org_id="org_1")
    assert "card_reuse" not in colleague["evidence"]
    assert "card_reuse" not in one(known, payment_fingerprint="pm_couple")["evidence"]
    # a card already linked to a campaign is `payment`, not counted twice
    burned = [history_row(a, payment="pm_burned") for a in CAMPAIGN]
    linked = one(known_state(CAMPAIGN, burned), payment_fingerprint="pm_burned")
    assert "payment" in linked["evidence"] and "card_reuse" not in linked["evidence"]
    # causal: holders signing up later do not count
    later = [history_row(f"l{i}", payment="pm_later", created_ms=T0 + DAY) for i in range(3)]
    first = one(known_state({}, later), payment_fingerprint="pm_later")
    assert "card_reuse" not in first["evidence"]


def test_programme_sign_up_without_an_eligible_address() -> None:
    known = known_state({}, [])
    for email in ("li.wei@gmail.com", "x@mailinator.com", "x@gmaill.com"):
        assert "unbacked" in one(known, tier="edu", email=email)["evidence"], email
    gmail_edu = one(known, tier="research", email="li.wei@gmail.com")
    assert gmail_edu["decision"] == "allow"  # 0.5: weak on its own
    assert "unbacked" not in one(known, tier="edu", email="li.wei@stanford.edu")["evidence"]
    assert "unbacked" not in one(known, tier="startup", email="ana@northwind.io")["evidence"]
    assert "unbacked" not in one(known, tier="pro", email="li.wei@gmail.com")["evidence"]
