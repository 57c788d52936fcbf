"""Where requests come from: IP pools drawn from real ranges, user agents, and the IP-intel file.

Datacenter, VPN and Tor addresses come from the ranges shipped in the `iporigin` package; home,
mobile, business and campus addresses from the ISP blocks in `data/isp_ranges.toml`. Everything is
drawn with NumPy from the caller's generator, so results depend only on the seed.
"""

from __future__ import annotations

import ipaddress
import json
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

# Providers attackers and pipelines rent from, with how often they are picked (cheap VPS first).
DATACENTER_WEIGHTS = {
    "Amazon AWS": 6.0,
    "Google Cloud": 3.0,
    "Microsoft Azure": 3.0,
    "DigitalOcean": 3.0,
    "Hetzner": 3.0,
    "OVHcloud": 2.5,
    "Vultr": 2.5,
    "Linode": 2.0,
    "Contabo": 2.0,
    "Alibaba Cloud": 3.0,
    "Tencent Cloud": 2.5,
    "Huawei Cloud": 1.5,
    "Oracle Cloud": 1.5,
    "Leaseweb": 1.0,
    "Scaleway": 1.0,
    "UpCloud": 0.5,
    "BuyVM": 0.5,
    "GTHost": 0.5,
    "Melbicom": 0.5,
    "Scalaxy": 0.3,
    "GleSYS": 0.3,
    "IBM Cloud": 0.5,
    "Rackspace": 0.3,
}
VPN_WEIGHTS = {"ProtonVPN": 3.0, "Mullvad": 2.0, "Apple Private Relay": 4.0}
TOR_WEIGHTS = {"Tor": 1.0}
KIND_OF_LABEL = {"hosting": "datacenter", "vpn": "vpn", "tor": "tor"}


@dataclass(frozen=True)
class RangePool:
    """Address ranges of one kind: inclusive [start, end] as uint32 plus a per-range pick weight."""

    starts: np.ndarray
    ends: np.ndarray
    weights: np.ndarray  # normalised
    org: np.ndarray  # index into `orgs`
    orgs: tuple[str, ...]
    countries: np.ndarray  # ISO code per range ("" when unknown)
    avoid_hosting: bool = False  # redraw addresses inside known hosting/VPN/Tor ranges

    def draw(self, rng: np.random.Generator, n: int, country: str | None = None) -> np.ndarray:
        weights = self.weights
        if country is not None:
            mask = self.countries == country
            if mask.any():
                weights = np.where(mask, weights, 0.0)
                weights = weights / weights.sum()
        idx = rng.choice(len(self.starts), size=n, p=weights)
        span = (self.ends[idx] - self.starts[idx] + 1).astype(np.float64)
        addr = (self.starts[idx] + np.floor(rng.random(n) * span)).astype(np.uint32)
        for _ in range(8 if self.avoid_hosting else 0):
            bad = in_hosting(addr)
            if not bad.any():
                break
            addr[bad] = (
                self.starts[idx[bad]] + np.floor(rng.random(int(bad.sum())) * span[bad])
            ).astype(np.uint32)
        # Avoid .0 and .255 host parts, which real clients rarely show.
        last = addr & 0xFF
        return np.where((last == 0) | (last == 255), addr ^ 0x7, addr).astype(np.uint32)


def _data_path(name: str) -> Path:
    return Path(str(resources.files("distillguard.simulate") / "data" / name))


@cache
def isp_table() -> dict:
    with open(_data_path("isp_ranges.toml"), "rb") as fh:
        return tomllib.load(fh)


@cache
def _iporigin_ranges() -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[tuple[str, str], ...]]:
    from iporigin import _data  # ranges shipped in the wheel; no network

    ds = _data.dataset()
    starts = np.asarray(ds.v4_starts, dtype=np.uint64).astype(np.uint32)
    ends = np.asarray(ds.v4_ends, dtype=np.uint64).astype(np.uint32)
    labels = np.asarray(ds.v4_labels, dtype=np.int64)
    return starts, ends, labels, tuple(tuple(x) for x in ds.labels)


@cache
def _hosting_index() -> tuple[np.ndarray, np.ndarray]:
    """Sorted starts and running-max ends of every hosting/VPN/Tor/CDN/bot range in iporigin."""
    starts, ends, _, _ = _iporigin_ranges()
    order = np.argsort(starts, kind="stable")
    return starts[order].astype(np.int64), np.maximum.accumulate(ends[order].astype(np.int64))


def in_hosting(addr: np.ndarray) -> np.ndarray:
    """Whether each address lies in a range iporigin attributes to a hosting/VPN/Tor provider."""
    starts, max_end = _hosting_index()
    i = np.searchsorted(starts, addr.astype(np.int64), side="right") - 1
    return (i >= 0) & (addr.astype(np.int64) <= max_end[np.maximum(i, 0)])


