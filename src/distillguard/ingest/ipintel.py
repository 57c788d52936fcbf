"""Offline IP intelligence and address validation, vectorised over the distinct addresses.

Logs have far fewer distinct client IPs than rows, so parsing happens once per distinct string
and the result is joined back (in DuckDB for ingest, with Arrow `take` here).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# iporigin kinds -> contract kinds (`reserved` space is not attributable, so unknown).
IPORIGIN_KIND = {
    "hosting": "datacenter",
    "cdn": "datacenter",
    "bot": "datacenter",
    "vpn": "vpn",
    "tor": "tor",
    "reserved": "unknown",
}
UNKNOWN = "unknown"
CLASSIFIED_SCHEMA = pa.schema(
    [("ip", pa.string()), ("kind", pa.string()), ("asn", pa.int64()), ("as_org", pa.string())]
)


_HEX_COLONS = re.compile(r"[0-9A-Fa-f:]+")
# inet_ntop writes ::a.b.c.d and ::ffff:a.b.c.d in dotted form; Python's ipaddress does not
# (before 3.13), so these two ranges take the slow path.
_V4_COMPAT_PREFIX = bytes(10)


def _fast_ipv6(text: str) -> str | None:
    """Canonical text of a plain hexadecimal IPv6 address via the C library (about 50x faster
    than `ipaddress`, the same RFC 5952 text: lower case, longest zero run of two or more,
    leftmost on ties), or None when the fast path does not apply."""
    if not _HEX_COLONS.fullmatch(text):
        return None
    try:
        packed = socket.inet_pton(socket.AF_INET6, text)
    except OSError:
        return None  # invalid: let ipaddress decide (and say so) on the slow path
    if packed[:10] == _V4_COMPAT_PREFIX and packed[10:12] in (b"\0\0", b"\xff\xff"):
        return None
    return socket.inet_ntop(socket.AF_INET6, packed)


def normalise_ips(strings: list[str | None]) -> list[str | None]:
    """Each string's canonical address text, or None when it is not an IPv4/IPv6 address."""
    out: list[str | None] = []
    for s in strings:
        if s is None:
            out.append(None)
            continue
        text = s.strip()
        fast = _fast_ipv6(text) if ":" in text else None
        if fast is not None:
            out.append(fast)
            continue
        try:
            out.append(str(ipaddress.ip_address(text)))
        except ValueError:
            out.append(None)
    return out


def normalise_cidrs(strings: list[str | None]) -> list[str | None]:
    """Each string's canonical network (host bits cleared), or None when it does not parse."""
    out: list[str | None] = []
    for s in strings:
        try:
            out.append(
                str(ipaddress.ip_network(s.strip(), strict=False)) if s is not None else None
            )
        except ValueError:
            out.append(None)
    return out


def validity_map(distinct: pa.Array, cidr: bool = False) -> pa.Table:
    """`raw -> norm` for the valid strings among `distinct` (one parse per distinct string)."""
    raw = distinct.to_pylist()
    norm = (normalise_cidrs if cidr else normalise_ips)(raw)
    table = pa.table({"raw": pa.array(raw, pa.string()), "norm": pa.array(norm, pa.string())})
    return table.filter(pc.is_valid(table["norm"]))


# ---------------------------------------------------------------------------------------------
# Address -> integer keys. IPv4 as uint64; IPv6 as 16 big-endian bytes ('S16' sorts like the
# unsigned 128-bit number, so numpy searchsorted works on it).


