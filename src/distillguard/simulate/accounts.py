"""Accounts of every persona: identities (contract section 2) and the per-account behaviour knobs.

Account-level work is small (tens of thousands of rows at full scale), so identity strings are
formatted here in plain Python; the per-event hot path (events.py) only indexes these arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from distillguard import contract
from distillguard.simulate import network
from distillguard.simulate.scenario import Persona, Scenario
from distillguard.simulate.text import hex_ids, library, scramble

DAY_MS = 86_400_000
HOUR_MS = 3_600_000

TZ_OF_COUNTRY = {
    "US": -6.0,
    "CA": -5.0,
    "BR": -3.0,
    "GB": 0.0,
    "FR": 1.0,
    "DE": 1.0,
    "CH": 1.0,
    "IN": 5.5,
    "SG": 8.0,
    "CN": 8.0,
    "KR": 9.0,
    "JP": 9.0,
    "AU": 10.0,
}
BENIGN_COUNTRIES = {
    "US": 0.38,
    "GB": 0.07,
    "DE": 0.07,
    "FR": 0.05,
    "IN": 0.1,
    "JP": 0.05,
    "BR": 0.05,
    "CA": 0.05,
    "KR": 0.04,
    "AU": 0.04,
    "SG": 0.03,
    "CN": 0.03,
    "CH": 0.04,
}
ATTACKER_COUNTRIES = {
    "US": 0.45,
    "SG": 0.15,
    "GB": 0.1,
    "CA": 0.1,
    "DE": 0.05,
    "JP": 0.05,
    "AU": 0.1,
}

FIRST = (
    "james",
    "mary",
    "wei",
    "li",
    "ana",
    "raj",
    "priya",
    "chen",
    "david",
    "sarah",
    "ahmed",
    "fatima",
    "lucas",
    "emma",
    "noah",
    "olivia",
    "hiroshi",
    "yuki",
    "min-jun",
    "ji-woo",
    "carlos",
    "sofia",
    "ivan",
    "elena",
    "omar",
    "aisha",
    "mateo",
    "camila",
    "liam",
    "ava",
    "arjun",
    "neha",
    "tom",
    "anna",
    "paul",
    "laura",
    "felix",
    "clara",
    "jonas",
    "lea",
    "marco",
    "giulia",
    "pierre",
    "chloe",
    "sam",
    "kim",
    "daniel",
    "grace",
    "ben",
    "zoe",
    "alex",
    "nina",
)
LAST = (
    "smith",
    "johnson",
    "wang",
    "zhang",
    "kumar",
    "sharma",
    "garcia",
    "martinez",
    "mueller",
    "schmidt",
    "tanaka",
    "suzuki",
    "kim",
    "park",
    "nguyen",
    "tran",
    "silva",
    "santos",
    "brown",
    "jones",
    "miller",
    "davis",
    "wilson",
    "moore",
    "taylor",
    "anderson",
    "thomas",
    "jackson",
    "white",
    "harris",
    "martin",
    "thompson",
    "lopez",
    "lee",
    "walker",
    "hall",
    "allen",
    "young",
    "king",
    "wright",
    "scott",
    "green",
    "baker",
    "adams",
    "nelson",
    "hill",
    "campbell",
    "mitchell",
    "roberts",
    "carter",
)
CONSUMER_DOMAINS = (
    "gmail.com",
    "outlook.com",
    "yahoo.com",
    "icloud.com",
    "proton.me",
    "hotmail.com",
    "gmx.de",
    "qq.com",
    "163.com",
    "naver.com",
    "yahoo.co.jp",
)
CONSUMER_WEIGHTS = (0.45, 0.15, 0.07, 0.08, 0.04, 0.05, 0.03, 0.04, 0.03, 0.03, 0.03)
LOOKALIKE_DOMAINS = (
    "gmaill.com",
    "outlook-mail.net",
    "gmx-mail.net",
    "protonmai1.com",
    "yahoo-inbox.com",
    "icloud-id.net",
    "mail-box.io",
    "fastmail.cc",
)
UNIVERSITY_DOMAINS = (
    "stanford.edu",
    "berkeley.edu",
    "cmu.edu",
    "harvard.edu",
    "cam.ac.uk",
    "ox.ac.uk",
    "ethz.ch",
    "tsinghua.edu.cn",
    "u-tokyo.ac.jp",
)
UNIVERSITY_COUNTRY = ("US", "US", "US", "US", "GB", "GB", "CH", "CN", "JP")
ORG_PREFIX = (
    "north",
    "blue",
    "bright",
    "clear",
    "data",
    "cloud",
    "quant",
    "nova",
    "terra",
    "vertex",
    "summit",
    "harbor",
    "pioneer",
    "lumen",
    "atlas",
    "cobalt",
    "river",
    "maple",
    "granite",
    "orbit",
    "signal",
    "tandem",
    "kestrel",
    "meridian",
)
ORG_SUFFIX = (
    "wind",
    "stone",
    "path",
    "works",
    "labs",
    "systems",
    "logic",
    "bridge",
    "point",
    "forge",
    "field",
    "scale",
    "metrics",
    "health",
    "capital",
    "robotics",
    "bio",
    "ware",
)
ORG_TLD = (".com", ".com", ".com", ".io", ".ai", ".co", ".net", ".de", ".co.uk", ".fr")
CAMPAIGN_STEMS = {
    "A": ("devbuild", "codeflow", "stackops"),
    "B": ("agentlab", "autopilot", "visionops"),
    "C": ("reasonkit", "evalteam", "gradeset"),
}


@dataclass
class PersonaAccounts:
    """Accounts of one persona, with everything events.py needs per account."""

    persona: Persona
    index: int  # persona index in the scenario
    ids: np.ndarray  # uint64 id values (formatted as acct_<hex>)
    account_id: pa.Array
    n_events: np.ndarray
    active_start: np.ndarray  # ms
    active_end: np.ndarray  # ms
    tz_hours: np.ndarray
    gap_cv: np.ndarray
    ip_off: np.ndarray
    ip_cnt: np.ndarray
    ua_off: np.ndarray
    ua_cnt: np.ndarray
    system: np.ndarray  # object: str or None, per account
    template: np.ndarray  # wrapper/batch/benchmark template code per account
    order: np.ndarray  # attack wrapper slot order code per account
    table: pa.Table  # contract.ACCOUNTS rows
    # ground truth only: sign-up run of a batch-registered account (-1 = registered alone)
    signup_batch: np.ndarray | None = None


@dataclass
class SharedPools:
    """The scenario's flat address array (accounts index windows of it) and its shared pools.

    Mobile carriers put many subscribers behind one CGNAT address and VPN users share exits, so
    those two pools are scenario-wide and deliberately small.
    """

    ips: list[np.ndarray]
    cgnat: np.ndarray
    vpn: np.ndarray
    ua: list[str]
    size: int = 0
    cgnat_off: int = 0
    vpn_off: int = 0

    @staticmethod
    def create(rng: np.random.Generator, n_accounts: int) -> SharedPools:
        cgnat = network.pool("mobile").draw(rng, max(64, n_accounts // 40))
        vpn = network.pool("vpn").draw(rng, max(32, n_accounts // 200))
        pools = SharedPools([], cgnat, vpn, [])
        pools.cgnat_off = pools.add(cgnat)
        pools.vpn_off = pools.add(vpn)
        return pools

    def add(self, addrs: np.ndarray) -> int:
        off = self.size
        self.ips.append(addrs.astype(np.uint32))
        self.size += len(addrs)
        return off

    def flat(self) -> np.ndarray:
        return np.concatenate(self.ips) if self.ips else np.zeros(0, np.uint32)


def scaled_counts(p: Persona, scale: float, min_accounts: int) -> tuple[int, int]:
    accounts = max(min_accounts, math.ceil(p.accounts * scale))
    events = max(accounts, round(p.events * scale))
    return accounts, events


def allocate(total: int, weights: np.ndarray) -> np.ndarray:
    """Integers >= 1 summing exactly to `total`, proportional to weights (largest remainder)."""
    n = len(weights)
    spare = total - n
    share = weights / weights.sum() * spare
    base = np.floor(share).astype(np.int64)
    remainder = spare - int(base.sum())
    if remainder > 0:
        order = np.argsort(-(share - base), kind="stable")[:remainder]
        base[order] += 1
    return base + 1


def _pick(rng: np.random.Generator, options: dict[str, float], n: int) -> np.ndarray:
    keys = np.array(list(options), dtype=object)
    w = np.array(list(options.values()), dtype=np.float64)
    return keys[rng.choice(len(keys), size=n, p=w / w.sum())]


def _org_domain(rng: np.random.Generator, n: int) -> list[str]:
    p = rng.choice(len(ORG_PREFIX), n)
    s = rng.choice(len(ORG_SUFFIX), n)
    t = rng.choice(len(ORG_TLD), n)
    return [f"{ORG_PREFIX[a]}{ORG_SUFFIX[b]}{ORG_TLD[c]}" for a, b, c in zip(p, s, t, strict=True)]


def _person_local(rng: np.random.Generator, n: int, style: np.ndarray | None = None) -> list[str]:
    f = rng.choice(len(FIRST), n)
    last = rng.choice(len(LAST), n)
    num = rng.integers(1, 99, n)
    form = rng.integers(0, 5, n) if style is None else style
    out = []
    for a, b, k, c in zip(f, last, num, form, strict=True):
        fn, ln = FIRST[a].replace("-", ""), LAST[b]
        out.append((f"{fn}.{ln}", f"{fn[0]}{ln}", f"{fn}{ln}{k}", f"{fn}_{ln}", f"{ln}.{fn}{k}")[c])
    return out


def _timezones(countries: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    tz = np.array([TZ_OF_COUNTRY.get(c, 0.0) for c in countries])
    us = countries == "US"
    tz[us] = rng.choice([-5.0, -6.0, -8.0], int(us.sum()), p=[0.5, 0.2, 0.3])
    return tz


def _disposable_domains() -> list[str]:
    import disposable_email_domains as ded

    return sorted(ded.blocklist)[:5000]


def _active_windows(
    p: Persona, sc: Scenario, rng: np.random.Generator, n: int
) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = p.active_share
    share = lo + (hi - lo) * rng.random(n)
    span = sc.days * DAY_MS
    length = np.maximum(share * span, HOUR_MS)
    start = sc.start_ms + rng.random(n) * (span - length)
    return start.astype(np.int64), (start + length).astype(np.int64)


def _organic_signups(
    p: Persona,
    sc: Scenario,
    rng: np.random.Generator,
    start: np.ndarray,
    end: np.ndarray,
    org_of: np.ndarray,
    n_orgs: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sign-up times of real customers, and their activity windows adjusted to match.

    Accounts are mostly months to years old; `new_account_share` of them sign up during the
    window and start using the API within minutes to two days. Organisations onboard in waves:
    most members of an org register within a few days of each other (a benign batch sign-up).
    """
    n = len(start)
    age = np.minimum(rng.exponential(300.0, n), 1000.0) + rng.random(n) * 2
    created = sc.start_ms - age * DAY_MS
    if p.accounts_per_org > 1:
        org_age = np.minimum(rng.exponential(300.0, n_orgs), 1000.0) + 3
        wave = rng.random(n) < 0.7
        onboard = sc.start_ms - org_age[org_of] * DAY_MS + rng.uniform(0, 3, n) * DAY_MS
        created = np.where(
            wave, onboard, np.maximum(created, sc.start_ms - org_age[org_of] * DAY_MS)
        )
    new = rng.random(n) < p.new_account_share
    span = sc.days * DAY_MS
    signup = sc.start_ms + rng.random(n) * span * 0.9
    first_use = signup + rng.uniform(0.1, 48.0, n) * HOUR_MS
    window_end = sc.start_ms + span
    length = end - start
    new_start = np.minimum(first_use, window_end - HOUR_MS)
    new_end = np.minimum(new_start + length, window_end)
    created = np.where(new, signup, created).astype(np.int64)
    return (
        created,
        np.where(new, new_start, start).astype(np.int64),
        np.where(new, new_end, end).astype(np.int64),
    )