def _provider_pool(weights_by_provider: dict[str, float]) -> RangePool:
    starts, ends, labels, names = _iporigin_ranges()
    orgs = tuple(weights_by_provider)
    sel_s, sel_e, sel_w, sel_o = [], [], [], []
    for oi, org in enumerate(orgs):
        label_ids = [i for i, (prov, _) in enumerate(names) if prov == org]
        mask = np.isin(labels, label_ids)
        if not mask.any():
            continue
        s, e = starts[mask], ends[mask]
        # Within a provider, bigger ranges get more draws, but sub-linearly so small ones appear.
        w = np.sqrt(e.astype(np.float64) - s + 1)
        sel_s.append(s)
        sel_e.append(e)
        sel_w.append(w / w.sum() * weights_by_provider[org])
        sel_o.append(np.full(len(s), oi))
    w = np.concatenate(sel_w)
    return RangePool(
        np.concatenate(sel_s),
        np.concatenate(sel_e),
        w / w.sum(),
        np.concatenate(sel_o),
        orgs,
        np.full(len(w), "", dtype=object),
    )


def _isp_pool(kind: str) -> RangePool:
    rows = [r for r in isp_table()["ranges"] if r["kind"] == kind]
    nets = [ipaddress.IPv4Network(r["cidr"]) for r in rows]
    starts = np.array([int(n.network_address) for n in nets], dtype=np.uint32)
    ends = np.array([int(n.broadcast_address) for n in nets], dtype=np.uint32)
    w = np.sqrt(ends.astype(np.float64) - starts + 1)
    return RangePool(
        starts,
        ends,
        w / w.sum(),
        np.arange(len(rows)),
        tuple(r["as_org"] for r in rows),
        np.array([r["country"] for r in rows], dtype=object),
        avoid_hosting=True,
    )


@cache
def pool(kind: str) -> RangePool:
    """The address pool of one network kind."""
    if kind == "datacenter":
        return _provider_pool(DATACENTER_WEIGHTS)
    if kind == "vpn":
        return _provider_pool(VPN_WEIGHTS)
    if kind == "tor":
        return _provider_pool(TOR_WEIGHTS)
    if kind in ("residential", "mobile", "business", "campus"):
        return _isp_pool(kind)
    raise ValueError(f"unknown network kind {kind}")


def ip_strings(addr: np.ndarray) -> pa.Array:
    """Dotted-quad strings for uint32 addresses, built column-wise (no per-row formatting)."""
    addr = addr.astype(np.uint32)
    octets = [
        pa.array(((addr >> s) & 0xFF).astype(np.int64)).cast(pa.string()) for s in (24, 16, 8, 0)
    ]
    return pc.binary_join_element_wise(*octets, ".")


