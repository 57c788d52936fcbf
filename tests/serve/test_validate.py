from __future__ import annotations

from distillguard.serve.validate import EventValidator
from tests.serve.traffic import normal_user


def _one(**changes):
    e = normal_user("val", 1)[0]
    e.update(changes)
    return e


def test_timestamps_types_and_enums_follow_the_ingest_rules():
    events = [
        _one(request_id="a", timestamp="2026-02-03T04:05:06.123456789+02:00"),
        _one(request_id="b", timestamp=1770091506789, status="OK"),
        _one(request_id="c", timestamp="2026-02-03 04:05:06z", user_agent=12),
        _one(request_id="d", turn=True),
        _one(request_id="e", tools=2**40),
        _one(request_id="f", timestamp="2026-13-03T04:05:06Z"),
        _one(request_id="g", timestamp="yesterday"),
        _one(request_id="h", account_id="  "),
        _one(request_id="i", prompt=""),
        _one(request_id="j", max_tokens=1024.0, temperature=1),
    ]
    table, rejected, kept = EventValidator().validate(events)
    assert {(r.request_id, r.field, r.reason) for r in rejected} == {
        ("d", "turn", "wrong_type"),
        ("e", "tools", "wrong_type"),
        ("f", "timestamp", "bad_timestamp"),
        ("g", "timestamp", "bad_timestamp"),
        ("h", "account_id", "missing_field"),
    }
    rows = {r["request_id"]: r for r in table.to_pylist()}
    assert sorted(rows) == ["a", "b", "c", "i", "j"] and list(kept) == [0, 1, 2, 8, 9]
    assert rows["a"]["timestamp"].isoformat() == "2026-02-03T02:05:06.123000+00:00"
    assert rows["b"]["status"] == "ok" and rows["c"]["user_agent"] == "12"
    assert rows["i"]["prompt"] == ""  # a redacted prompt is allowed
    assert rows["j"]["max_tokens"] == 1024 and rows["j"]["temperature"] == 1.0


def test_adapter_text_records_parse_numbers_from_strings():
    record = {k: (None if v is None else str(v)) for k, v in _one(request_id="t").items()}
    table, rejected, _ = EventValidator().validate([record], text=True)
    assert rejected == []
    assert table["input_tokens"][0].as_py() == int(record["input_tokens"])
    assert table["timestamp"][0].value == int(record["timestamp"])  # epoch ms from text
    # The JSON API is strict like the ingest JSON reader: a string is not a number.
    _, rejected, _ = EventValidator().validate([record])
    assert [(r.field, r.reason) for r in rejected] == [("timestamp", "bad_timestamp")]
