"""Contract validation of JSON events for the service: the ingest rules, as Arrow column work.

The ingest validator (`ingest.validate`) runs in DuckDB and costs about 0.25 s a call, too slow
for a request path. This module applies the same field rules (`ingest.sections`: required,
type, RFC 3339 / epoch-ms timestamps, IP addresses, non-negative tokens, the status enum) and
reports the same `reason` and `field` names, one column at a time. Only rows that break a rule
(and columns of mixed JSON types) are looked at one by one.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from distillguard import contract
from distillguard.ingest.ipintel import normalise_ips
from distillguard.ingest.sections import FieldRule, get_section

RULES: tuple[FieldRule, ...] = get_section("events").rules
# As in ingest: required identifiers where "" means missing (a redacted prompt may be "").
EMPTY_IS_MISSING = frozenset({"request_id", "account_id", "model"})
INT_RE = r"^\s*[+-]?[0-9]+\s*$"
RFC3339_RE = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}"
    r"(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
MIN_MS, MAX_MS = -62135596800000, 253402300799999  # years 1..9999, as in ingest
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
_BAD = object()  # a value of the wrong JSON type


@dataclass
class Rejected:
    """One invalid event: its position, id, and the first rule it broke."""

    index: int
    request_id: str | None
    field: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "request_id": self.request_id,
            "field": self.field,
            "reason": self.reason,
            "message": f"{self.reason}:{self.field}",
        }


_UNSEEN = object()  # not a str or None: marks an address the cache has not parsed yet


class IpCache:
    """Canonical form of address strings, parsed once each (bounded memory)."""

    def __init__(self, limit: int = 200_000) -> None:
        self._map: dict[str, str | None] = {}
        self._limit = limit
        self._lock = threading.Lock()

    def cached(self, values: Sequence[str]) -> list[str | None] | None:
        """Canonical forms of `values` if every one was parsed before, else None: one dict
        look-up each instead of an Arrow round trip (~80 us per 100 addresses)."""
        get = self._map.get  # a look-up needs no lock: a concurrent clear only makes it miss
        out = [get(v, _UNSEEN) for v in values]
        return None if _UNSEEN in out else cast(list[str | None], out)

    def normalise(self, arr: pa.Array) -> pa.Array:
        encoded = pc.dictionary_encode(arr)
        uniq = encoded.dictionary.to_pylist()
        with self._lock:
            missing = [u for u in uniq if u not in self._map]
            if missing:
                if len(self._map) + len(missing) > self._limit:
                    self._map.clear()
                self._map.update(zip(missing, normalise_ips(missing), strict=True))
            norm = pa.array([self._map[u] for u in uniq], pa.string())
        return norm.take(encoded.indices)


def _as_type(arr: pa.Array, t: pa.DataType) -> pa.Array:
    """`arr.cast(t)`, without the call (tens of microseconds) when it is already of type `t`."""
    return arr if arr.type == t else arr.cast(t)


def _valid(arr: pa.Array) -> np.ndarray:
    """Validity as NumPy bools; no Arrow call in the usual no-null case."""
    if arr.null_count == 0:
        return np.ones(len(arr), dtype=bool)
    return np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=bool)


def _where(arr: pa.Array, test) -> np.ndarray:
    """`test` over a numeric column's values in NumPy (nulls never match): no Arrow call in
    the usual no-null case."""
    if arr.null_count == len(arr):
        return np.zeros(len(arr), dtype=bool)
    filled = arr if arr.null_count == 0 else pc.fill_null(arr, 0)
    return np.asarray(test(np.asarray(filled)), dtype=bool) & _valid(arr)


def _np_bool(arr: pa.Array) -> np.ndarray:
    if pa.types.is_boolean(arr.type) and arr.null_count == 0 and arr.true_count == len(arr):
        return np.ones(len(arr), dtype=bool)  # the common all-valid case, without a copy-out
    if arr.null_count:
        arr = arr.fill_null(False)
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=bool)


Values = list[Any] | pa.Array  # a JSON column: Python values, or Arrow when types were uniform


def _pylist(values: Values) -> list[Any]:
    return values.to_pylist() if isinstance(values, pa.Array) else values


def _infer(values: Values) -> pa.Array | None:
    if isinstance(values, pa.Array):
        return values
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return None


def _to_text(v: Any) -> Any:
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return str(v)  # the ingest JSON reader reads numbers in text fields as their text
    return _BAD


def _strings(values: Values) -> tuple[pa.Array, np.ndarray]:
    """(string array, wrong-type mask)."""
    if isinstance(values, pa.Array):
        t = values.type
        if pa.types.is_string(t) or pa.types.is_integer(t) or pa.types.is_null(t):
            return _as_type(values, pa.string()), np.zeros(len(values), bool)
    else:
        try:
            return pa.array(values, pa.string()), np.zeros(len(values), bool)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass
    conv = [_to_text(v) for v in _pylist(values)]
    bad = np.array([c is _BAD for c in conv], dtype=bool)
    return pa.array([None if c is _BAD else c for c in conv], pa.string()), bad


def _int_value(v: Any, text: bool) -> Any:
    if v is None:
        return None
    if isinstance(v, bool):
        return _BAD
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return int(v) if v.is_integer() else _BAD
    if text and isinstance(v, str):
        s = v.strip()
        if s.lstrip("+-").isdigit():
            return int(s)
    return _BAD


def _ints(values: Values, text: bool) -> tuple[pa.Array, np.ndarray]:
    arr = _infer(values)
    if arr is not None and (pa.types.is_integer(arr.type) or pa.types.is_null(arr.type)):
        return _as_type(arr, pa.int64()), np.zeros(len(values), bool)
    if arr is not None and pa.types.is_floating(arr.type):
        integral = pc.equal(pc.trunc(arr), arr)
        ok = pc.and_(integral, pc.less_equal(pc.abs(arr), 2.0**62))
        fixed = pc.if_else(ok, arr, pa.scalar(None, arr.type)).cast(pa.int64())
        return fixed, _np_bool(pc.invert(ok)) & _valid(arr)
    conv = [_int_value(v, text) for v in _pylist(values)]
    bad = np.array([c is _BAD for c in conv], dtype=bool)
    try:
        out = pa.array([None if c is _BAD else c for c in conv], pa.int64())
    except OverflowError:
        big = [c is not _BAD and c is not None and abs(c) >= 2**63 for c in conv]
        bad |= np.array(big, dtype=bool)
        out = pa.array([None if (c is _BAD or b) else c for c, b in zip(conv, big, strict=True)])
    return out.cast(pa.int64()), bad


def _float_value(v: Any, text: bool) -> Any:
    if v is None:
        return None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if text and isinstance(v, str):
        try:
            return float(v.strip())
        except ValueError:
            return _BAD
    return _BAD


def _floats(values: Values, text: bool) -> tuple[pa.Array, np.ndarray]:
    arr = _infer(values)
    if arr is not None and (
        pa.types.is_integer(arr.type)
        or pa.types.is_floating(arr.type)
        or pa.types.is_null(arr.type)
    ):
        return _as_type(arr, pa.float64()), np.zeros(len(values), bool)
    conv = [_float_value(v, text) for v in _pylist(values)]
    bad = np.array([c is _BAD for c in conv], dtype=bool)
    return pa.array([None if c is _BAD else c for c in conv], pa.float64()), bad


def _epoch_ms(arr: pa.Array) -> pa.Array:
    if arr.null_count == 0 and len(arr):
        ms = np.asarray(arr, dtype=np.int64)
        if ms.min() >= MIN_MS and ms.max() <= MAX_MS:  # the usual case: one NumPy pass
            return arr
    ok = pc.and_(pc.greater_equal(arr, MIN_MS), pc.less_equal(arr, MAX_MS))
    return pc.if_else(ok, arr, pa.scalar(None, pa.int64()))


def _parse_one_rfc3339(s: str) -> int | None:
    text = s.strip().upper().replace("Z", "+00:00")
    head, dot, frac = text.partition(".")
    if dot:  # fromisoformat takes at most 6 fraction digits
        digits = len(frac) - len(frac.lstrip("0123456789"))
        text = head + "." + frac[: min(digits, 6)].ljust(6, "0") + frac[digits:]
    try:
        return int(datetime.fromisoformat(text).timestamp() * 1000 // 1)
    except ValueError:
        return None


def rfc3339_ms(strs: pa.Array) -> pa.Array:
    """RFC 3339 text with an offset -> epoch ms (null when it does not parse)."""
    ok = pc.match_substring_regex(strs, RFC3339_RE)
    kept = pc.if_else(ok, pc.utf8_upper(strs), pa.scalar(None, pa.string()))
    try:
        ts = pc.cast(kept, pa.timestamp("ns", "UTC"))
        return pc.cast(pc.cast(ts, pa.timestamp("ms", "UTC"), safe=False), pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        # An impossible date (month 13) or one outside the nanosecond range: one at a time.
        return pa.array([None if s is None else _parse_one_rfc3339(s) for s in kept.to_pylist()])


def _timestamps(values: Values, text: bool) -> tuple[pa.Array, np.ndarray]:
    """(epoch-ms int64, mask of present values of a type a timestamp cannot have)."""
    arr = _infer(values)
    if arr is not None and pa.types.is_integer(arr.type):
        return _epoch_ms(_as_type(arr, pa.int64())), np.zeros(len(values), bool)
    if arr is not None and pa.types.is_string(arr.type) and not text:
        return rfc3339_ms(arr), np.zeros(len(values), bool)
    values = _pylist(values)
    strs = pa.array([v if isinstance(v, str) else None for v in values], pa.string())
    ints = pa.array(
        [v if isinstance(v, int) and not isinstance(v, bool) else None for v in values],
        pa.int64(),
    )
    parsed = rfc3339_ms(strs)
    if text:  # adapter output is text: an integer string is epoch ms
        is_int = pc.match_substring_regex(strs, INT_RE)
        as_int = pc.if_else(is_int, strs, pa.scalar(None, pa.string()))
        parsed = pc.coalesce(
            _epoch_ms(pc.cast(pc.utf8_trim_whitespace(as_int), pa.int64())), parsed
        )
    return pc.coalesce(_epoch_ms(ints), parsed), np.zeros(len(values), bool)


def _text_present(rule: FieldRule, arr: pa.Array) -> np.ndarray:
    """As ingest: blank counts as absent for IPs, enums and required identifiers."""
    valid = _valid(arr)
    if rule.kind != "string" or (rule.required and rule.name in EMPTY_IS_MISSING):
        valid &= _np_bool(pc.not_equal(pc.utf8_trim_whitespace(arr), ""))
    return valid


def _all_allowed(arr: pa.Array, allowed: tuple[str, ...]) -> bool:
    """Every value present and exactly one of `allowed` (no case or blank to fix)."""
    if arr.null_count:
        return False
    return all(v in allowed for v in pc.unique(arr).to_pylist())


Check = tuple[np.ndarray, str]  # rows that break a rule, and the rule's reason
_TYPES = {"int64": pa.int64(), "int32": pa.int64(), "float": pa.float64(), "timestamp": pa.int64()}


def _absent(rule: FieldRule, n: int) -> tuple[pa.Array, np.ndarray, list[Check]]:
    if rule.default is not None:
        return pa.array([rule.default] * n, pa.string()), np.zeros(n, bool), []
    return pa.nulls(n, _TYPES.get(rule.kind, pa.string())), np.zeros(n, bool), []


class EventValidator:
    """JSON events (or adapter text records) -> contract.EVENTS table + rejected rows."""

    def __init__(self) -> None:
        self.ips = IpCache()

    def _text_column(
        self, rule: FieldRule, values: Values
    ) -> tuple[pa.Array, np.ndarray, list[Check]]:
        arr, wrong = _strings(values)
        if rule.kind == "enum" and not wrong.any() and _all_allowed(arr, rule.allowed):
            return arr, np.ones(len(arr), dtype=bool), []  # the usual case: nothing to fix
        present = _text_present(rule, arr) | wrong
        checks: list[Check] = [(wrong, "wrong_type")]
        ok = present & ~wrong
        if rule.kind == "ip":
            arr = self.ips.normalise(arr)
            checks.append((ok & ~_valid(arr), "bad_ip"))
        elif rule.kind == "enum":
            low = pc.utf8_lower(pc.utf8_trim_whitespace(arr))
            known = _np_bool(pc.is_in(low, pa.array(rule.allowed)))
            checks.append((ok & ~known, "unknown_value"))
            arr = pc.if_else(pa.array(ok), low, pa.scalar(rule.default, pa.string()))
        return arr, present, checks

    def _column(
        self, rule: FieldRule, values: Values, text: bool
    ) -> tuple[pa.Array, np.ndarray, list[Check]]:
        """(array of the contract type, present mask, rule checks)."""
        if isinstance(values, pa.Array):
            if values.null_count == len(values):  # optional fields are often absent everywhere
                return _absent(rule, len(values))
        elif all(v is None for v in values):
            return _absent(rule, len(values))
        if rule.kind in ("string", "enum", "ip"):
            return self._text_column(rule, values)
        if isinstance(values, pa.Array) and not (text and pa.types.is_string(values.type)):
            present = _valid(values)
        else:
            values = _pylist(values)
            present = np.array([v is not None for v in values], dtype=bool)
            if text:
                present &= np.array([not (isinstance(v, str) and not v.strip()) for v in values])
        if rule.kind in ("int64", "int32"):
            arr, _ = _ints(values, text)
            if rule.kind == "int32":
                out_of_range = _where(arr, lambda a: (a < INT32_MIN) | (a > INT32_MAX))
                if out_of_range.any():
                    arr = pc.if_else(pa.array(out_of_range), pa.scalar(None, pa.int64()), arr)
            reason = "wrong_type"
        elif rule.kind == "float":
            arr, _ = _floats(values, text)
            reason = "wrong_type"
        else:
            arr, _ = _timestamps(values, text)
            reason = "bad_timestamp"
        checks: list[Check] = [(present & ~_valid(arr), reason)]
        if rule.non_negative:
            checks.append((_where(arr, lambda a: a < 0), "negative_tokens"))
        return arr, present, checks

    def validate(
        self, events: list[Any], text: bool = False
    ) -> tuple[pa.Table, list[Rejected], np.ndarray]:
        """(valid events in contract.EVENTS, rejects, positions of the valid rows in `events`)."""
        n = len(events)
        not_obj = [i for i, e in enumerate(events) if not isinstance(e, dict)]
        rows = [e if isinstance(e, dict) else {} for e in events]
        first: dict[int, tuple[str, str]] = {i: ("event", "wrong_type") for i in not_obj}
        columns: dict[str, pa.Array] = {}
        for rule in RULES:
            values = _field_values(rows, rule.name)
            arr, present, checks = self._column(rule, values, text)
            if rule.required:
                checks.insert(0, (~present, "missing_field"))
            for mask, reason in checks:  # the first broken rule of a row is reported
                if mask.any():
                    for i in np.flatnonzero(mask):
                        first.setdefault(int(i), (rule.name, reason))
            columns[rule.name] = arr
        ids = columns["request_id"]
        rejected = [
            Rejected(i, _id_at(ids, i), field, reason)
            for i, (field, reason) in sorted(first.items())
        ]
        keep = np.ones(n, dtype=bool)
        keep[list(first)] = False
        table = _as_contract(columns)
        if first:
            table = table.filter(pa.array(keep))
        return table, rejected, np.flatnonzero(keep)


def _field_values(rows: list[dict[str, Any]], name: str) -> Values:
    """One field of every row: an Arrow array when its values have one JSON type (the usual
    case), else the Python values. (Column by column: inferring one struct array of whole
    events cost twice as much, and one odd field sent every column down the slow path.)"""
    values = [r.get(name) for r in rows]
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return values


def _id_at(ids: pa.Array, i: int) -> str | None:
    value = ids[i].as_py()
    return value if isinstance(value, str) else None


# Nullability is enforced by the rules; the schema is built without it for the filter.
EVENTS_SCHEMA = pa.schema([(f.name, f.type) for f in contract.EVENTS])


def _as_contract(columns: dict[str, pa.Array]) -> pa.Table:
    arrays = []
    for f in contract.EVENTS:
        arr = columns[f.name]
        if pa.types.is_timestamp(f.type):
            arr = _as_type(arr, pa.int64()).cast(f.type)
        arrays.append(_as_type(arr, f.type))
    return pa.Table.from_arrays(arrays, schema=EVENTS_SCHEMA)
