"""Upgrade a state file written before the append-only log (commit 74da48d and earlier).

That layout kept a row per request id (`requests`), per-(account, hour) counter rows
(`buckets`), key rows (`keys`) and each account's last decision (`accounts`). Opened by the
log store as it is, all of that would be ignored: acknowledged requests would be accepted
again as new and every window would restart empty. So at start the old tables are turned into
log records, in the log's own format, and dropped, in one transaction: a crash midway leaves
the old file as it was. The blob and kv tables have the same layout in both versions.
"""

from __future__ import annotations

import sqlite3

from distillguard.serve.store import METRICS, Commit, Deltas

LEGACY_TABLES = ("requests", "buckets", "keys", "accounts")
IDS_PER_RECORD = 100_000  # request ids per migrated log record (bounded record size)


def has_legacy_tables(con: sqlite3.Connection) -> bool:
    row = con.execute(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'requests'"
    ).fetchone()
    return bool(row[0])


def legacy_commits(con: sqlite3.Connection) -> list[Commit]:
    """The old tables' content as commits: counters, keys and last decisions in the first,
    request ids (with their stored decisions) spread over as many as needed."""
    columns = {r[1] for r in con.execute("PRAGMA table_info(buckets)")}
    metrics = [m for m in METRICS if m in columns]
    buckets = _columns(con, f"SELECT account_id, hb, {', '.join(metrics)} FROM buckets",
                       ["account_id", "hb", *metrics])  # fmt: skip
    keys = _columns(con, "SELECT account_id, kind, key, hb, n FROM keys",
                    ["account_id", "kind", "key", "hb", "n"])  # fmt: skip
    last = dict(con.execute("SELECT account_id, decision FROM accounts").fetchall())
    first = Commit(buckets=[Deltas(buckets)], keys=[Deltas(keys)], accounts=last)
    commits = [first]
    rows = con.execute("SELECT request_id, account_id, hb, decision FROM requests ORDER BY hb")
    while chunk := rows.fetchmany(IDS_PER_RECORD):
        ids, accounts, hours, decisions = (list(c) for c in zip(*chunk, strict=True))
        commits.append(
            Commit(
                request_ids=ids,
                request_accounts=accounts,
                request_hours=hours,
                request_decisions=decisions,
            )
        )
    return commits


def _columns(con: sqlite3.Connection, sql: str, names: list[str]) -> dict[str, list]:
    rows = con.execute(sql).fetchall()
    if not rows:
        return {name: [] for name in names}
    return {name: list(values) for name, values in zip(names, zip(*rows, strict=True), strict=True)}


def drop_legacy_tables(con: sqlite3.Connection) -> None:
    for table in LEGACY_TABLES:
        con.execute(f"DROP TABLE IF EXISTS {table}")
