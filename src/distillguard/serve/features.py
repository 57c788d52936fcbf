"""Per-batch feature work for the service: request rows without text, counter deltas, and the
window columns the batch scoring indicators read.

Everything here works on whole Arrow batches; the only per-row Python is the formatting of
reasons for the (few) accounts whose indicators fire.
"""

from __future__ import annotations

import functools
import io
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from distillguard.pipeline.enrich import CARRIED, ip_info
from distillguard.serve.store import METRICS, Deltas, Windows

MS_PER_DAY = 86_400_000
MS_PER_HOUR = 3_600_000
EXTRACTION_FLAGS = ("cot", "rubric", "censor", "train_shaped")
# As in fingerprints.account.network: proxy/Tor exits, commercial VPNs, and the "home-line"
# addresses whose rotation means a proxy pool (VPN, Tor and hosting exits excluded).
# (Copied, not imported: fingerprints.account pulls in ibis, seconds of start-up time.)
ANONYMOUS_KINDS = ("vpn", "proxy", "tor")
HOSTED_KINDS = ("datacenter",)
PROXY_KINDS = ("proxy", "tor")
NOT_HOME_KINDS = ("datacenter", "vpn", "tor")
TEXT_FIELDS = ("system", "prompt", "response")


class IpInfoCache:
    """Subnet, kind and ASN of client addresses, classified once each (bounded memory).

    `pipeline.enrich.ip_info` costs about a millisecond per call whatever the batch size; a
    gateway's traffic comes from a working set of addresses, so most batches need no call.
    """

    def __init__(self, limit: int = 200_000, intel: pa.Table | None = None) -> None:
        self._intel = intel  # the provider's own IP intelligence (`[ip_intel]`), if any
        self._info: dict[str | None, tuple[str | None, str | None, str | None]] = {}
        self._limit = limit
        self._lock = threading.Lock()

    def encode(self, ips: pa.Array | pa.ChunkedArray) -> Addresses:
        """The batch's addresses, encoded once, with each distinct address's facts."""
        arr = ips.combine_chunks() if isinstance(ips, pa.ChunkedArray) else ips
        enc = pc.dictionary_encode(arr, null_encoding="encode")
        uniq = enc.dictionary.to_pylist()
        with self._lock:
            missing = [u for u in uniq if u not in self._info]
            if missing:
                if len(self._info) + len(missing) > self._limit:
                    self._info.clear()
                info = ip_info(pa.array(missing, pa.string()), self._intel)
                found = zip(
                    *[info[c].to_pylist() for c in ("subnet", "ip_kind", "asn")], strict=True
                )
                self._info.update(zip(missing, found, strict=True))
            per_ip = [self._info[u] for u in uniq]
        subnet, kind, asn = ([p[j] for p in per_ip] for j in range(3))
        return Addresses(enc.indices, uniq, subnet, kind, asn)


@dataclass
class Addresses:
    """A batch's client addresses: each row's index into the distinct addresses, and what is
    known of each distinct one, so the subnet and kind columns and the key counts need no
    encoding of their own (in the busy service an Arrow compute call costs ~70 us, measured).
    """

    indices: pa.Array
    address: list[str | None]
    subnet: list[str | None]
    kind: list[str | None]
    asn: list[str | None]

    @functools.cached_property
    def rows(self) -> np.ndarray:
        return np.asarray(self.indices, dtype=np.int64)

    def columns(self) -> dict[str, pa.ChunkedArray]:
        """Per-row subnet, ip_kind and asn, taken in one call."""
        facts = pa.table(
            {
                "subnet": pa.array(self.subnet, pa.string()),
                "ip_kind": pa.array(self.kind, pa.string()),
                "asn": pa.array(self.asn, pa.string()),
            }
        ).take(self.indices)
        return {name: facts[name] for name in facts.column_names}

    def codes(self, facts: list[str | None]) -> tuple[Codes, np.ndarray]:
        """((code of each row's fact, distinct facts), rows whose fact is known) for one of
        the per-address lists (or the addresses themselves)."""
        index: dict[str | None, int] = {}
        per_address = np.array([index.setdefault(f, len(index)) for f in facts], dtype=np.int64)
        names = np.empty(len(index), dtype=object)
        names[:] = list(index)
        codes = per_address[self.rows]
        return (codes, names), np.not_equal(names, None)[codes]

    def flags(self, *tests: Callable[[str | None], bool]) -> list[np.ndarray]:
        """`test(kind)` for each row and test, evaluated once per distinct kind."""
        per_kind = {k: [bool(test(k)) for test in tests] for k in set(self.kind)}
        table = np.array([per_kind[k] for k in self.kind] or [[False] * len(tests)], dtype=bool)
        return list(table[self.rows].T) if len(self.rows) else [np.zeros(0, bool)] * len(tests)


