"""Evidence about new sign-ups, column-wise: identity and network links to known campaigns, e-mail
shape, bursts and naming patterns among the sign-ups around each one, and the sign-up path.

The full e-mail address is read only here, in memory: it is reduced to its domain and to a keyed
hash of its name pattern (`name_pattern`, only for machine-made names such as `devbuild48213`)
and then dropped. Nothing downstream ever sees the address.
"""

from __future__ import annotations

from functools import lru_cache

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from distillguard.ingest.ipintel import is_disposable_domain
from distillguard.pipeline.enrich import ip_info
from distillguard.signup.known import ANONYMISER_KINDS, HISTORY_SCHEMA, POOL_KINDS, KnownState
from distillguard.signup.policy import WEBMAIL, SignupPolicy

# A machine-made local part: a word stem of 4+ letters, an optional separator, 3+ digits
# (people's own numbered names rarely carry more than two digits: a birth year is the exception
# and is only one sign-up, never a series).
TEMPLATED_NAME = r"^([a-z]{4,})[._-]?[0-9]{3,}$"
PATTERN_SALT = "distillguard-signup-name-v1:"
BRANDS = sorted({b for b in WEBMAIL.values() if len(b) >= 5} - {"email", "ymail", "googlemail"})


def network_columns(table: pa.Table, intel: pa.Table | None) -> pa.Table:
    """Adds `subnet`, `asn`, `ip_kind` for `signup_ip` (classified once per distinct address)."""
    ips = table["signup_ip"].combine_chunks() if table.num_rows else pa.array([], pa.string())
    distinct = pc.unique(ips.filter(pc.is_valid(ips))) if len(ips) else ips
    info = ip_info(distinct, intel) if len(distinct) else None
    cols = {}
    for name in ("subnet", "asn", "ip_kind"):
        if info is None:
            cols[name] = pa.nulls(table.num_rows, pa.string())
            continue
        idx = pc.index_in(ips, value_set=info["client_ip"])
        cols[name] = info[name].combine_chunks().take(idx)
    out = table
    for name, col in cols.items():
        out = out.drop_columns([name]) if name in out.column_names else out
        out = out.append_column(name, col)
    if "name_pattern" not in out.column_names:
        out = out.append_column("name_pattern", pa.nulls(table.num_rows, pa.string()))
    return out


