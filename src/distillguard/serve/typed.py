"""The common case of `POST /v1/events` in C: a typed msgspec schema decodes and checks a batch.

The contract's field rules (`ingest.sections`) become a msgspec schema: each field's JSON type,
required fields, non-blank identifiers, non-negative tokens, int32 ranges, the status values and
the RFC 3339 pattern. A batch that decodes under it needs no rule-by-rule work in Python: only
IP addresses (canonical form, cached) and text timestamps are left, as Arrow column work.

The schema is stricter than the rules, never looser: whatever it refuses (a number in a text
field, a float token count, a bad address, a case or blank to fix) goes to
`validate.EventValidator`, which accepts or rejects row by row with the ingest reasons. So the
result is the validator's, only faster: ~0.3 ms per 100 events instead of ~2 ms.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
import pyarrow as pa
from msgspec.structs import astuple

from distillguard.ingest.sections import FieldRule
from distillguard.serve.validate import (
    EMPTY_IS_MISSING,
    EVENTS_SCHEMA,
    INT32_MAX,
    INT32_MIN,
    MAX_MS,
    MIN_MS,
    RFC3339_RE,
    RULES,
    EventValidator,
    rfc3339_ms,
)

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _json_type(rule: FieldRule) -> Any:
    """The msgspec type of one field: what the rules accept as is, with nothing to fix."""
    if rule.kind == "string":
        # non-empty here; all-blank is checked on the column (a regex per value costs ~2x
        # the whole decoding)
        return Annotated[str, msgspec.Meta(min_length=1)] if _blank_is_missing(rule) else str
    if rule.kind == "ip":
        return str  # blank or not an address: normalising gives null, and the validator decides
    if rule.kind == "enum":
        return Literal[rule.allowed]  # exact values: a case or blank to fix goes the long way
    if rule.kind in ("int64", "int32"):
        low, high = (INT32_MIN, INT32_MAX) if rule.kind == "int32" else (INT64_MIN, INT64_MAX)
        return Annotated[int, msgspec.Meta(ge=max(low, 0) if rule.non_negative else low, le=high)]
    if rule.kind == "float":
        return float
    if rule.kind == "timestamp":
        return (
            Annotated[int, msgspec.Meta(ge=MIN_MS, le=MAX_MS)]
            | Annotated[str, msgspec.Meta(pattern=RFC3339_RE)]
        )
    raise ValueError(f"no typed decoding for field kind {rule.kind!r}")


def _blank_is_missing(rule: FieldRule) -> bool:
    """Identifiers that are blank count as missing (as in ingest)."""
    return rule.required and rule.name in EMPTY_IS_MISSING


def _schema() -> type[msgspec.Struct]:
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for rule in RULES:
        t = _json_type(rule)
        fields.append((rule.name, t) if rule.required else (rule.name, t | None, None))
    # gc=False: events hold only text and numbers, so the collector need not track them
    event = msgspec.defstruct("Event", fields, kw_only=True, gc=False)
    return msgspec.defstruct("EventBatch", [("events", list[event])])


class TypedDecoder:
    """`POST /v1/events` bodies -> contract table, or None when the validator must decide."""

    def __init__(self, validator: EventValidator) -> None:
        schema = _schema()
        self._decoder = msgspec.json.Decoder(schema)
        self._ips = validator.ips
        event = schema.__annotations__["events"].__args__[0]
        # events become tuples in this order, and columns in the contract's
        names = tuple(r.name for r in RULES)
        if not event.__struct_fields__ == names == tuple(EVENTS_SCHEMA.names):
            raise RuntimeError("typed event fields out of the contract's order")

    def decode(self, body: bytes) -> pa.Table | None:
        try:
            events = self._decoder.decode(body).events
        except (msgspec.ValidationError, msgspec.DecodeError):
            return None
        if not events:
            return EVENTS_SCHEMA.empty_table()
        columns: list[pa.Array] = []
        by_field = zip(*map(astuple, events), strict=True)
        # columns are built in their contract type
        for rule, t, values in zip(RULES, EVENTS_SCHEMA.types, by_field, strict=True):
            arr = self._column(rule, t, values)
            if arr is None:
                return None
            columns.append(arr)
        return pa.Table.from_arrays(columns, schema=EVENTS_SCHEMA)

    def _column(self, rule: FieldRule, t: pa.DataType, values: tuple[Any, ...]) -> pa.Array | None:
        if rule.kind == "timestamp":
            return _timestamps(values, t)
        if _blank_is_missing(rule) and any(map(str.isspace, values)):
            return None  # all whitespace (Python's and Arrow's whitespace are the same set)
        if rule.kind == "ip":
            canonical = self._ips.cached(values)
            if canonical is None:
                arr = self._ips.normalise(pa.array(values, t))
            else:
                arr = pa.array(canonical, t)
            return None if arr.null_count else arr  # not an address: the validator says so
        arr = pa.array(values, t)
        if rule.kind == "enum" and arr.null_count:
            arr = arr.fill_null(rule.default)
        return arr


def _timestamps(values: tuple[Any, ...], t: pa.DataType) -> pa.Array | None:
    """Epoch-ms integers, or RFC 3339 text that exists as a date; None for a mixed batch."""
    try:
        return pa.array(values, t)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    try:
        ms = rfc3339_ms(pa.array(values, pa.string()))
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    # month 13 matches the pattern but is no date: the long way
    return None if ms.null_count else ms.cast(t)
