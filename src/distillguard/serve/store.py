"""Service state behind a small interface, with an embedded default (SQLite) and Redis.

What is kept (never prompt text unless `state.store_prompts`):

- requests: request_id -> the decision returned, for idempotency (a repeated id gets it back);
- buckets: per account and hour, counters (requests, tokens, anonymising-network requests,
  follow-ups, errors, and the extraction-signal counts once signals are computed);
- keys: per account, kind (ip, home_ip, subnet, tpl) and hour, how often a key was seen, so distinct
  counts and the top template's share can be taken over any window of whole hours;
- blobs: the per-request feature rows (Arrow IPC), read back by the background analysis;
- accounts: the last decision per account; kv: analysis results, campaign registry, clock.

The embedded default (`logstore.SqliteStore`) keeps these in memory and appends one log record
per commit to a SQLite file in WAL mode, committed before the response is sent, so an
acknowledged event survives a crash (`synchronous=FULL`: also a power cut).
"""

from __future__ import annotations

import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

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
    def version(self) -> int:
        """A number that changes whenever a commit lands, from any process (request batches
        and their later signal counts alike): the analysis skips a run when it has not."""

    @abstractmethod
    def close(self) -> None: ...


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