def _created_at(
    p: Persona, rng: np.random.Generator, active_start: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Sign-up times, and each account's sign-up run (batch sign-ups; -1 = registered alone)."""
    n = len(active_start)
    alone = np.full(n, -1, np.int64)
    if p.signup == "organic":
        age = np.minimum(rng.exponential(300.0, n), 1000.0) + rng.random(n) * 2
        return (active_start.min() - age * DAY_MS).astype(np.int64), alone
    if p.signup == "staggered":
        lead = rng.uniform(3.0, 45.0, n) * DAY_MS + rng.uniform(8, 22, n) * HOUR_MS
        return (active_start - lead).astype(np.int64), alone
    # batch: accounts are registered in bursts of tens, hours apart, days before they are used
    order = np.argsort(active_start, kind="stable")
    group = np.zeros(n, np.int64)
    sizes = rng.integers(8, 120, n // 8 + 1)  # batch sizes vary from one sign-up run to the next
    group[order] = np.searchsorted(np.cumsum(sizes), np.arange(n), side="right")
    n_groups = int(group.max()) + 1
    first_use = np.full(n_groups, np.iinfo(np.int64).max)
    np.minimum.at(first_use, group, active_start)
    group_time = first_use - rng.uniform(1.0, 20.0, n_groups) * DAY_MS
    return (group_time[group] + rng.uniform(0, 3, n) * HOUR_MS).astype(np.int64), group


def _emails(
    p: Persona, rng: np.random.Generator, n: int, org_of: np.ndarray, org_domains: list[str]
) -> tuple[list[str], list[str]]:
    if p.email in ("corporate", "startup", "attacker_corporate"):
        domains = [org_domains[o] for o in org_of]
        locals_ = _person_local(rng, n, rng.choice([0, 0, 0, 1, 3], n))
    elif p.email == "university":
        domains = [org_domains[o] for o in org_of]
        locals_ = _person_local(rng, n)
    elif p.email == "consumer":
        domains = list(_pick(rng, dict(zip(CONSUMER_DOMAINS, CONSUMER_WEIGHTS, strict=True)), n))
        locals_ = _person_local(rng, n)
    else:  # attacker sign-up factories: scheme names, throwaway or look-alike domains
        stems = CAMPAIGN_STEMS.get(p.campaign or "", ("user", "acct", "team"))
        disposable = _disposable_domains()
        kind = rng.choice(3, n, p=[0.55, 0.2, 0.25])
        stem = rng.choice(len(stems), n)
        num = rng.integers(100, 99999, n)
        locals_, domains = [], []
        for k, s, m in zip(kind, stem, num, strict=True):
            locals_.append(f"{stems[s]}{m}")
            if k == 0:
                domains.append(disposable[int(rng.integers(len(disposable)))])
            elif k == 1:
                domains.append(LOOKALIKE_DOMAINS[int(rng.integers(len(LOOKALIKE_DOMAINS)))])
            else:
                domains.append(("gmail.com", "outlook.com", "hotmail.com")[int(rng.integers(3))])
    return [f"{a}@{d}" for a, d in zip(locals_, domains, strict=True)], domains


def _pooled_ids(
    rng: np.random.Generator, n: int, share: float, pool_per: int, salt: int
) -> np.ndarray:
    """Opaque hashes: unique per account, except `share` of accounts drawing from a small pool."""
    ids = rng.integers(0, 2**63, n, dtype=np.int64).astype(np.uint64)
    shared = rng.random(n) < share
    k = int(shared.sum())
    if k:
        pool = rng.integers(0, 2**63, max(1, k // pool_per), dtype=np.int64).astype(np.uint64)
        ids[shared] = pool[rng.integers(0, len(pool), k)]
    return scramble(ids, salt)


def build_persona_accounts(
    sc: Scenario,
    p: Persona,
    index: int,
    scale: float,
    rng: np.random.Generator,
    pools: SharedPools,
    proxy_flags: list[np.ndarray],
    account_salt: int,
    wrapper_offset: int = 0,
    seed: int = 0,
) -> PersonaAccounts:
    n, total = scaled_counts(p, scale, sc.min_accounts)
    n_events = allocate(
        total, rng.lognormal(0.0, p.volume_sigma, n) if p.volume_sigma > 0 else np.ones(n)
    )
    start, end = _active_windows(p, sc, rng, n)
    countries = _pick(rng, ATTACKER_COUNTRIES if p.is_attacker else BENIGN_COUNTRIES, n)

    n_orgs = max(1, round(n / p.accounts_per_org)) if p.accounts_per_org > 1 else n
    org_of = rng.integers(0, n_orgs, n) if p.accounts_per_org > 1 else np.arange(n)
    if p.email == "university":
        uni = rng.integers(0, len(UNIVERSITY_DOMAINS), n_orgs)
        org_domains = [UNIVERSITY_DOMAINS[u] for u in uni]
        countries = np.array([UNIVERSITY_COUNTRY[uni[o]] for o in org_of], dtype=object)
    else:
        org_domains = _org_domain(rng, n_orgs)
    tz = _timezones(countries, rng)
    emails, domains = _emails(p, rng, n, org_of, org_domains)

    ids = scramble(rng.integers(0, 2**63, n, dtype=np.int64).astype(np.uint64), account_salt)
    account_id = hex_ids("acct_", ids, 12)
    signup_batch = np.full(n, -1, np.int64)
    if p.signup == "organic":
        created, start, end = _organic_signups(p, sc, rng, start, end, org_of, n_orgs)
    else:
        created, signup_batch = _created_at(p, rng, start)
    created = np.minimum(created, start - 10 * 60_000)

    ip_off, ip_cnt, signup_ip = _networks(
        p, sc, rng, n, org_of, n_orgs, countries, pools, proxy_flags, scale, index
    )
    ua_off, ua_cnt, ua_flat = _user_agents(p, rng, n)
    ua_off = ua_off + len(pools.ua)  # offsets into the scenario-wide list
    pools.ua.extend(ua_flat)

    gap_cv = np.full(n, p.gap_cv)
    if p.timing == "flat" and not p.is_attacker:
        from distillguard.simulate.calibration import draw_client_cv

        gap_cv = np.clip(draw_client_cv(rng, n), 0.3, 15.0)
    if p.is_attacker:
        gap_cv = gap_cv * rng.uniform(0.8, 1.2, n)

    if p.shared_payment > 0 and p.accounts_per_org > 1:
        pay = scramble(org_of.astype(np.uint64) + np.uint64(index * 1_000_003), 0xFEED)
        pay = np.where(rng.random(n) < p.shared_payment, pay, _pooled_ids(rng, n, 0.0, 1, 0xFEED))
    else:
        pay = _pooled_ids(rng, n, p.shared_payment, 12, 0xFEED)
    device = _pooled_ids(rng, n, p.device_reuse, 25, 0xD00D)

    has_org = p.accounts_per_org > 1 or p.email in ("corporate", "attacker_corporate", "university")
    org_ids = [f"org_{index:02d}{o:05d}" if has_org else None for o in org_of]
    tiers = _pick(rng, p.tiers, n)
    table = pa.table(
        {
            "account_id": account_id,
            "created_at": pa.array(created, pa.int64()).cast(contract.TIMESTAMP),
            "tier": pa.array(tiers.tolist(), pa.string()),
            "email_domain": pa.array(domains, pa.string()),
            "payment_fingerprint": hex_ids("pm_", pay, 16),
            "country": pa.array(countries.tolist(), pa.string()),
            "org_id": pa.array(org_ids, pa.string()),
            "signup_ip": network.ip_strings(signup_ip),
            "email": pa.array(emails, pa.string()),
            "device_fingerprint": hex_ids("dev_", device, 16),
        },
        schema=contract.ACCOUNTS,
    )
    system = _system_prompts(p, rng, n, org_of, org_domains)
    template, order = _templates(p, rng, n, wrapper_offset, seed)
    return PersonaAccounts(
        p,
        index,
        ids,
        account_id,
        n_events,
        start,
        end,
        tz,
        gap_cv,
        ip_off,
        ip_cnt,
        ua_off,
        ua_cnt,
        system,
        template,
        order,
        table,
        signup_batch,
    )


def _networks(
    p: Persona,
    sc: Scenario,
    rng: np.random.Generator,
    n: int,
    org_of: np.ndarray,
    n_orgs: int,
    countries: np.ndarray,
    pools: SharedPools,
    proxy_flags: list[np.ndarray],
    scale: float,
    index: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each account gets a window [off, off+cnt) into the scenario's flat address array."""
    lo, hi = p.ips_per_account
    if p.network == "home":
        cnt = rng.integers(lo, hi + 1, n)
        addrs = (
            np.concatenate(
                [
                    network.pool("residential").draw(rng, int(c), countries[i])
                    for i, c in enumerate(cnt)
                ]
            )
            if n
            else np.zeros(0, np.uint32)
        )
        mobile = rng.random(len(addrs)) < p.mobile_share
        if mobile.any():
            addrs[mobile] = pools.cgnat[rng.integers(0, len(pools.cgnat), int(mobile.sum()))]
        base = pools.add(addrs)
        off = base + np.concatenate([[0], np.cumsum(cnt)[:-1]])
        return off.astype(np.int64), cnt.astype(np.int64), addrs[off - base]
    if p.network in ("nat", "campus", "datacenter"):
        kind = {"nat": "business", "campus": "campus", "datacenter": "datacenter"}[p.network]
        groups = n_orgs if p.network in ("nat", "campus") else n
        cnt_g = rng.integers(lo, hi + 1, groups)
        if p.network == "campus":
            addrs = _campus_addrs(rng, cnt_g)
        else:
            addrs = network.pool(kind).draw(rng, int(cnt_g.sum()))
        base = pools.add(addrs)
        off_g = base + np.concatenate([[0], np.cumsum(cnt_g)[:-1]])
        g = org_of if p.network in ("nat", "campus") else np.arange(n)
        return off_g[g].astype(np.int64), cnt_g[g].astype(np.int64), addrs[off_g[g] - base]
    if p.network in ("vpn", "mobile"):
        shared = pools.vpn if p.network == "vpn" else pools.cgnat
        off_shared = pools.vpn_off if p.network == "vpn" else pools.cgnat_off
        window = max(1, min(len(shared), hi * 4))
        start = rng.integers(0, max(1, len(shared) - window + 1), n)
        cnt = np.full(n, window)
        return (off_shared + start).astype(np.int64), cnt.astype(np.int64), shared[start]
    # proxy_pool: one pool per campaign persona; accounts rotate through overlapping sticky windows
    size = max(20, math.ceil(p.proxy_pool * scale))
    window = max(1, min(size, p.proxy_sticky))
    if p.proxy_match_country:
        # careful operators rent exits in each account's declared country: one sub-pool per
        # country, sized by its accounts, and every account's window stays inside its own
        names, per = np.unique(countries.astype(str), return_counts=True)
        sizes = np.maximum(window, np.round(size * per / n).astype(np.int64))
        parts = [_proxy_addrs(p, rng, int(k), str(c)) for c, k in zip(names, sizes, strict=True)]
        addrs = np.concatenate([a for a, _ in parts])
        resid = np.concatenate([r for _, r in parts])
        seg_off = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        ci = np.searchsorted(names, countries.astype(str))
        start = seg_off[ci] + np.floor(rng.random(n) * (sizes[ci] - window + 1)).astype(np.int64)
    else:
        addrs, resid = _proxy_addrs(p, rng, size, None)
        start = rng.integers(0, len(addrs) - window + 1, n)
    if len(resid):
        proxy_flags.append(resid[rng.random(len(resid)) < 0.25])
    base = pools.add(addrs)
    signup = addrs[start + rng.integers(0, window, n)]
    return (base + start).astype(np.int64), np.full(n, window, np.int64), signup


def _proxy_addrs(
    p: Persona, rng: np.random.Generator, size: int, country: str | None
) -> tuple[np.ndarray, np.ndarray]:
    """A proxy pool of `size` exits with the persona's kind mix; also its residential exits."""
    kinds = _pick(rng, p.proxy_kinds, size)
    addrs = np.zeros(size, np.uint32)
    for kind in np.unique(kinds):
        m = kinds == kind
        local = country if kind in ("residential", "mobile") else None
        src = str(kind)
        if local is not None and not (network.pool(src).countries == local).any():
            src = "residential"  # no carrier block listed for that country: home broadband
        addrs[m] = network.pool(src).draw(rng, int(m.sum()), local)
    return addrs, addrs[kinds == "residential"]


def _campus_addrs(rng: np.random.Generator, cnt_g: np.ndarray) -> np.ndarray:
    campus = network.pool("campus")
    # all NAT egress addresses of one university come from its own block
    uni = rng.integers(0, len(campus.starts), len(cnt_g))
    blocks = np.repeat(uni, cnt_g)
    span = (campus.ends[blocks] - campus.starts[blocks] + 1).astype(np.float64)
    return (campus.starts[blocks] + np.floor(rng.random(len(blocks)) * span)).astype(np.uint32)


def _user_agents(
    p: Persona, rng: np.random.Generator, n: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    items, w = network.ua_library(p.ua)
    if p.is_attacker and p.ua == "scripted":
        # a campaign's tooling sends the same handful of client strings from every account
        fixed = items[rng.choice(len(items), size=2, replace=False, p=w)]
        cnt = np.full(n, 2)
        flat = np.tile(fixed, n)
    else:
        cnt = rng.choice([1, 1, 1, 2, 2, 3], n)
        flat = items[rng.choice(len(items), size=int(cnt.sum()), p=w)]
    off = np.concatenate([[0], np.cumsum(cnt)[:-1]])
    return off.astype(np.int64), cnt.astype(np.int64), flat.tolist()


def _system_prompts(
    p: Persona, rng: np.random.Generator, n: int, org_of: np.ndarray, org_domains: list[str]
) -> np.ndarray:
    lib = library().system
    out = np.empty(n, dtype=object)
    if p.system_prompt == "none":
        use = rng.random(n) < 0.15
        gen = lib["generic"]
        out[use] = [gen[i] for i in rng.integers(0, len(gen), int(use.sum()))]
    elif p.system_prompt in ("generic", "agent"):
        opts = lib[p.system_prompt]
        out[:] = [opts[i] for i in rng.integers(0, len(opts), n)]
    elif p.system_prompt == "org":
        # everybody at one company goes through the same internal tool, hence one system prompt
        tmpl = lib["org"]
        names = [d.split(".")[0].capitalize() for d in org_domains]
        org_tmpl = rng.integers(0, len(tmpl), len(org_domains))
        out[:] = [tmpl[org_tmpl[o]].replace("{org}", names[o]) for o in org_of]
    else:  # campaign
        opts = lib["campaign"]
        choice = {"A": 0, "B": 3, "C": 1}.get(p.campaign or "", 1)
        if p.wrapper_templates == 0:  # evasive: ordinary or no system prompts, varied per account
            pool = [None, None, *lib["generic"], opts[choice]]
            out[:] = [pool[i] for i in rng.integers(0, len(pool), n)]
        else:
            alt = 2 if p.campaign == "C" else choice
            out[:] = [opts[choice] if r < 0.7 else opts[alt] for r in rng.random(n)]
    return out


N_ORDERS = 6


def _campaign_key(campaign: str | None) -> int:
    return int.from_bytes((campaign or "-").encode()[:8].ljust(8, b"_"), "little")


def _templates(
    p: Persona, rng: np.random.Generator, n: int, wrapper_offset: int = 0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Per-account wrapper combination code and slot order (attackers), or template (benign)."""
    lib = library()
    if p.prompt_style == "attack":
        sizes = np.array([len(x) for x in lib.wrapper])
        space = int(np.prod(sizes))
        if p.wrapper_templates == 0:
            # one paraphrase (slot choices and order) per account, distinct across the whole
            # campaign: every persona of a campaign takes its own slice of one permutation
            full = space * N_ORDERS
            perm = np.random.default_rng([_campaign_key(p.campaign), seed]).permutation(full)
            pick = perm[(wrapper_offset + np.arange(n)) % full]
            code, order = pick % space, pick // space
        else:
            shared = rng.choice(space, size=p.wrapper_templates, replace=False)
            code = shared[rng.integers(0, p.wrapper_templates, n)]
            order = np.zeros(n, np.int64)
        return code.astype(np.int64), order.astype(np.int64)
    if p.prompt_style == "batch":
        return rng.integers(0, len(lib.batch), n), np.zeros(n, np.int64)
    if p.prompt_style == "benchmark":
        return rng.integers(0, len(lib.benchmark), n), np.zeros(n, np.int64)
    return np.zeros(n, np.int64), np.zeros(n, np.int64)
