"""Per-batch feature work for the service: request rows without text, counter deltas, and the
window columns the batch scoring indicators read.

Everything here works on whole Arrow batches; the only per-row Python is the formatting of
reasons for the (few) accounts whose indicators fire.
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from distillguard.pipeline.enrich import CARRIED, ip_info
from distillguard.serve.store import EVENT_METRICS, METRICS, SIGNAL_METRICS, Windows

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


def _floor_div(values: pa.Array | pa.ChunkedArray, by: int) -> pa.Array:
    return pa.array(np.floor_divide(values.to_numpy(), by))


def hour_bucket(ts_ms: pa.Array) -> pa.Array:
    return _floor_div(ts_ms, MS_PER_HOUR)


def request_rows(events: pa.Table, store_text: bool = False) -> pa.Table:
    """The enriched-table columns known without request signals (no text unless asked).

    Same names and meanings as `pipeline.enrich` + `attach_ip_info`, so the batch stages read
    these rows (joined to the signal columns) as they read an enriched Parquet file.
    """
    ms = pc.cast(events["timestamp"], pa.int64()).combine_chunks()
    day = _floor_div(ms, MS_PER_DAY)
    cols: dict[str, pa.Array] = {name: events[name] for name in CARRIED}
    cols["ts_ms"] = ms
    cols["day"] = day
    cols["hour"] = _floor_div(pc.subtract(ms, pc.multiply(day, MS_PER_DAY)), MS_PER_HOUR)
    cols["weekday"] = pc.remainder(pc.add(day, 3), 7)  # 1970-01-01 was a Thursday
    cols["hb"] = hour_bucket(ms)
    ips = pc.dictionary_encode(events["client_ip"].combine_chunks())
    info = ip_info(ips.dictionary, None)
    for name in ("subnet", "ip_kind", "asn"):
        cols[name] = info[name].combine_chunks().take(ips.indices)
    if store_text:
        for name in TEXT_FIELDS:
            cols[name] = events[name]
    return pa.table(cols)


def _ones(n: int) -> pa.Array:
    return pa.array(np.ones(n, dtype=np.int64))


def _flag(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    return pc.cast(pc.fill_null(arr, False), pa.int64())


def event_deltas(rows: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(bucket counter deltas per account and hour, ip/subnet key deltas)."""
    n = rows.num_rows
    metric_cols = {
        "requests": _ones(n),
        "input_tokens": rows["input_tokens"],
        "output_tokens": rows["output_tokens"],
        "anon": _flag(pc.is_in(rows["ip_kind"], pa.array(ANONYMOUS_KINDS))),
        "proxy": _flag(pc.is_in(rows["ip_kind"], pa.array(PROXY_KINDS))),
        "vpn": _flag(pc.equal(rows["ip_kind"], "vpn")),
        "hosted": _flag(pc.is_in(rows["ip_kind"], pa.array(HOSTED_KINDS))),
        "followups": _flag(pc.greater(pc.fill_null(rows["turn"], 0), 0)),
        "errors": _flag(pc.not_equal(rows["status"], "ok")),
    }
    base = pa.table({"account_id": rows["account_id"], "hb": rows["hb"], **metric_cols})
    buckets = _sum_by(base, ["account_id", "hb"], list(EVENT_METRICS))
    home = pc.invert(pc.is_in(rows["ip_kind"], pa.array(NOT_HOME_KINDS)))
    home_rows = rows.filter(home)
    keys = [
        _key_counts(rows["account_id"], "ip", rows["client_ip"], rows["hb"]),
        _key_counts(home_rows["account_id"], "home_ip", home_rows["client_ip"], home_rows["hb"]),
        _key_counts(rows["account_id"], "subnet", rows["subnet"], rows["hb"]),
    ]
    return buckets, pa.concat_tables(keys)


def signal_deltas(rows: pa.Table, signals: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(signal counter deltas per account and hour, template key deltas); rows align by position."""
    n = rows.num_rows
    flags = {f: _flag(signals[f]) for f in ("cot", "rubric", "censor", "train_shaped")}
    extraction = flags["cot"]
    for f in ("rubric", "censor", "train_shaped"):
        extraction = pc.max_element_wise(extraction, flags[f])
    metric_cols = {
        "signalled": _ones(n),
        "extraction": extraction,
        **flags,
        "max_out": _flag(signals["max_out"]),
        "thinking": _flag(signals["thinking"]),
    }
    base = pa.table({"account_id": rows["account_id"], "hb": rows["hb"], **metric_cols})
    buckets = _sum_by(base, ["account_id", "hb"], list(SIGNAL_METRICS))
    tpl = pc.cast(signals["tpl_id"], pa.string())
    keys = _key_counts(rows["account_id"], "tpl", tpl, rows["hb"])
    return buckets, keys.filter(pc.is_valid(keys["key"]))


def _sum_by(table: pa.Table, by: list[str], metrics: list[str]) -> pa.Table:
    out = table.group_by(by, use_threads=False).aggregate([(m, "sum") for m in metrics])
    return out.rename_columns([f"{c[:-4]}" if c.endswith("_sum") else c for c in out.column_names])


def _key_counts(account: pa.Array, kind: str, key: pa.Array, hb: pa.Array) -> pa.Table:
    t = pa.table({"account_id": account, "key": key, "hb": hb})
    g = t.group_by(["account_id", "key", "hb"], use_threads=False).aggregate([([], "count_all")])
    return pa.table(
        {
            "account_id": g["account_id"],
            "kind": pa.array([kind] * g.num_rows, pa.string()),
            "key": g["key"],
            "hb": g["hb"],
            "n": g["count_all"],
        }
    )


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
        # Sign-up data and model releases are not sent to the service: these stay unknown.
        "age_days": nan,
        "disposable": nan,
        "adopt_lag_h": nan,
    }
    return Columns(n, values)