def request_rows(
    events: pa.Table, ips: IpInfoCache, store_text: bool = False
) -> tuple[pa.Table, Addresses]:
    """The enriched-table columns known without request signals (no text unless asked), and
    the batch's encoded addresses (for `event_deltas`).

    Same names and meanings as `pipeline.enrich` (with `with_ip_info`), so the batch stages read
    these rows (joined to the signal columns) as they read an enriched Parquet file.
    """
    ms = np.asarray(pc.cast(events["timestamp"], pa.int64()), dtype=np.int64)
    day = ms // MS_PER_DAY
    cols: dict[str, pa.Array | pa.ChunkedArray] = {name: events[name] for name in CARRIED}
    cols["ts_ms"] = pa.array(ms)
    cols["day"] = pa.array(day)
    cols["hour"] = pa.array((ms - day * MS_PER_DAY) // MS_PER_HOUR)
    cols["weekday"] = pa.array((day + 3) % 7)  # 1970-01-01 was a Thursday
    cols["hb"] = pa.array(ms // MS_PER_HOUR)
    addresses = ips.encode(events["client_ip"])
    cols.update(addresses.columns())
    if store_text:
        for name in TEXT_FIELDS:
            cols[name] = events[name]
    return pa.table(cols), addresses


def _flag(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.fill_null(arr, False), dtype=np.int64)


def _ints(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.fill_null(arr, 0), dtype=np.int64)


def _codes(arr: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(code of each value, distinct values as an object array): strings compared as integers
    from here on, and turned back into Python strings by NumPy indexing."""
    enc = pc.dictionary_encode(arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr)
    values = np.empty(len(enc.dictionary), dtype=object)
    values[:] = enc.dictionary.to_pylist()
    indices = enc.indices.fill_null(0) if enc.indices.null_count else enc.indices
    return np.asarray(indices, dtype=np.int64), values


def _groups(*codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(group of each row, first row of each group) for rows keyed by several integer codes.

    The codes are packed into one int64 per row (mixed radix), so one `np.unique` groups them:
    a few vectorised calls per batch instead of a hash aggregation per key kind.
    """
    shifted = [c - c.min() if len(c) else c for c in codes]
    radix = [int(c.max()) + 1 if len(c) else 1 for c in shifted]
    if float(np.prod(radix, dtype=float)) >= 2.0**62:  # absurd spreads: group row-wise
        _, first, group = np.unique(
            np.stack(shifted, axis=1), axis=0, return_index=True, return_inverse=True
        )
        return group.reshape(-1), first
    packed = np.zeros(len(codes[0]), dtype=np.int64)
    for c, r in zip(shifted, radix, strict=True):
        packed = packed * r + c
    _, first, group = np.unique(packed, return_index=True, return_inverse=True)
    return group.reshape(-1), first


Codes = tuple[np.ndarray, np.ndarray]


def _sums(account: pa.Array | pa.ChunkedArray | Codes, hb: np.ndarray, metrics: dict) -> Deltas:
    """Per (account, hour) sums of each metric column (`account` may come encoded)."""
    acc, names = account if isinstance(account, tuple) else _codes(account)
    group, first = _groups(acc, hb)
    k = len(first)
    cols = {
        m: np.bincount(group, weights=v, minlength=k).round().astype(np.int64).tolist()
        for m, v in metrics.items()
    }
    return Deltas({"account_id": names[acc[first]].tolist(), "hb": hb[first].tolist(), **cols})


def _key_counts(
    account: pa.Array | pa.ChunkedArray | Codes,
    kinds: list[tuple[str, pa.Array | pa.ChunkedArray | Codes, np.ndarray]],
    hb: np.ndarray,
) -> Deltas:
    """How often each (account, kind, key, hour) occurs; `kinds` = (kind, keys, row mask).
    Keys given already encoded (codes, names) count where the mask says (nulls excluded).

    All kinds in one grouping: each kind's keys are dictionary-encoded once (a column given
    for two kinds, once for both), offset so codes of different kinds never collide.
    """
    acc, acc_names = account if isinstance(account, tuple) else _codes(account)
    sel, kind, key, key_names, offset = [], [], [], [], 0
    encoded: dict[int, Codes] = {}
    for j, (_, keys, mask) in enumerate(kinds):
        if isinstance(keys, tuple):
            (codes, names), present = keys, mask
        else:
            if id(keys) not in encoded:
                encoded[id(keys)] = _codes(keys)
            (codes, names), present = encoded[id(keys)], mask & _present(keys)
        rows = np.flatnonzero(present)
        sel.append(rows)
        kind.append(np.full(len(rows), j, dtype=np.int64))
        key.append(codes[rows] + offset)
        key_names.append(names)
        offset += len(names)
    rows, kinds_, keys_ = np.concatenate(sel), np.concatenate(kind), np.concatenate(key)
    if len(rows) == 0:
        return Deltas({c: [] for c in ("account_id", "kind", "key", "hb", "n")})
    group, first = _groups(acc[rows], kinds_, keys_, hb[rows])
    kind_names = np.array([name for name, _, _ in kinds], dtype=object)
    all_keys = np.concatenate(key_names)
    return Deltas(
        {
            "account_id": acc_names[acc[rows[first]]].tolist(),
            "kind": kind_names[kinds_[first]].tolist(),
            "key": all_keys[keys_[first]].tolist(),
            "hb": hb[rows[first]].tolist(),
            "n": np.bincount(group, minlength=len(first)).tolist(),
        }
    )


def _present(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    if arr.null_count == 0:
        return np.ones(len(arr), dtype=bool)
    return np.asarray(pc.is_valid(arr), dtype=bool)


def _per_value(arr: pa.Array | pa.ChunkedArray, *tests) -> list[np.ndarray]:
    """`test(value)` for each row and test, evaluated once per distinct value (kinds,
    statuses: few), with one dictionary encoding for all the tests."""
    enc = pc.dictionary_encode(
        arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr, null_encoding="encode"
    )
    values = enc.dictionary.to_pylist()
    rows = np.asarray(enc.indices, dtype=np.int64)
    return [np.array([bool(test(v)) for v in values] or [False])[rows] for test in tests]


def _counts(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    if values.null_count:
        values = pc.fill_null(values, 0)
    return np.asarray(values, dtype=np.int64)


def event_deltas(
    rows: pa.Table, addresses: Addresses, models: bool = False
) -> tuple[Deltas, Deltas]:
    """(bucket counter deltas per account and hour, ip/subnet key deltas); with `models`, also
    the models each account used per hour (first use of a released model: adoption lag).
    `addresses`: the rows' encoded client addresses (`request_rows`)."""
    n = rows.num_rows
    hb = np.asarray(rows["hb"], dtype=np.int64)
    anon, proxy, vpn, hosted, home = addresses.flags(
        lambda k: k in ANONYMOUS_KINDS,
        lambda k: k in PROXY_KINDS,
        lambda k: k == "vpn",
        lambda k: k in HOSTED_KINDS,
        lambda k: k not in NOT_HOME_KINDS,
    )
    (errors,) = _per_value(rows["status"], lambda s: s is not None and s != "ok")
    metrics = {
        "requests": np.ones(n, dtype=np.int64),
        "input_tokens": _counts(rows["input_tokens"]),
        "output_tokens": _counts(rows["output_tokens"]),
        "anon": anon,
        "proxy": proxy,
        "vpn": vpn,
        "hosted": hosted,
        "followups": _counts(rows["turn"]) > 0,
        "errors": errors,
    }
    account = _codes(rows["account_id"])  # encoded once for both groupings
    buckets = _sums(account, hb, metrics)
    ip, has_ip = addresses.codes(addresses.address)
    subnet, has_subnet = addresses.codes(addresses.subnet)
    kinds: list[tuple[str, pa.ChunkedArray | Codes, np.ndarray]] = [
        ("ip", ip, has_ip),
        ("home_ip", ip, has_ip & home),
        ("subnet", subnet, has_subnet),
    ]
    if models:
        kinds.append(("model", rows["model"], np.ones(n, dtype=bool)))
    keys = _key_counts(account, kinds, hb)
    return buckets, keys


def adoption_lag_h(w: Windows, released_ms: dict[str, int]) -> list[float]:
    """Per account: hours from a model's release to the account's first use of it (hour
    resolution, the smallest over the released models it used; NaN when none). As in
    `fingerprints.account.adoption`; a first use older than the window reads as later, so the
    lag can only come out longer than the batch model's (never a false fast adoption)."""
    out = []
    for firsts in w.first_use_hb:  # per account: the few models it used
        lags = [
            max(0.0, (hb * MS_PER_HOUR - released_ms[m]) / MS_PER_HOUR)
            for m, hb in firsts.items()
            if m in released_ms and (hb + 1) * MS_PER_HOUR > released_ms[m]
        ]
        out.append(min(lags) if lags else float("nan"))
    return out


def signal_deltas(rows: pa.Table, signals: pa.Table) -> tuple[Deltas, Deltas]:
    """(signal counter deltas per account and hour, template key deltas); rows align by position."""
    n = rows.num_rows
    flags = {f: _flag(signals[f]) for f in EXTRACTION_FLAGS}
    metrics = {
        "signalled": np.ones(n, dtype=np.int64),
        "extraction": np.maximum.reduce(list(flags.values())),
        **flags,
        "max_out": _flag(signals["max_out"]),
        "thinking": _flag(signals["thinking"]),
    }
    hb = np.asarray(rows["hb"], dtype=np.int64)
    buckets = _sums(rows["account_id"], hb, metrics)
    tpl = pc.cast(signals["tpl_id"], pa.string())
    has_tpl = np.asarray(pc.is_valid(tpl), dtype=bool)
    keys = _key_counts(rows["account_id"], [("tpl", tpl, has_tpl)], hb)
    return buckets, keys


def to_ipc(table: pa.Table) -> bytes:
    """Arrow IPC stream bytes, uncompressed (so `store_prompts=false` is checkable on disk)."""
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def from_ipc(blobs: list[bytes]) -> pa.Table | None:
    tables = [pa.ipc.open_stream(b).read_all() for b in blobs]
    if not tables:
        return None
    return pa.concat_tables(tables, promote_options="permissive")


def _entropy_bits(hour_counts: np.ndarray) -> np.ndarray:
    totals = hour_counts.sum(axis=1, keepdims=True)
    p = np.divide(
        hour_counts, totals, out=np.zeros_like(hour_counts, dtype=float), where=totals > 0
    )
    logs = np.log2(p, out=np.zeros_like(p), where=p > 0)
    return -(p * logs).sum(axis=1)


class Columns(dict):
    """Indicator inputs; a fingerprint column the live state does not track reads as zeros
    (no evidence), so an indicator added to the batch model never breaks the service."""

    def __init__(self, n: int, values: dict[str, np.ndarray]) -> None:
        super().__init__(values)
        self.n = n

    def __missing__(self, key: str) -> np.ndarray:
        return np.zeros(self.n)


def indicator_columns(w: Windows) -> Columns:
    """Window aggregates as the fingerprint columns `scoring.indicators` reads (long window)."""
    n = len(w.accounts)
    long = {m: np.asarray(w.long[m], dtype=float) for m in METRICS}
    req = np.maximum(long["requests"], 1.0)
    sig = np.maximum(long["signalled"], 1.0)
    has_sig = long["signalled"] > 0
    nan = np.full(n, np.nan)

    def sig_share(name: str) -> np.ndarray:
        return np.where(has_sig, long[name] / sig, 0.0)  # unknown yet: no evidence

    ips = np.asarray(w.distinct_long["ip"], dtype=float)
    home_ips = np.asarray(w.distinct_long["home_ip"], dtype=float)
    values = {
        "requests": long["requests"],
        "output_tokens": long["output_tokens"],
        "cot_share": sig_share("cot"),
        "rubric_share": sig_share("rubric"),
        "censor_share": sig_share("censor"),
        "train_shaped_share": sig_share("train_shaped"),
        "ips": ips,
        "subnets": np.asarray(w.distinct_long["subnet"], dtype=float),
        "ips_per_request": ips / req,
        "home_ips": home_ips,
        "home_ips_per_request": home_ips / req,
        "anon_share": long["anon"] / req,
        "proxy_share": long["proxy"] / req,
        "vpn_share": long["vpn"] / req,
        "hosted_share": long["hosted"] / req,
        "top_template_share": np.where(has_sig, np.asarray(w.top_template) / sig, 0.0),
        "templates": np.asarray(w.distinct_long["tpl"], dtype=float),
        "followup_share": long["followups"] / req,
        "hour_entropy": _entropy_bits(np.asarray(w.hour_counts, dtype=float).reshape(n, 24)),
        # Sign-up data is not part of the windows: these stay unknown.
        "age_days": nan,
        "disposable": nan,
        "adopt_lag_h": nan if w.adopt_lag_h is None else np.asarray(w.adopt_lag_h, dtype=float),
    }
    return Columns(n, values)
