"""The typed decoder is the validator made fast: the same table when it takes a batch, and
never a batch the validator would reject in any way."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from distillguard.serve.typed import TypedDecoder
from distillguard.serve.validate import RULES, EventValidator
from tests.serve.traffic import hydra, normal_user

EDGE_VALUES: list[Any] = [
    None, True, 0, -1, 1, 12.0, 12.5, 2**31, 2**40, 2**63, -(2**63) - 1, "", "  ", "x", "12",
    "OK", " ok", "ok", "error", "10.0.0.1", " 10.0.0.1", "::FFFF:10.0.0.1", "300.1.1.1",
    "2026-02-03T04:05:06Z", "2026-02-03 04:05:06z", "2026-13-03T04:05:06Z",
    "2026-02-03T04:05:06.123456789+02:00", 1770091506789, -62135596800001, [], {},
]  # fmt: skip


def _body(events: list[Any]) -> bytes:
    return json.dumps({"events": events}).encode()


def _validator_view(events: list[Any]) -> tuple[pa.Table, int]:
    table, rejected, _ = EventValidator().validate(events)
    return table, len(rejected)


def test_ordinary_and_hydra_batches_take_the_typed_path_with_the_validators_table():
    for events in (normal_user("u", 40), hydra("h", 5, 20)):
        typed = TypedDecoder(EventValidator()).decode(_body(events))
        assert typed is not None  # the fast path must be the usual one
        table, rejects = _validator_view(events)
        assert rejects == 0 and typed.equals(table)


def test_every_edge_value_of_every_field_is_the_validators_or_left_to_it():
    base = normal_user("e", 1)[0]
    decoder = TypedDecoder(EventValidator())
    taken = 0
    for rule in RULES:
        for value in EDGE_VALUES:
            events = [dict(base, request_id="a"), {**base, "request_id": "b", rule.name: value}]
            typed = decoder.decode(_body(events))
            if typed is None:
                continue
            taken += 1
            table, rejects = _validator_view(events)
            assert rejects == 0, (rule.name, value)  # never looser than the rules
            assert typed.equals(table), (rule.name, value)
    assert taken > len(RULES)  # and not a decoder that gives everything to the validator


def test_addresses_read_from_the_cache_give_the_same_table_as_when_first_parsed():
    base = normal_user("c", 1)[0]
    addresses = ["10.0.0.1", " 10.0.0.1", "::FFFF:10.0.0.1", "2001:DB8::1", "300.1.1.1"]
    decoder = TypedDecoder(EventValidator())
    for address in addresses:
        events = [dict(base, request_id="a"), {**base, "request_id": "b", "client_ip": address}]
        first, again = decoder.decode(_body(events)), decoder.decode(_body(events))
        assert decoder._ips.cached([address]) is not None  # the second decode hit the cache
        table, rejects = _validator_view(events)
        if first is None:  # not an address: both times left to the validator
            assert again is None
            continue
        assert rejects == 0 and first.equals(table) and again.equals(table), address


def test_absent_fields_and_other_shapes():
    base = normal_user("s", 1)[0]
    decoder = TypedDecoder(EventValidator())
    optional = [r.name for r in RULES if not r.required]
    sparse = {k: v for k, v in base.items() if k not in optional}
    typed = decoder.decode(_body([sparse]))
    assert typed is not None and typed.equals(_validator_view([sparse])[0])
    assert typed["status"].to_pylist() == ["ok"]  # the enum default, as the rules give it
    for body in (b"[]", b"{}", b'{"events": 3}', b'{"events": [3]}', b"{x", b'{"events": [{}]}'):
        assert decoder.decode(body) is None


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([r.name for r in RULES]),
        st.one_of(
            st.sampled_from(EDGE_VALUES),
            st.integers(-(2**64), 2**64),
            st.floats(allow_nan=False),
            st.text(max_size=6),
        ),
        max_size=4,
    )
)
def test_random_changes_never_make_the_typed_path_looser(changes: dict[str, Any]):
    events = [{**normal_user("r", 1)[0], **changes}]
    typed = TypedDecoder(EventValidator()).decode(_body(events))
    if typed is not None:
        table, rejects = _validator_view(events)
        assert rejects == 0 and typed.equals(table)


def test_blank_identifiers_are_found_as_the_validator_finds_them():
    """The typed path tests blanks with `str.isspace`; the validator trims Arrow's whitespace.
    Every code point must be whitespace to both or to neither."""
    import pyarrow.compute as pc

    chars = [chr(i) for i in range(0x110000) if not 0xD800 <= i <= 0xDFFF]
    arrow = pc.equal(pc.utf8_trim_whitespace(pa.array(chars)), "").to_pylist()
    differ = [hex(ord(c)) for c, blank in zip(chars, arrow, strict=True) if c.isspace() != blank]
    assert differ == []