def ranges_to_cidrs(
    starts: np.ndarray, ends: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split inclusive IPv4 ranges into CIDR blocks, all ranges at once.

    Returns (network address, prefix length, index of the source range) per block.
    """
    cur = starts.astype(np.int64)
    end = ends.astype(np.int64)
    src = np.arange(len(cur))
    nets, prefixes, owners = [], [], []
    while len(cur):
        # largest block aligned at `cur` that still fits inside the range
        low = np.where(cur == 0, 1 << 32, cur & -cur)
        room = end - cur + 1
        fit = np.left_shift(1, np.floor(np.log2(room)).astype(np.int64))
        size = np.minimum(low, fit)
        nets.append(cur.copy())
        prefixes.append(32 - np.log2(size).astype(np.int64))
        owners.append(src)
        cur = cur + size
        keep = cur <= end
        cur, end, src = cur[keep], end[keep], src[keep]
    if not nets:
        return np.zeros(0, np.uint32), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return (
        np.concatenate(nets).astype(np.uint32),
        np.concatenate(prefixes),
        np.concatenate(owners),
    )


@cache
def _static_intel() -> pa.Table:
    """Hosting/VPN/Tor ranges (iporigin) and ISP blocks: what an IP-intel feed would list."""
    asn_of = isp_table()["provider_asn"]
    starts, ends, labels, names = _iporigin_ranges()
    wanted = np.array([k in KIND_OF_LABEL for _, k in names])
    keep = wanted[labels]
    nets, prefix, owner = ranges_to_cidrs(starts[keep], ends[keep])
    lab = labels[keep][owner]
    prov = np.array([p for p, _ in names], dtype=object)[lab]
    kind = np.array([KIND_OF_LABEL.get(k, "") for _, k in names], dtype=object)[lab]
    asn = np.array([asn_of.get(p) for p, _ in names], dtype=object)[lab]
    cidr = pc.binary_join_element_wise(ip_strings(nets), ints_to_str(prefix), "/")
    isp = [r for r in isp_table()["ranges"] if r["kind"] != "campus"]  # campuses rarely labelled
    return pa.table(
        {
            "cidr": pa.concat_arrays([cidr, pa.array([r["cidr"] for r in isp], pa.string())]),
            "asn": pa.array(asn.tolist() + [r["asn"] for r in isp], pa.int64()),
            "as_org": pa.array(prov.tolist() + [r["as_org"] for r in isp], pa.string()),
            "kind": pa.array(
                kind.tolist() + ["mobile" if r["kind"] == "mobile" else "residential" for r in isp],
                pa.string(),
            ),
        }
    )


def ints_to_str(values: np.ndarray) -> pa.Array:
    return pa.array(values.astype(np.int64)).cast(pa.string())


def write_ip_intel(path: Path, proxy_ips: np.ndarray) -> int:
    """Write what a provider would know: hosting/VPN/Tor ranges, ISP blocks, flagged proxy exits.

    `proxy_ips` are residential addresses that a reputation feed has seen relaying traffic; they
    are written as /32 `proxy` entries, which override their ISP block (longest prefix wins).
    """
    proxies = np.unique(proxy_ips.astype(np.uint32))
    n = len(proxies)
    flagged = pa.table(
        {
            "cidr": pc.binary_join_element_wise(ip_strings(proxies), pa.scalar("32"), "/"),
            "asn": pa.nulls(n, pa.int64()),
            "as_org": pa.array(["residential proxy exit"] * n, pa.string()),
            "kind": pa.array(["proxy"] * n, pa.string()),
        }
    )
    table = pa.concat_tables([_static_intel(), flagged])
    pacsv.write_csv(table, path, pacsv.WriteOptions(quoting_style="needed"))
    return table.num_rows


# ----------------------------------------------------------------------------- user agents

SDK_PYTHON = [
    *(f"Anthropic/Python 0.{v}.{p}" for v in (34, 37, 39, 40, 42, 45, 49, 52) for p in (0, 1)),
    *(f"OpenAI/Python 1.{v}.{p}" for v in (35, 40, 47, 54, 58, 61, 68) for p in (0, 2)),
]
SDK_NODE = [
    *(f"Anthropic/JS 0.{v}.{p}" for v in (27, 30, 32, 33, 36, 39) for p in (0, 1)),
    *(f"OpenAI/JS 4.{v}.{p}" for v in (52, 67, 73, 77, 85) for p in (0, 1)),
]
SDK_OTHER = [
    "python-httpx/0.27.0",
    "python-httpx/0.27.2",
    "python-httpx/0.28.1",
    "python-requests/2.31.0",
    "python-requests/2.32.3",
    "curl/7.81.0",
    "curl/8.5.0",
    "curl/8.7.1",
    "axios/1.7.7",
    "axios/1.6.8",
    "Go-http-client/2.0",
    "okhttp/4.12.0",
    "langchain-anthropic/0.3.0",
    "langchain-openai/0.2.9",
    "litellm/1.52.0",
    "llama-index/0.11.20",
    "aiohttp/3.10.10",
]
AGENT_CLI = [
    "claude-cli/1.0.3 (external, cli)",
    "claude-cli/1.0.17 (external, cli)",
    "aider/0.68.0",
    "aider/0.72.1",
    "Cline/3.2.0",
    "continue/0.9.240",
    "opencode/0.3.1",
    "Zed/0.172.4",
    "cursor/0.45.9",
    "goose/1.0.4",
]


@cache
def browser_agents() -> tuple[np.ndarray, np.ndarray]:
    """Real browser User-Agent strings and their market weights, from fake-useragent's data file."""
    path = Path(str(resources.files("fake_useragent") / "data" / "browsers.jsonl"))
    weights: dict[str, float] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            weights[rec["useragent"]] = weights.get(rec["useragent"], 0.0) + float(rec["percent"])
    ua = np.array(sorted(weights), dtype=object)
    w = np.array([weights[u] for u in ua]) + 1e-3
    return ua, w / w.sum()


def ua_library(kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Strings and weights of the user agents a population uses."""
    if kind == "browser_mix":
        b, bw = browser_agents()
        s = np.array(SDK_PYTHON + SDK_NODE, dtype=object)
        return np.concatenate([b, s]), np.concatenate([bw * 0.6, np.full(len(s), 0.4 / len(s))])
    lists = {
        "sdk_python": SDK_PYTHON,
        "sdk_mix": SDK_PYTHON + SDK_NODE + SDK_OTHER,
        "agent_cli": AGENT_CLI + SDK_NODE[:4],
        "batch": SDK_PYTHON + SDK_OTHER[:5] + ["Go-http-client/2.0"],
        "scripted": [
            "python-httpx/0.27.0",
            "python-requests/2.32.3",
            "OpenAI/Python 1.54.0",
            "aiohttp/3.10.10",
            "Anthropic/Python 0.39.0",
        ],
        "varied": SDK_PYTHON + SDK_NODE + SDK_OTHER + AGENT_CLI,
    }
    items = np.array(lists[kind], dtype=object)
    return items, np.full(len(items), 1.0 / len(items))