def email_columns(emails: pa.Array, domains: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(domain, name_pattern) from full addresses; the address itself is not returned."""
    lowered = pc.utf8_lower(pc.utf8_trim_whitespace(emails.cast(pa.string())))
    parts = pc.extract_regex(lowered, r"^(?P<local>[^@]+)@(?P<domain>[^@]+)$")
    local, domain = parts.field("local"), parts.field("domain")
    domain = pc.coalesce(pc.utf8_lower(domains.cast(pa.string())), domain)
    stem = pc.if_else(
        pc.fill_null(pc.match_substring_regex(local, TEMPLATED_NAME), False),
        pc.replace_substring_regex(local, TEMPLATED_NAME, r"\1"),
        pa.scalar(None, pa.string()),
    )
    # keyed hash: a series of `devbuild<digits>` names meets itself without storing the name
    con = duckdb.connect()
    try:
        con.register("stem_t", pa.table({"s": stem}))
        hashed = con.sql(
            f"SELECT CASE WHEN s IS NULL THEN NULL ELSE substr(md5('{PATTERN_SALT}' || s), 1, 16)"
            " END AS h FROM stem_t"
        ).to_arrow_table()["h"]
    finally:
        con.close()
    return domain, hashed.combine_chunks()


def _edit_distance_at_most_one(a: str, b: str) -> bool:
    if abs(len(a) - len(b)) > 1 or a == b:
        return a == b
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b, strict=True)) == 1
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))


@lru_cache(maxsize=65536)
def lookalike_of(domain: str) -> str | None:
    """The webmail brand a domain imitates (`gmaill.com` -> gmail), or None."""
    if domain in WEBMAIL:
        return None
    label = domain.split(".")[0]
    for brand in BRANDS:
        if _edit_distance_at_most_one(label, brand) and label != brand:
            return brand
        # brand plus decoration: outlook-mail.net, icloud-id.net, protonmai1.com
        if label != brand and (label.startswith(brand + "-") or label.endswith("-" + brand)):
            return brand
    return None


def lookalike_domains(domains: pa.Array) -> pa.Array:
    """Per row, the imitated brand or null (computed once per distinct domain)."""
    enc = pc.dictionary_encode(domains.cast(pa.string()))
    brands = [lookalike_of(d) if d else None for d in enc.dictionary.to_pylist()]
    return pa.array(brands, pa.string()).take(enc.indices)


def prepare_new(new: pa.Table, intel: pa.Table | None) -> pa.Table:
    """New sign-ups (contract ACCOUNTS columns) -> the columns the check needs, e-mail dropped."""
    n = new.num_rows

    def col(name: str, typ: pa.DataType = pa.string()) -> pa.Array:
        if name in new.column_names:
            return new[name].combine_chunks().cast(typ)
        return pa.nulls(n, typ)

    domain, pattern = email_columns(col("email"), col("email_domain"))
    created = col("created_at", pa.timestamp("ms", tz="UTC")).cast(pa.int64())
    table = pa.table(
        {
            "account_id": col("account_id"),
            "created_ms": created,
            "tier": pc.coalesce(pc.utf8_lower(col("tier")), pa.scalar("unknown")),
            "signup_ip": col("signup_ip"),
            "payment_fingerprint": col("payment_fingerprint"),
            "device_fingerprint": col("device_fingerprint"),
            "email_domain": domain,
            "org_id": col("org_id"),
            "name_pattern": pattern,
        }
    )
    return network_columns(table, intel)


def as_history(prepared: pa.Table) -> pa.Table:
    return prepared.select(HISTORY_SCHEMA.names).cast(HISTORY_SCHEMA)


def evidence(prepared: pa.Table, known: KnownState, policy: SignupPolicy) -> pa.Table:
    """One row per new sign-up: a boolean and a detail column per kind of evidence."""
    con = duckdb.connect()
    try:
        con.register("new_raw", prepared)
        con.execute("CREATE TEMP TABLE new AS SELECT row_number() OVER () - 1 AS i, * FROM new_raw")
        for name in ("payment", "device", "domain", "ip", "subnet", "pool", "pattern", "org"):
            con.register(f"k_{name}", getattr(known, name))
        # everything signed up before, plus this batch itself (causal: only earlier or same time)
        con.register("hist", known.history)
        ctx_cols = (
            "account_id, created_ms, subnet, asn, ip_kind, name_pattern, payment_fingerprint, "
            "org_id"
        )
        con.execute(
            f"CREATE TEMP TABLE ctx AS SELECT {ctx_cols} FROM hist "
            f"UNION ALL SELECT {ctx_cols} FROM new"
        )
        pools = ", ".join(f"'{k}'" for k in POOL_KINDS)
        burst_ms = int(policy.burst_minutes * 60_000)
        naming_ms = int(policy.naming_hours * 3_600_000)
        table = con.sql(
            f"""
            WITH burst_subnet AS (
              SELECT n.i, count(*) AS k FROM new n JOIN ctx c
                ON c.subnet = n.subnet AND c.account_id <> n.account_id
               AND c.created_ms BETWEEN n.created_ms - {burst_ms} AND n.created_ms
              GROUP BY n.i),
            burst_pool AS (
              SELECT n.i, count(*) AS k FROM new n JOIN ctx c
                ON c.asn = n.asn AND c.account_id <> n.account_id AND n.ip_kind IN ({pools})
               AND c.created_ms BETWEEN n.created_ms - {burst_ms} AND n.created_ms
              GROUP BY n.i),
            naming AS (
              SELECT n.i, count(*) AS k FROM new n JOIN ctx c
                ON c.name_pattern = n.name_pattern AND c.account_id <> n.account_id
               AND c.created_ms BETWEEN n.created_ms - {naming_ms} AND n.created_ms
              GROUP BY n.i),
            card_reuse AS (
              -- other accounts, signed up earlier, paying with the same instrument and not
              -- sharing an organisation with this one (colleagues on a company card are normal)
              SELECT n.i, count(DISTINCT c.account_id) AS k FROM new n JOIN ctx c
                ON c.payment_fingerprint = n.payment_fingerprint
               AND c.account_id <> n.account_id AND c.created_ms <= n.created_ms
               AND (c.org_id IS NULL OR n.org_id IS NULL OR c.org_id <> n.org_id)
              GROUP BY n.i)
            SELECT n.i, n.account_id, n.tier, n.email_domain, n.signup_ip, n.subnet, n.asn,
                   n.ip_kind, n.org_id,
                   kp.campaign_id AS payment_campaign, kp.n_flagged AS payment_n,
                   kd.campaign_id AS device_campaign, kd.n_flagged AS device_n,
                   ki.campaign_id AS ip_campaign, ki.share AS ip_share,
                   ks.campaign_id AS subnet_campaign, ks.share AS subnet_share,
                   ko.campaign_id AS pool_campaign, ko.share AS pool_share,
                   km.campaign_id AS domain_campaign, km.n_flagged AS domain_n,
                   kt.campaign_id AS pattern_campaign, kt.n_flagged AS pattern_n,
                   kg.campaign_id AS org_campaign, kg.n_flagged AS org_n, kg.n AS org_seen,
                   coalesce(cr.k, 0) AS card_k,
                   greatest(coalesce(bs.k, 0), coalesce(bp.k, 0)) AS burst_k,
                   CASE WHEN coalesce(bp.k, 0) > coalesce(bs.k, 0) THEN n.asn ELSE n.subnet END
                     AS burst_key,
                   coalesce(nm.k, 0) AS naming_k
            FROM new n
            LEFT JOIN k_payment kp ON kp.key = n.payment_fingerprint
            LEFT JOIN k_device kd ON kd.key = n.device_fingerprint
            LEFT JOIN k_ip ki ON ki.key = n.signup_ip
            LEFT JOIN k_subnet ks ON ks.key = n.subnet
            LEFT JOIN k_pool ko ON ko.key = n.asn AND n.ip_kind IN ({pools})
            LEFT JOIN k_domain km ON km.key = n.email_domain
            LEFT JOIN k_pattern kt ON kt.key = n.name_pattern
            LEFT JOIN k_org kg ON kg.key = n.org_id
            LEFT JOIN card_reuse cr ON cr.i = n.i
            LEFT JOIN burst_subnet bs ON bs.i = n.i
            LEFT JOIN burst_pool bp ON bp.i = n.i
            LEFT JOIN naming nm ON nm.i = n.i
            ORDER BY n.i
            """
        ).to_arrow_table()
    finally:
        con.close()
    domains = table["email_domain"].combine_chunks()
    lookalike = lookalike_domains(domains)
    disposable = is_disposable_domain(domains)
    programme = pc.is_in(table["tier"], value_set=pa.array(list(policy.programme_tiers)))
    # an address that IP intelligence lists as a residential-proxy or Tor exit: someone hiding
    # where they sign up from (commercial VPNs are not counted: many ordinary users run one)
    proxy_exit = pc.fill_null(
        pc.is_in(table["ip_kind"], value_set=pa.array(list(ANONYMISER_KINDS))), False
    )
    # a programme sign-up whose address cannot show eligibility: webmail, throwaway or look-alike
    untrusted = pc.or_(
        pc.or_(pc.fill_null(disposable, False), pc.is_valid(lookalike)),
        pc.fill_null(pc.is_in(domains, value_set=pa.array(list(WEBMAIL))), False),
    )
    flags = {
        "payment": pc.is_valid(table["payment_campaign"]),
        "device": pc.is_valid(table["device_campaign"]),
        "ip": pc.is_valid(table["ip_campaign"]),
        # a subnet or pool adds nothing when the exact address already matched
        "subnet": pc.and_(pc.is_valid(table["subnet_campaign"]), pc.is_null(table["ip_campaign"])),
        # proxy/Tor exits share one intel label, not a network: `proxy_exit` speaks for them
        "pool": pc.and_(
            pc.and_(pc.is_valid(table["pool_campaign"]), pc.invert(proxy_exit)),
            pc.and_(pc.is_null(table["ip_campaign"]), pc.is_null(table["subnet_campaign"])),
        ),
        "org": pc.is_valid(table["org_campaign"]),
        "domain": pc.is_valid(table["domain_campaign"]),
        "pattern": pc.is_valid(table["pattern_campaign"]),
        "lookalike": pc.is_valid(lookalike),
        "disposable": disposable,
        "naming": pc.greater_equal(table["naming_k"], policy.naming_min_signups),
        "burst": pc.greater_equal(table["burst_k"], policy.burst_min_signups),
        "programme": programme,
        "proxy_exit": proxy_exit,
        # the same card already linked to a campaign (`payment`) is not counted twice
        "card_reuse": pc.and_(
            pc.greater_equal(table["card_k"], policy.card_reuse_min),
            pc.is_null(table["payment_campaign"]),
        ),
        "unbacked": pc.and_(programme, untrusted),
    }
    for name, flag in flags.items():
        table = table.append_column(f"ev_{name}", pc.fill_null(flag, False))
    return table.append_column("lookalike_brand", lookalike)


def evidence_matrix(table: pa.Table, kinds: tuple[str, ...]) -> np.ndarray:
    """(rows x kinds) booleans of the `ev_<kind>` columns."""
    if not table.num_rows:
        return np.zeros((0, len(kinds)), bool)
    return np.column_stack([table[f"ev_{k}"].to_numpy(zero_copy_only=False) for k in kinds])
