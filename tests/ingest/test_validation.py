"""Every rejection reason, duplicates, and the invariant read = accepted + rejected + duplicate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from distillguard.ingest import read_section
from tests.ingest.helpers import account, event, write_csv, write_jsonl, write_parquet

JSON_CASES: list[tuple[dict[str, Any], str, str]] = [
    ({"request_id": None}, "missing_field", "request_id"),
    ({"request_id": ""}, "missing_field", "request_id"),
    ({"account_id": None}, "missing_field", "account_id"),
    ({"prompt": None}, "missing_field", "prompt"),
    ({"timestamp": None}, "missing_field", "timestamp"),
    ({"timestamp": "2026-02-03 04:05:06"}, "bad_timestamp", "timestamp"),  # no offset
    ({"timestamp": "yesterday"}, "bad_timestamp", "timestamp"),
    ({"timestamp": "2026-13-45T04:05:06Z"}, "bad_timestamp", "timestamp"),
    ({"timestamp": True}, "bad_timestamp", "timestamp"),
    ({"client_ip": "300.1.2.3"}, "bad_ip", "client_ip"),
    ({"client_ip": "01.2.3.4"}, "bad_ip", "client_ip"),
    ({"client_ip": "2001:db8::g"}, "bad_ip", "client_ip"),
    ({"input_tokens": -1}, "negative_tokens", "input_tokens"),
    ({"output_tokens": -5}, "negative_tokens", "output_tokens"),
    ({"input_tokens": "12"}, "wrong_type", "input_tokens"),
    ({"input_tokens": 1.5}, "wrong_type", "input_tokens"),
    ({"output_tokens": [1]}, "wrong_type", "output_tokens"),
    ({"temperature": "hot"}, "wrong_type", "temperature"),
    ({"turn": 2**40}, "wrong_type", "turn"),
    ({"status": "timeout"}, "unknown_value", "status"),
]


@pytest.mark.parametrize(("change", "reason", "field"), JSON_CASES)
def test_jsonl_rejection_reasons(tmp_path: Path, change: dict, reason: str, field: str) -> None:
    path = write_jsonl(tmp_path / "e.jsonl", [event(0), event(1, **change), event(2)])
    rejects = tmp_path / "rejects.jsonl"
    table, counts = read_section("events", [path], rejects_path=rejects)
    assert (counts.read, counts.accepted, counts.rejected) == (3, 2, 1)
    assert counts.by_field == {f"{reason}:{field}": 1}
    [line] = rejects.read_text().rstrip("\n").split("\n")
    r = json.loads(line)
    assert (r["file"], r["line"], r["row"], r["field"], r["reason"]) == (
        str(path),
        2,
        1,
        field,
        reason,
    )
    assert r["record"]["request_id"] == (
        None if change.get("request_id", "x") is None else event(1, **change)["request_id"]
    )
    assert "req-1" not in table["request_id"].to_pylist()


CSV_CASES = [
    ({"input_tokens": "ten"}, "wrong_type", "input_tokens"),
    ({"input_tokens": "1.0"}, "wrong_type", "input_tokens"),
    ({"timestamp": "03/02/2026"}, "bad_timestamp", "timestamp"),
    ({"client_ip": "localhost"}, "bad_ip", "client_ip"),
    ({"model": ""}, "missing_field", "model"),
    ({"output_tokens": "-3"}, "negative_tokens", "output_tokens"),
    ({"status": "OK!"}, "unknown_value", "status"),
]


@pytest.mark.parametrize(("change", "reason", "field"), CSV_CASES)
def test_csv_rejection_reasons(tmp_path: Path, change: dict, reason: str, field: str) -> None:
    path = write_csv(tmp_path / "e.csv", [event(0), event(1, **change)])
    rejects = tmp_path / "rejects.jsonl"
    _, counts = read_section("events", [path], rejects_path=rejects)
    assert counts.by_field == {f"{reason}:{field}": 1}
    r = json.loads(rejects.read_text())
    assert r["line"] == 3  # header is line 1


def test_csv_numbers_in_text_are_parsed(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "e.csv", [event(0, input_tokens=" 42 ", status="Refused")])
    table, counts = read_section("events", [path])
    assert counts.accepted == 1
    assert table["input_tokens"][0].as_py() == 42 and table["status"][0].as_py() == "refused"


def test_parquet_string_column_with_bad_numbers(tmp_path: Path) -> None:
    records = [event(i, input_tokens=str(i)) for i in range(3)] + [event(3, input_tokens="x")]
    path = write_parquet(tmp_path / "e.parquet", records)
    rejects = tmp_path / "r.jsonl"
    _, counts = read_section("events", [path], rejects_path=rejects)
    assert (counts.accepted, counts.rejected) == (3, 1)
    r = json.loads(rejects.read_text())
    assert (r["row"], r["line"], r["reason"]) == (3, None, "wrong_type")


def test_status_defaults_to_ok_and_ipv6_is_normalised(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "e.jsonl", [event(0, status=None, client_ip="2001:DB8:0:0::1")])
    table, _ = read_section("events", [path])
    assert table["status"][0].as_py() == "ok"
    assert table["client_ip"][0].as_py() == "2001:db8::1"


def test_duplicates_are_counted_and_first_valid_copy_kept(tmp_path: Path) -> None:
    records = [
        event(1, input_tokens=-1),  # invalid copy: rejected, not a duplicate
        event(1, prompt="first valid"),
        event(1, prompt="second valid"),
        event(2),
        event(2),
    ]
    path = write_jsonl(tmp_path / "e.jsonl", records)
    table, counts = read_section("events", [path])
    assert (counts.read, counts.accepted, counts.rejected, counts.duplicate) == (5, 2, 1, 2)
    kept = {r["request_id"]: r["prompt"] for r in table.to_pylist()}
    assert kept["req-1"] == "first valid"


def test_accounts_rejects_never_contain_email(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "a.jsonl",
        [account(0), account(1, tier="platinum"), account(2, signup_ip="999.0.0.1")],
    )
    rejects = tmp_path / "r.jsonl"
    _, counts = read_section("accounts", [path], rejects_path=rejects)
    assert counts.by_field == {"unknown_value:tier": 1, "bad_ip:signup_ip": 1}
    text = rejects.read_text()
    assert "secret.person" not in text and '"email"' not in text


def test_ip_intel_section(tmp_path: Path) -> None:
    rows = [
        {"cidr": "10.1.2.3/8", "asn": "64500", "as_org": "A", "kind": "datacenter"},
        {"cidr": "2001:db8::/32", "asn": "", "as_org": "B", "kind": "vpn"},
        {"cidr": "not-a-net", "asn": "1", "as_org": "C", "kind": "tor"},
        {"cidr": "192.0.2.0/24", "asn": "1", "as_org": "D", "kind": "satellite"},
    ]
    table, counts = read_section("ip-intel", [write_csv(tmp_path / "i.csv", rows)])
    assert counts.by_field == {"bad_ip:cidr": 1, "unknown_value:kind": 1}
    assert table["cidr"].to_pylist() == ["10.0.0.0/8", "2001:db8::/32"]
    assert table["asn"].to_pylist() == [64500, None]


# --- property: every record is accepted, rejected (with a reason) or a duplicate ----------

_field_values = {
    "request_id": st.one_of(st.none(), st.sampled_from(["a", "b", "c", ""])),
    "timestamp": st.one_of(
        st.none(),
        st.integers(-(2**62), 2**62),
        st.sampled_from(
            ["2026-02-03T04:05:06Z", "2026-02-03T04:05:06", "x", "2026-02-03T04:05:06+05:30"]
        ),
    ),
    "account_id": st.one_of(st.none(), st.text(max_size=3)),
    "client_ip": st.one_of(
        st.none(), st.sampled_from(["1.2.3.4", "::1", "1.2.3", "fe80::1%eth0", " "])
    ),
    "model": st.one_of(st.none(), st.just("m")),
    "prompt": st.one_of(st.none(), st.text(max_size=5), st.integers(), st.just("a\x85b\u2028")),
    "input_tokens": st.one_of(
        st.none(), st.integers(-5, 2**63 - 1), st.floats(allow_nan=False), st.text(max_size=2)
    ),
    "output_tokens": st.one_of(st.none(), st.integers(-3, 10), st.booleans()),
    "turn": st.one_of(st.none(), st.integers(-(2**40), 2**40)),
    "temperature": st.one_of(
        st.none(), st.floats(allow_nan=False, allow_infinity=False), st.just("t")
    ),
    "status": st.one_of(st.none(), st.sampled_from(["ok", "ERROR", "nope", ""])),
}
_record = st.fixed_dictionaries({}, optional=_field_values)


# JSON Lines split on "\n" only: str.splitlines() would also split on U+0085 inside a string.
# No shrinking: each example runs DuckDB, and a failure should report fast in CI.
@settings(
    max_examples=15,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(records=st.lists(_record, min_size=1, max_size=12))
def test_every_record_is_accounted_for_exactly_once(
    tmp_path_factory: pytest.TempPathFactory, records: list[dict]
) -> None:
    tmp = tmp_path_factory.mktemp("prop")
    path = write_jsonl(tmp / "e.jsonl", records)
    rejects = tmp / "r.jsonl"
    table, counts = read_section("events", [path], rejects_path=rejects)
    lines = (
        [json.loads(x) for x in rejects.read_text().split("\n") if x] if rejects.exists() else []
    )
    assert counts.read == len(records)
    assert counts.read == counts.accepted + counts.rejected + counts.duplicate
    assert len(lines) == counts.rejected == sum(counts.by_reason.values())
    assert all(r["reason"] and r["field"] for r in lines)
    rejected_rows = {r["row"] for r in lines}
    assert len(rejected_rows) == len(lines)  # never rejected twice
    assert table.num_rows == counts.accepted
    # A rejected row never appears among the accepted ones, and accepted ids are unique.
    ids = table["request_id"].to_pylist()
    assert len(ids) == len(set(ids))
    valid_ids = {
        records[i].get("request_id") for i in range(len(records)) if i not in rejected_rows
    }
    assert set(ids) == valid_ids


def test_ip_intel_duplicates_are_found_on_the_normalised_network(tmp_path: Path) -> None:
    rows = [
        {"cidr": "10.1.2.3/8", "asn": "1", "as_org": "A", "kind": "datacenter"},
        {"cidr": "10.0.0.0/8", "asn": "2", "as_org": "B", "kind": "vpn"},
    ]
    table, counts = read_section("ip_intel", [write_csv(tmp_path / "i.csv", rows)])
    assert (counts.accepted, counts.duplicate) == (1, 1)
    assert table["as_org"].to_pylist() == ["A"]


def test_second_ingest_into_the_same_directory_leaves_no_stale_sections(tmp_path: Path) -> None:
    from distillguard.ingest import run_ingest

    events = write_jsonl(tmp_path / "e.jsonl", [event(1)])
    accounts = write_jsonl(tmp_path / "a.jsonl", [account(1)])
    run_ingest([events], [accounts], out=tmp_path / "out", progress=False)
    assert (tmp_path / "out" / "accounts.parquet").exists()
    run_ingest([events], out=tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "accounts.parquet").exists()


def test_reason_after_an_ipv6_address_is_the_first_broken_rule(tmp_path: Path) -> None:
    records = [
        event(1, client_ip="2001:db8::5", output_tokens=-1),  # valid IPv6: tokens are the reason
        event(2, client_ip="2001:db8::zz", output_tokens=-1),  # bad IP comes first
        event(3, client_ip="fe80::1%eth0"),
    ]
    table, counts = read_section("events", [write_jsonl(tmp_path / "e.jsonl", records)])
    assert counts.by_field == {"negative_tokens:output_tokens": 1, "bad_ip:client_ip": 1}
    assert table["client_ip"].to_pylist() == ["fe80::1%eth0"]
