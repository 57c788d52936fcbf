"""Offline IP classification (given table first, then iporigin) and disposable e-mail domains."""

from __future__ import annotations

import ipaddress

import pyarrow as pa

from distillguard.ingest import classify_ips, is_disposable_domain
from distillguard.ingest.ipintel import _iporigin_arrays


def _iporigin_example(kind: str, version: int = 4) -> tuple[str, str]:
    """An address inside a bundled iporigin range of the given contract kind, and its provider."""
    from iporigin import _data

    ds = _data.dataset()
    starts, ends, labels = (getattr(ds, f"v{version}_{k}") for k in ("starts", "ends", "labels"))
    kinds = _iporigin_arrays()["kinds"]
    for start, end, label in zip(starts, ends, labels, strict=True):
        if kinds[label] == kind:  # type: ignore[index]
            return str(ipaddress.ip_address((int(start) + int(end)) // 2)), ds.labels[label][0]
    raise AssertionError(f"no {kind} range bundled")


INTEL = pa.table(
    {
        "cidr": ["10.0.0.0/8", "10.1.0.0/16", "2001:db8::/32", "2001:db8:abcd::/48"],
        "asn": [64500, 64501, 64502, None],
        "as_org": ["Big DC", "Small VPN", "V6 Mobile", "V6 Tor"],
        "kind": ["datacenter", "vpn", "mobile", "tor"],
    },
    schema=pa.schema(
        [("cidr", pa.string()), ("asn", pa.int64()), ("as_org", pa.string()), ("kind", pa.string())]
    ),
)


def test_longest_prefix_wins_for_v4_and_v6() -> None:
    ips = pa.array(["10.2.3.4", "10.1.9.9", "2001:db8:1::1", "2001:db8:abcd::5", "10.1.9.9"])
    out = classify_ips(ips, INTEL)
    assert out.column_names == ["ip", "kind", "asn", "as_org"]
    assert out["kind"].to_pylist() == ["datacenter", "vpn", "mobile", "tor", "vpn"]
    assert out["asn"].to_pylist() == [64500, 64501, 64502, None, 64501]
    assert out["ip"].to_pylist() == ips.to_pylist()


def test_iporigin_fallback_and_unknown() -> None:
    dc_ip, provider = _iporigin_example("datacenter")
    tor_ip, _ = _iporigin_example("tor")
    v6_ip, v6_provider = _iporigin_example("datacenter", version=6)
    ips = pa.array([dc_ip, tor_ip, v6_ip, "192.168.1.20", "not an ip", None, "10.0.0.1"])
    out = classify_ips(ips, INTEL)
    kinds = out["kind"].to_pylist()
    assert kinds[:3] == ["datacenter", "tor", "datacenter"]
    assert out["as_org"].to_pylist()[0] == provider and out["as_org"].to_pylist()[2] == v6_provider
    assert out["asn"].to_pylist()[0] is None
    assert kinds[3:6] == ["unknown", "unknown", "unknown"]
    assert kinds[6] == "datacenter" and out["as_org"][6].as_py() == "Big DC"  # table wins


def test_classify_without_table_and_ipv4_mapped() -> None:
    dc_ip, _ = _iporigin_example("datacenter")
    out = classify_ips(pa.chunked_array([[dc_ip], [f"::ffff:{dc_ip}"]]), None)
    assert out["kind"].to_pylist() == ["datacenter", "datacenter"]


def test_disposable_domains() -> None:
    domains = pa.array(
        ["mailinator.com", "MAILINATOR.COM", "x.mailinator.com", "gmail.com", None, "example.org"]
    )
    assert is_disposable_domain(domains).to_pylist() == [True, True, True, False, False, False]


def _python_canonical(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None


def test_fast_ipv6_normalisation_matches_ipaddress() -> None:
    # The C-library fast path must give exactly what Python's ipaddress gives, valid or not.
    import random

    from distillguard.ingest.ipintel import normalise_ips

    rng = random.Random(7)
    strings = ["::", "::1", "1::", "::ffff:1:2", "::102:304", "1:0:0:1:0:0:1:1", "2001:DB8:0::1"]
    for _ in range(4000):
        values = [rng.choice([0, 0, 1, 0xFFFF, rng.randrange(65536)]) for _ in range(8)]
        groups = [format(v, rng.choice(["x", "04x", "X"])) for v in values]
        start, length = rng.randrange(9), rng.randrange(0, 4)
        compressed = ":".join(groups[:start]) + "::" + ":".join(groups[start + length :])
        strings.append(compressed if rng.random() < 0.6 else ":".join(groups[: rng.randrange(9)]))
        strings.append("".join(rng.choice("0123456789abcdefA:") for _ in range(rng.randrange(30))))
    assert normalise_ips(strings) == [_python_canonical(s) for s in strings]
