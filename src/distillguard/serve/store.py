"""Service state behind a small interface, with an embedded default (SQLite) and Redis.

What is kept (never prompt text unless `state.store_prompts`):

- requests: request_id -> the decision returned, for idempotency (a repeated id gets it back);
- buckets: per account and hour, counters (requests, tokens, anonymising-network requests,
  follow-ups, errors, and the extraction-signal counts once signals are computed);
- keys: per account, kind (ip, home_ip, subnet, tpl) and hour, how often a key was seen, so distinct
  counts and the top template's share can be taken over any window of whole hours;
- blobs: the per-request feature rows (Arrow IPC), read back by the background analysis;
- accounts: the last decision per account; kv: analysis results, campaign registry, clock.

SQLite runs in WAL mode; each POST is one transaction committed before the response is sent,
so an acknowledged event survives a crash (`synchronous=FULL`: also a power cut).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from distillguard.serve.multiproc import FileLock

MS_PER_HOUR = 3_600_000

# Counters kept per account and hour. Event counters are known at request time; signal
# counters arrive when the request signals are computed (`signalled` is their denominator).
EVENT_METRICS = (
    "requests",
    "input_tokens",
    "output_tokens",
    "anon",
    "proxy",
    "vpn",
    "hosted",
    "followups",
    "errors",
)
SIGNAL_METRICS = (
    "signalled",
    "extraction",
    "cot",
    "rubric",
    "censor",
    "train_shaped",
    "max_out",
    "thinking",
)
METRICS = EVENT_METRICS + SIGNAL_METRICS
KEY_KINDS = ("ip", "home_ip", "subnet", "tpl", "model")  # "model": only with [releases]
CHECKPOINT_EVERY_S = 1.0


class Column(list):
    """A column of Python values that reads like an Arrow column where the stores read it."""

    def to_pylist(self) -> list:
        return self


class Deltas:
    """Counter deltas as Python columns: the stores write Python values, so building them
    from NumPy directly saves an Arrow round trip (tens of microseconds per column)."""

    def __init__(self, columns: dict[str, list]) -> None:
        self.columns = {name: Column(values) for name, values in columns.items()}

    @property
    def column_names(self) -> list[str]:
        return list(self.columns)

    @property
    def num_rows(self) -> int:
        return len(next(iter(self.columns.values()), []))

    def __getitem__(self, name: str) -> Column:
        return self.columns[name]


@dataclass
class Commit:
    """Everything one POST (or one signal flush) writes, in one transaction."""

    request_ids: list[str] = field(default_factory=list)
    request_accounts: list[str] = field(default_factory=list)
    request_hours: list[int] = field(default_factory=list)
    request_decisions: list[str] = field(default_factory=list)  # JSON per request
    buckets: list[Deltas] = field(default_factory=list)  # account_id, hb, <some METRICS>
    keys: list[Deltas] = field(default_factory=list)  # account_id, kind, key, hb, n
    blobs: list[tuple[int, str, bytes, int]] = field(default_factory=list)  # hb, kind, IPC, rows
    accounts: dict[str, str] = field(default_factory=dict)  # account -> last decision JSON
    clock_ms: int | None = None
    window_from: tuple[int, int] = (0, 0)  # (short, long) first hour bucket, for `decide`


@dataclass
class Windows:
    """Per-account window aggregates for a list of accounts (rows in the order asked)."""

    accounts: list[str]
    short: dict[str, list[int]]  # metric -> values over the short window
    long: dict[str, list[int]]  # metric -> values over the long window
    distinct_short: dict[str, list[int]]  # key kind -> distinct keys over the short window
    distinct_long: dict[str, list[int]]
    top_template: list[int]  # requests of the account's most used template (long window)
    hour_counts: list[list[int]]  # requests by hour of day (0..23), long window
    # model -> first hour the account used it in the long window (kept when releases are set)
    first_use_hb: list[dict[str, int]] = field(default_factory=list)
    adopt_lag_h: list[float] | None = None  # set by the service from the release times


def empty_windows(accounts: list[str]) -> Windows:
    n = len(accounts)
    return Windows(
        accounts=accounts,
        short={m: [0] * n for m in METRICS},
        long={m: [0] * n for m in METRICS},
        distinct_short={k: [0] * n for k in KEY_KINDS},
        distinct_long={k: [0] * n for k in KEY_KINDS},
        top_template=[0] * n,
        hour_counts=[[0] * 24 for _ in range(n)],
        first_use_hb=[{} for _ in range(n)],
    )


Decide = Callable[[Windows], tuple[list[str], dict[str, str]]]


class Store(ABC):
    """The state the service needs; every method is safe to call from several threads."""

    @abstractmethod
    def known(self, request_ids: list[str]) -> dict[str, str]:
        """request_id -> stored decision JSON, for the ids already acknowledged."""

    @abstractmethod
    def commit(self, c: Commit, decide: Decide | None = None) -> bool:
        """Write `c` atomically; False (nothing written) if a request id was taken meanwhile.

        With `decide`, the windows of the commit's accounts are read *after* its counters are
        applied and `decide(windows)` returns (decision JSON per request, per account); those
        are stored with the requests in the same transaction (SQLite) or right after (Redis).
        """

    @abstractmethod
    def windows(self, accounts: list[str], short_from_hb: int, long_from_hb: int) -> Windows:
        """Window aggregates of `accounts` over hours >= short_from_hb / long_from_hb."""

    @abstractmethod
    def blobs(self, since_hb: int) -> dict[str, list[bytes]]:
        """Feature blobs of hours >= since_hb, by kind, oldest first."""

    @abstractmethod
    def event_rows_by_hour(self, since_hb: int) -> list[tuple[int, int]]:
        """(hour, stored request rows) for hours >= since_hb, newest first."""

    def cutoff_hour(self, since_hb: int, max_rows: int) -> int:
        """The oldest hour to read so that about `max_rows` of the newest rows are loaded."""
        total = 0
        for hb, n in self.event_rows_by_hour(since_hb):
            total += n
            if total >= max_rows:
                return hb
        return since_hb

    @abstractmethod
    def account(self, account_id: str) -> str | None:
        """The last decision JSON of an account, or None if never seen."""

    @abstractmethod
    def get_kv(self, key: str) -> bytes | None: ...

    @abstractmethod
    def put_kv(self, key: str, value: bytes) -> None: ...

    @abstractmethod
    def prune(self, before_hb: int) -> None:
        """Forget counters, keys, idempotency ids and blobs older than hour `before_hb`."""

    @abstractmethod
    def count_requests(self) -> int:
        """Acknowledged requests held (for health and the crash test)."""

    @abstractmethod
    def close(self) -> None: ...


def _rows(table: Deltas, columns: list[str]) -> list[tuple]:
    return list(zip(*[table[c].to_pylist() for c in columns], strict=True))


class SqliteStore(Store):
    """One SQLite file in WAL mode; one writer connection and one reader connection."""

    def __init__(self, path: Path, synchronous: str = "FULL") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._w = self._connect(synchronous)
        self._r = self._connect(synchronous)
        # Writers queue on a lock file, across threads and processes (`server.workers`):
        # SQLite's own busy handler would make a waiting process sleep 1, 2, 5, 10... ms.
        self._wlock = FileLock(path.with_name(path.name + "-write.lock"))
        self._rlock = threading.Lock()
        self._create()
        # Checkpoints copy WAL pages into the database file (and fsync it): done by the
        # committing connection they would land on a random POST's latency, so a background
        # thread runs them on its own connection instead (PASSIVE never blocks the writer).
        self._w.execute("PRAGMA wal_autocheckpoint=0")
        self._closed = threading.Event()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, args=(synchronous,), name="dg-checkpoint", daemon=True
        )
        self._checkpointer.start()

    def _checkpoint_loop(self, synchronous: str) -> None:
        con = self._connect(synchronous)
        try:
            while not self._closed.wait(CHECKPOINT_EVERY_S):
                con.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            con.close()

    def _connect(self, synchronous: str) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute(f"PRAGMA synchronous={synchronous.upper()}")
        con.execute("PRAGMA busy_timeout=10000")
        return con

    def _create(self) -> None:
        metrics = ", ".join(f"{m} INTEGER NOT NULL DEFAULT 0" for m in METRICS)
        self._w.executescript(
            f"""
            CREATE TABLE IF NOT EXISTS requests (request_id TEXT PRIMARY KEY, account_id TEXT,
                hb INTEGER, decision TEXT) WITHOUT ROWID;
            CREATE INDEX IF NOT EXISTS requests_hb ON requests(hb);
            CREATE TABLE IF NOT EXISTS buckets (account_id TEXT, hb INTEGER, {metrics},
                PRIMARY KEY (account_id, hb)) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS keys (account_id TEXT, kind TEXT, key TEXT, hb INTEGER,
                n INTEGER, PRIMARY KEY (account_id, kind, key, hb)) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS blobs (seq INTEGER PRIMARY KEY AUTOINCREMENT,
                hb INTEGER, kind TEXT, data BLOB, n INTEGER);
            CREATE INDEX IF NOT EXISTS blobs_hb ON blobs(hb);
            CREATE INDEX IF NOT EXISTS buckets_hb ON buckets(hb);
            CREATE INDEX IF NOT EXISTS keys_hb ON keys(hb);
            CREATE TABLE IF NOT EXISTS accounts (account_id TEXT PRIMARY KEY, decision TEXT)
                WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID;
            """
        )

    def known(self, request_ids: list[str]) -> dict[str, str]:
        with self._rlock:
            rows = self._r.execute(
                "SELECT request_id, decision FROM requests "
                "WHERE request_id IN (SELECT value FROM json_each(?))",
                (json.dumps(request_ids),),
            ).fetchall()
        return dict(rows)

    def commit(self, c: Commit, decide: Decide | None = None) -> bool:
        with self._wlock:
            con = self._w
            con.execute("BEGIN IMMEDIATE")
            try:
                for b in c.buckets:
                    self._upsert_buckets(b)
                for k in c.keys:
                    self._upsert_keys(k)
                if decide is not None:
                    accounts = list(dict.fromkeys(c.request_accounts))
                    w = self._windows(con, accounts, *c.window_from)
                    c.request_decisions, c.accounts = decide(w)
                if c.request_ids:
                    con.executemany(
                        "INSERT INTO requests VALUES (?, ?, ?, ?)",
                        zip(
                            c.request_ids,
                            c.request_accounts,
                            c.request_hours,
                            c.request_decisions,
                            strict=True,
                        ),
                    )
                if c.blobs:
                    con.executemany(
                        "INSERT INTO blobs(hb, kind, data, n) VALUES (?, ?, ?, ?)", c.blobs
                    )
                if c.accounts:
                    con.executemany(
                        "INSERT INTO accounts VALUES (?, ?) ON CONFLICT(account_id) "
                        "DO UPDATE SET decision = excluded.decision",
                        c.accounts.items(),
                    )
                if c.clock_ms is not None:
                    con.execute(
                        "INSERT INTO kv VALUES ('clock', ?) ON CONFLICT(k) "
                        "DO UPDATE SET v = max(v, excluded.v)",
                        (c.clock_ms,),
                    )
                con.execute("COMMIT")
            except sqlite3.IntegrityError:
                con.execute("ROLLBACK")
                return False
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return True

    def _upsert_buckets(self, buckets: Deltas) -> None:
        if buckets.num_rows == 0:
            return
        cols = [c for c in buckets.column_names if c in METRICS]
        names = ", ".join(["account_id", "hb", *cols])
        marks = ", ".join("?" * (len(cols) + 2))
        sets = ", ".join(f"{m} = {m} + excluded.{m}" for m in cols)
        self._w.executemany(
            f"INSERT INTO buckets({names}) VALUES ({marks}) "
            f"ON CONFLICT(account_id, hb) DO UPDATE SET {sets}",
            _rows(buckets, ["account_id", "hb", *cols]),
        )

    def _upsert_keys(self, keys: Deltas) -> None:
        if keys.num_rows == 0:
            return
        self._w.executemany(
            "INSERT INTO keys VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(account_id, kind, key, hb) DO UPDATE SET n = n + excluded.n",
            _rows(keys, ["account_id", "kind", "key", "hb", "n"]),
        )

    def windows(self, accounts: list[str], short_from_hb: int, long_from_hb: int) -> Windows:
        with self._rlock:
            return self._windows(self._r, accounts, short_from_hb, long_from_hb)

    @staticmethod
    def _windows(
        con: sqlite3.Connection, accounts: list[str], short_from_hb: int, long_from_hb: int
    ) -> Windows:
        out = empty_windows(accounts)
        if not accounts:
            return out
        pos = {a: i for i, a in enumerate(accounts)}
        ids = json.dumps(accounts)
        sums = ", ".join(f"sum({m}), sum(CASE WHEN hb >= :s THEN {m} ELSE 0 END)" for m in METRICS)
        where = "account_id IN (SELECT value FROM json_each(:ids)) AND hb >= :l"
        args = {"ids": ids, "s": short_from_hb, "l": long_from_hb}
        buckets = con.execute(
            f"SELECT account_id, {sums} FROM buckets WHERE {where} GROUP BY account_id", args
        ).fetchall()
        hours = con.execute(
            f"SELECT account_id, hb % 24, sum(requests) FROM buckets WHERE {where} GROUP BY 1, 2",
            args,
        ).fetchall()
        distinct = con.execute(
            "SELECT account_id, kind, count(DISTINCT key), "
            f"count(DISTINCT CASE WHEN hb >= :s THEN key END) FROM keys WHERE {where} "
            "GROUP BY account_id, kind",
            args,
        ).fetchall()
        top = con.execute(
            "SELECT account_id, max(c) FROM (SELECT account_id, key, sum(n) AS c FROM keys "
            f"WHERE kind = 'tpl' AND {where} GROUP BY account_id, key) GROUP BY account_id",
            args,
        ).fetchall()
        firsts = con.execute(
            "SELECT account_id, key, min(hb) FROM keys "
            f"WHERE kind = 'model' AND {where} GROUP BY account_id, key",
            args,
        ).fetchall()
        for account, model, hb in firsts:
            out.first_use_hb[pos[account]][model] = hb
        for row in buckets:
            i = pos[row[0]]
            for j, m in enumerate(METRICS):
                out.long[m][i] = row[1 + 2 * j] or 0
                out.short[m][i] = row[2 + 2 * j] or 0
        for account, hour, n in hours:
            out.hour_counts[pos[account]][hour] = n or 0
        for account, kind, n_long, n_short in distinct:
            out.distinct_long[kind][pos[account]] = n_long
            out.distinct_short[kind][pos[account]] = n_short
        for account, n in top:
            out.top_template[pos[account]] = n or 0
        return out

    def blobs(self, since_hb: int) -> dict[str, list[bytes]]:
        out: dict[str, list[bytes]] = {}
        with self._rlock:
            for kind, data in self._r.execute(
                "SELECT kind, data FROM blobs WHERE hb >= ? ORDER BY seq", (since_hb,)
            ):
                out.setdefault(kind, []).append(data)
        return out

    def event_rows_by_hour(self, since_hb: int) -> list[tuple[int, int]]:
        with self._rlock:
            return self._r.execute(
                "SELECT hb, sum(n) FROM blobs WHERE kind = 'events' AND hb >= ? "
                "GROUP BY hb ORDER BY hb DESC",
                (since_hb,),
            ).fetchall()

    def account(self, account_id: str) -> str | None:
        with self._rlock:
            row = self._r.execute(
                "SELECT decision FROM accounts WHERE account_id = ?", (account_id,)
            ).fetchone()
        return row[0] if row else None

    def get_kv(self, key: str) -> bytes | None:
        with self._rlock:
            row = self._r.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
        if row is None:
            return None
        value = row[0]
        return str(value).encode() if isinstance(value, int) else value

    def put_kv(self, key: str, value: bytes) -> None:
        with self._wlock:
            self._w.execute(
                "INSERT INTO kv VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v",
                (key, value),
            )

    def prune(self, before_hb: int) -> None:
        # One hour per transaction, found through the hour indexes: the write lock is held
        # for one short delete at a time, so POSTs interleave instead of waiting for a scan.
        with self._rlock:
            hours = sorted(
                {
                    hb
                    for table in ("requests", "buckets", "keys", "blobs")
                    for (hb,) in self._r.execute(
                        f"SELECT DISTINCT hb FROM {table} WHERE hb < ?", (before_hb,)
                    )
                }
            )
        for hb in hours:
            with self._wlock:
                self._w.execute("BEGIN IMMEDIATE")
                for table in ("requests", "buckets", "keys", "blobs"):
                    self._w.execute(f"DELETE FROM {table} WHERE hb = ?", (hb,))
                self._w.execute("COMMIT")

    def count_requests(self) -> int:
        with self._rlock:
            return int(self._r.execute("SELECT count(*) FROM requests").fetchone()[0])

    def close(self) -> None:
        self._closed.set()
        self._checkpointer.join(timeout=30)
        with self._wlock, self._rlock:
            self._r.close()
            self._w.close()
        self._wlock.close()


class SqliteBlobReader:
    """Read-only access to a SQLite state file's feature blobs, for the analysis helper process:
    it loads the recent window itself, so the server never holds those tables (or the GIL
    while decoding them)."""

    def __init__(self, path: Path) -> None:
        self._con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        self._con.execute("PRAGMA busy_timeout=10000")

    def blobs(self, since_hb: int) -> dict[str, list[bytes]]:
        out: dict[str, list[bytes]] = {}
        for kind, data in self._con.execute(
            "SELECT kind, data FROM blobs WHERE hb >= ? ORDER BY seq", (since_hb,)
        ):
            out.setdefault(kind, []).append(data)
        return out

    def event_rows_by_hour(self, since_hb: int) -> list[tuple[int, int]]:
        return self._con.execute(
            "SELECT hb, sum(n) FROM blobs WHERE kind = 'events' AND hb >= ? "
            "GROUP BY hb ORDER BY hb DESC",
            (since_hb,),
        ).fetchall()

    cutoff_hour = Store.cutoff_hour

    def close(self) -> None:
        self._con.close()
