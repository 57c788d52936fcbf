"""What is already known when a new account signs up: the campaigns' burned identities and networks.

`KnownState` holds small Arrow tables keyed by payment fingerprint, device fingerprint, e-mail
domain, IP, /24 subnet and ASN, each with the campaign it points to and how strongly (share of
holders flagged, share of traffic sent by flagged accounts). It is built either from a
`distillguard detect` run directory (`from_run`) or from plain tables (`from_tables`, used by the
service), with the same SQL.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from distillguard.report.rundir import RunDir
from distillguard.signup.policy import WEBMAIL, SignupPolicy

# Sign-up records of earlier accounts: what the check compares new sign-ups with.
HISTORY_SCHEMA = pa.schema(
    [
        ("account_id", pa.string()),
        ("created_ms", pa.int64()),
        ("signup_ip", pa.string()),
        ("subnet", pa.string()),
        ("asn", pa.string()),
        ("ip_kind", pa.string()),
        ("payment_fingerprint", pa.string()),
        ("device_fingerprint", pa.string()),
        ("email_domain", pa.string()),
        ("name_pattern", pa.string()),  # keyed hash of a templated e-mail name, never the name
        ("org_id", pa.string()),  # organisation named at sign-up (org links, card reuse)
    ]
)
# Per-account verdicts: flagged or in a campaign.
VERDICT_SCHEMA = pa.schema(
    [("account_id", pa.string()), ("campaign_id", pa.string()), ("flagged", pa.bool_())]
)
# Per-request network use (one row per request, or pre-aggregated with `requests`).
TRAFFIC_SCHEMA = pa.schema(
    [
        ("account_id", pa.string()),
        ("client_ip", pa.string()),
        ("subnet", pa.string()),
        ("asn", pa.string()),
        ("ip_kind", pa.string()),
        ("requests", pa.int64()),
    ]
)
# Hosting, VPN, proxy and Tor networks are rented pools; home and mobile ISPs are shared by
# everyone, so only the former can be "a campaign's pool" at the ASN level.
POOL_KINDS = ("datacenter", "vpn", "proxy", "tor")
IDENTITY_KEYS = ("payment_fingerprint", "device_fingerprint")
# Relays that exist to hide the client: residential-proxy exits listed by IP intel, and Tor.
ANONYMISER_KINDS = ("proxy", "tor")


@dataclass
class KnownState:
    """Campaign-linked keys. Each table: key, campaign_id, n_flagged, n (holders), share."""

    payment: pa.Table
    device: pa.Table
    domain: pa.Table
    ip: pa.Table
    subnet: pa.Table
    pool: pa.Table
    pattern: pa.Table  # keyed hashes of machine-made e-mail names of flagged accounts
    org: pa.Table  # organisations whose members the campaigns' flagged accounts mostly are
    history: pa.Table  # HISTORY_SCHEMA: earlier sign-ups (for bursts and naming patterns)
    flagged_accounts: int = 0
    campaigns: int = 0

    @classmethod
    def from_tables(
        cls,
        verdicts: pa.Table,
        history: pa.Table,
        traffic: pa.Table | None,
        policy: SignupPolicy,
        exclude: pa.Array | None = None,
    ) -> KnownState:
        """`exclude`: accounts judged now, left out of what is known (no self-match)."""
        history = conform_history(history)
        if exclude is not None and len(exclude):
            verdicts, history = _without(verdicts, exclude), _without(history, exclude)
            traffic = _without(traffic, exclude) if traffic is not None else None
        con = duckdb.connect()
        try:
            con.register("verdicts", verdicts.select(VERDICT_SCHEMA.names))
            con.register("history", history.select(HISTORY_SCHEMA.names))
            if traffic is not None:
                con.register("traffic_in", traffic.select(TRAFFIC_SCHEMA.names))
            return cls._build(con, history, traffic is not None, policy)
        finally:
            con.close()

    @classmethod
    def from_run(
        cls,
        run: RunDir,
        policy: SignupPolicy,
        exclude: pa.Array | None = None,
        signups: pa.Table | None = None,
    ) -> KnownState:
        """From a detect run: verdicts, ingested sign-up records and enriched traffic.

        `signups`: earlier sign-up records with their e-mail (e.g. the accounts file given to
        detect; the run itself never stores addresses): their name patterns are added to the
        history in memory, so a new name can meet the series flagged accounts signed up with.
        """
        verdicts = run.sql(
            f"SELECT account_id, campaign_id, coalesce(flagged, false) AS flagged "
            f"FROM {run_verdict_view(run)}"
        )
        history = history_from_run(run)
        if signups is not None and signups.num_rows:
            history = with_name_patterns(history, signups)
        traffic = None
        if run.has("enriched", "account_id", "client_ip", "subnet", "asn", "ip_kind"):
            traffic = run.sql(
                "SELECT account_id, client_ip, subnet, asn, ip_kind, count(*) AS requests "
                "FROM enriched GROUP BY ALL"
            )
        return cls.from_tables(verdicts, history, traffic, policy, exclude)

    @classmethod
    def _build(
        cls, con: duckdb.DuckDBPyConnection, history: pa.Table, traffic: bool, p: SignupPolicy
    ) -> KnownState:
        # holders that never sent a request are unknown, not innocent: a card shared by four
        # flagged accounts and ten not yet used accounts of the same batch is the campaign's
        con.execute("CREATE TEMP TABLE seen AS SELECT DISTINCT account_id FROM verdicts")
        con.execute(
            "CREATE TEMP TABLE bad AS SELECT account_id, "
            "coalesce(campaign_id, 'flagged') AS campaign_id FROM verdicts "
            "WHERE flagged OR campaign_id IS NOT NULL"
        )

        def identity(key: str) -> pa.Table:
            # a card or device counts when most of its holders were flagged: a company card
            # shared by one falsely flagged account and twenty colleagues does not
            return con.sql(
                f"""
                SELECT h.{key} AS key, arg_max(b.campaign_id, b.campaign_id IS NOT NULL) AS
                       campaign_id, count(b.account_id) AS n_flagged, count(v.account_id) AS n,
                       count(b.account_id) / count(v.account_id) AS share
                FROM history h LEFT JOIN bad b USING (account_id)
                LEFT JOIN seen v USING (account_id)
                WHERE h.{key} IS NOT NULL GROUP BY h.{key}
                HAVING count(b.account_id) >= 1 AND share >= {p.identity_flagged_share}
                """
            ).to_arrow_table()

        def shared(key: str, where: str, share: float, min_flagged: int = 1) -> pa.Table:
            return con.sql(
                f"""
                SELECT t.{key} AS key, mode(b.campaign_id) AS campaign_id,
                       count(DISTINCT b.account_id) AS n_flagged,
                       count(DISTINCT t.account_id) AS n,
                       sum(CASE WHEN b.account_id IS NOT NULL THEN t.requests ELSE 0 END)
                         / sum(t.requests) AS share,
                       any_value(t.ip_kind) AS ip_kind
                FROM traffic t LEFT JOIN bad b USING (account_id)
                WHERE t.{key} IS NOT NULL AND {where} GROUP BY t.{key}
                HAVING count(DISTINCT b.account_id) >= {min_flagged} AND share >= {share}
                """
            ).to_arrow_table()

        # sign-up addresses are part of what a campaign used, with or without its traffic
        signups = (
            "SELECT account_id, signup_ip AS client_ip, subnet, asn, ip_kind, 1::BIGINT AS "
            "requests FROM history WHERE signup_ip IS NOT NULL"
        )
        union = f"SELECT * FROM traffic_in UNION ALL {signups}" if traffic else signups
        con.execute(f"CREATE TEMP TABLE traffic AS {union}")
        pools = ", ".join(f"'{k}'" for k in POOL_KINDS)

        def mostly_flagged(key: str, where: str) -> pa.Table:
            # a sign-up attribute most of whose seen holders a campaign flagged
            return con.sql(
                f"""
                SELECT {key} AS key, mode(b.campaign_id) AS campaign_id,
                       count(b.account_id) AS n_flagged, count(v.account_id) AS n,
                       count(b.account_id) / count(v.account_id) AS share
                FROM history h LEFT JOIN bad b USING (account_id)
                    LEFT JOIN seen v USING (account_id)
                WHERE {where} GROUP BY 1
                HAVING n_flagged >= {p.domain_min_flagged} AND share >= {p.identity_flagged_share}
                """
            ).to_arrow_table()

        # big mailbox providers carry everybody: a campaign using gmail.com says nothing
        webmail = ", ".join(f"'{d}'" for d in WEBMAIL)
        domain = mostly_flagged(
            "lower(h.email_domain)",
            f"h.email_domain IS NOT NULL AND lower(h.email_domain) NOT IN ({webmail})",
        )
        # a series of machine-made names (devbuild<digits>) that flagged accounts signed up with
        pattern = mostly_flagged("h.name_pattern", "h.name_pattern IS NOT NULL")
        # an organisation whose seen members are mostly a campaign's: its next member is too likely
        # the campaign's (a falsely flagged employee among twenty colleagues does not count)
        org = mostly_flagged("h.org_id", "h.org_id IS NOT NULL")
        flagged, campaigns = con.execute(
            "SELECT count(*), count(DISTINCT campaign_id) FROM bad"
        ).fetchall()[0]
        return cls(
            payment=identity("payment_fingerprint"),
            device=identity("device_fingerprint"),
            domain=domain,
            ip=shared("client_ip", "true", p.ip_campaign_share),
            subnet=shared("subnet", "true", p.ip_campaign_share, 2),
            pool=shared("asn", f"t.ip_kind IN ({pools})", p.pool_campaign_share, 2),
            pattern=pattern,
            org=org,
            history=history,
            flagged_accounts=int(flagged),
            campaigns=int(campaigns),
        )


def with_name_patterns(history: pa.Table, signups: pa.Table) -> pa.Table:
    """`history` with `name_pattern` filled from the e-mail of the same account in `signups`."""
    from distillguard.signup.features import email_columns

    emails = signups["email"].combine_chunks() if "email" in signups.column_names else None
    if emails is None:
        return history
    _, patterns = email_columns(emails, pa.nulls(len(emails), pa.string()))
    idx = pc.index_in(history["account_id"], value_set=signups["account_id"].combine_chunks())
    filled = pc.coalesce(history["name_pattern"].combine_chunks(), patterns.take(idx))
    i = history.schema.get_field_index("name_pattern")
    return history.set_column(i, "name_pattern", filled)


def conform_history(history: pa.Table) -> pa.Table:
    """`history` with every HISTORY_SCHEMA column (absent ones null, e.g. `org_id` in sign-up
    records stored before it was kept), in schema order."""
    for f in HISTORY_SCHEMA:
        if f.name not in history.column_names:
            history = history.append_column(f.name, pa.nulls(history.num_rows, f.type))
    return history.select(HISTORY_SCHEMA.names).cast(HISTORY_SCHEMA)


def _without(table: pa.Table, accounts: pa.Array) -> pa.Table:
    keep = pc.invert(pc.is_in(table["account_id"], value_set=accounts.cast(pa.string())))
    return table.filter(keep)


def run_verdict_view(run: RunDir) -> str:
    return "accounts" if run.has("accounts", "flagged") else run.scores_view


def history_from_run(run: RunDir) -> pa.Table:
    """The run's ingested sign-up records (no e-mail: ingest never writes it) as history rows."""
    from distillguard.signup.features import network_columns

    if not run.has("signup", "account_id"):
        return HISTORY_SCHEMA.empty_table()

    def col(name: str, cast: str = "VARCHAR") -> str:
        return f"CAST({name} AS {cast})" if run.has("signup", name) else f"NULL::{cast}"

    raw = run.sql(
        f"SELECT account_id, epoch_ms({col('created_at', 'TIMESTAMP')}) AS created_ms, "
        f"{col('signup_ip')} AS signup_ip, {col('payment_fingerprint')} AS payment_fingerprint, "
        f"{col('device_fingerprint')} AS device_fingerprint, "
        f"lower({col('email_domain')}) AS email_domain, {col('org_id')} AS org_id FROM signup"
    )
    return network_columns(raw, run_ip_intel(run)).select(HISTORY_SCHEMA.names).cast(HISTORY_SCHEMA)


def run_ip_intel(run: RunDir) -> pa.Table | None:
    if not run.has("ip_intel", "cidr", "kind"):
        return None
    return run.table("ip_intel")