def _parse_unique(unique: list[str | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(version 0/4/6, v4 ints, v6 keys) for each unique string."""
    n = len(unique)
    version = np.zeros(n, dtype=np.int8)
    v4 = np.zeros(n, dtype=np.uint64)
    v6 = np.zeros(n, dtype="S16")
    for i, s in enumerate(unique):
        addr = _parse(s)
        if addr is None:
            continue
        if addr.version == 4:
            version[i], v4[i] = 4, int(addr)
        else:
            version[i], v6[i] = 6, addr.packed
    return version, v4, v6


@lru_cache(maxsize=1_000_000)
def _parse(s: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if s is None:
        return None
    try:
        addr = ipaddress.ip_address(s.strip().split("%")[0])
    except ValueError:
        return None
    mapped = getattr(addr, "ipv4_mapped", None)
    return mapped if mapped is not None else addr


def _mask_v6(keys: np.ndarray, prefix: int) -> np.ndarray:
    as_bytes = np.frombuffer(keys.tobytes(), dtype=np.uint8).reshape(-1, 16).copy()
    full, rest = divmod(prefix, 8)
    if full < 16:
        as_bytes[:, full] &= np.uint8((0xFF << (8 - rest)) & 0xFF)
        as_bytes[:, full + 1 :] = 0
    return np.frombuffer(as_bytes.tobytes(), dtype="S16")


def _mask_v4(ints: np.ndarray, prefix: int) -> np.ndarray:
    mask = np.uint64(((1 << prefix) - 1) << (32 - prefix)) if prefix else np.uint64(0)
    return ints & mask


def _exact_lookup(sorted_keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Index into sorted_keys of each query, or -1."""
    if len(sorted_keys) == 0:
        return np.full(len(queries), -1, dtype=np.int64)
    pos = np.searchsorted(sorted_keys, queries)
    pos = np.minimum(pos, len(sorted_keys) - 1)
    return np.where(sorted_keys[pos] == queries, pos, -1)


def _longest_prefix(
    version: np.ndarray, v4: np.ndarray, v6: np.ndarray, intel: pa.Table
) -> np.ndarray:
    """Row of `intel` whose network is the longest prefix containing each address, or -1."""
    hit = np.full(len(version), -1, dtype=np.int64)
    nets = [ipaddress.ip_network(c, strict=False) for c in intel["cidr"].to_pylist()]
    net_version = np.array([n.version for n in nets], dtype=np.int8)
    net_prefix = np.array([n.prefixlen for n in nets], dtype=np.int16)
    for ver in (4, 6):
        want = version == ver
        for prefix in sorted(set(net_prefix[net_version == ver].tolist()), reverse=True):
            todo = want & (hit < 0)
            if not todo.any():
                break
            rows = np.flatnonzero((net_version == ver) & (net_prefix == prefix))
            if ver == 4:
                keys = np.array([int(nets[r].network_address) for r in rows], dtype=np.uint64)
                queries = _mask_v4(v4[todo], prefix)
            else:
                keys = np.array([nets[r].network_address.packed for r in rows], dtype="S16")
                queries = _mask_v6(v6[todo], prefix)
            order = np.argsort(keys, kind="stable")
            found = _exact_lookup(keys[order], queries)
            idx = np.flatnonzero(todo)
            hit[idx[found >= 0]] = rows[order[found[found >= 0]]]
    return hit


@lru_cache(maxsize=1)
def _iporigin_arrays() -> dict[str, object]:
    from iporigin import _data

    ds = _data.dataset()
    v6_starts = np.array([x.to_bytes(16, "big") for x in ds.v6_starts], dtype="S16")
    v6_ends = np.array([x.to_bytes(16, "big") for x in ds.v6_ends], dtype="S16")
    return {
        "v4_starts": np.asarray(ds.v4_starts, dtype=np.uint64),
        "v4_ends": np.asarray(ds.v4_ends, dtype=np.uint64),
        "v4_labels": np.asarray(ds.v4_labels, dtype=np.int64),
        "v6_starts": v6_starts,
        "v6_ends": v6_ends,
        "v6_labels": np.asarray(ds.v6_labels, dtype=np.int64),
        "providers": [p for p, _ in ds.labels],
        "kinds": [IPORIGIN_KIND.get(k, UNKNOWN) for _, k in ds.labels],
    }


def _range_lookup(starts: np.ndarray, ends: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Index of the sorted, non-overlapping range containing each query, or -1."""
    pos = np.searchsorted(starts, queries, side="right") - 1
    safe = np.maximum(pos, 0)
    inside = (pos >= 0) & (queries <= ends[safe])
    return np.where(inside, pos, -1)


def _iporigin_labels(version: np.ndarray, v4: np.ndarray, v6: np.ndarray) -> np.ndarray:
    """iporigin label index for each address, or -1."""
    data = _iporigin_arrays()
    label = np.full(len(version), -1, dtype=np.int64)
    for ver, q in ((4, v4), (6, v6)):
        sel = version == ver
        if not sel.any():
            continue
        starts, ends, labels = (data[f"v{ver}_{k}"] for k in ("starts", "ends", "labels"))
        pos = _range_lookup(starts, ends, q[sel])  # type: ignore[arg-type]
        label[np.flatnonzero(sel)] = np.where(pos >= 0, labels[np.maximum(pos, 0)], -1)  # type: ignore[index]
    return label


def classify_ips(ips: pa.Array | pa.ChunkedArray, intel: pa.Table | None = None) -> pa.Table:
    """`ip, kind, asn, as_org` for every input address, in input order.

    A given IP-intelligence table (contract section 4, longest prefix wins) takes precedence;
    addresses it does not cover fall back to iporigin's bundled ranges (hosting/cdn/bot ->
    datacenter, provider as as_org, no ASN). Anything else, including unparsable strings, is
    `unknown`.
    """
    if isinstance(ips, pa.ChunkedArray):
        ips = ips.combine_chunks()
    ips = ips.cast(pa.string())
    encoded = pc.dictionary_encode(ips)
    unique = encoded.dictionary.to_pylist()
    version, v4, v6 = _parse_unique(unique)

    kinds = np.full(len(unique), UNKNOWN, dtype=object)
    asns = np.full(len(unique), None, dtype=object)
    orgs = np.full(len(unique), None, dtype=object)

    data = _iporigin_arrays()
    label = _iporigin_labels(version, v4, v6)
    has = label >= 0
    kinds[has] = np.array(data["kinds"], dtype=object)[label[has]]  # type: ignore[arg-type]
    orgs[has] = np.array(data["providers"], dtype=object)[label[has]]  # type: ignore[arg-type]

    if intel is not None and intel.num_rows:
        row = _longest_prefix(version, v4, v6, intel)
        hit = row >= 0
        kinds[hit] = np.array(intel["kind"].to_pylist(), dtype=object)[row[hit]]
        asns[hit] = np.array(intel["asn"].to_pylist(), dtype=object)[row[hit]]
        orgs[hit] = np.array(intel["as_org"].to_pylist(), dtype=object)[row[hit]]

    indices = encoded.indices
    return pa.table(
        {
            "ip": ips,
            "kind": pc.fill_null(pa.array(kinds, pa.string()).take(indices), UNKNOWN),
            "asn": pa.array(asns, pa.int64()).take(indices),
            "as_org": pa.array(orgs, pa.string()).take(indices),
        },
        schema=CLASSIFIED_SCHEMA,
    )


@lru_cache(maxsize=1)
def _disposable_set() -> pa.Array:
    from disposable_email_domains import blocklist

    return pa.array(sorted(blocklist), pa.string())


def is_disposable_domain(domains: pa.Array | pa.ChunkedArray) -> pa.Array:
    """True where the e-mail domain (or its parent domain) is a known disposable-mail provider.

    A null domain gives False. Case-insensitive; `x.mailinator.com` matches `mailinator.com`.
    """
    if isinstance(domains, pa.ChunkedArray):
        domains = domains.combine_chunks()
    lowered = pc.utf8_lower(pc.utf8_trim_whitespace(domains.cast(pa.string())))
    blocked = _disposable_set()
    direct = pc.is_in(lowered, value_set=blocked)
    parent = pc.replace_substring_regex(
        lowered, pattern=r"^[^.]+\.", replacement="", max_replacements=1
    )
    via_parent = pc.and_(pc.is_in(parent, value_set=blocked), pc.not_equal(parent, lowered))
    return pc.fill_null(pc.or_(direct, via_parent), False)
