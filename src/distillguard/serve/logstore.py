"""The embedded default state: an append-only SQLite log, with the windows held in memory.

Each commit (one group of POSTs, or one slice of request-signal updates) appends **one log
record** (its request ids, their accounts, hours and decisions, and the counter and key deltas,
packed) plus its feature blobs, in one WAL transaction that is committed before any of its
POSTs is answered: an acknowledged event is on disk. The per-account windows, the last decision
per account and the request-id index live in memory (`memstate`) and are rebuilt at start by
replaying the log, so nothing the service answered from memory is lost by a crash.

Why: the previous layout (one row per request id, upserted counter and key rows, five window
queries per POST) touched ~240 random B-tree pages (~1 MB of WAL) per 100-event POST and cost
~7 ms of SQLite work; an appended record is a few sequential pages.

Several request processes (`server.workers`) share the file: under the writer lock a process
first applies the records the others appended since its last one (`_catch_up`), then checks
its request ids and appends its own, so idempotency holds across processes as before. Readers
catch up too. Each process holds the whole state in memory.

Memory: per account a few small dictionaries per hour and key (the rows the SQL tables held);
per request id 16 bytes (a hash and a record number) until pruned.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
import zlib
from pathlib import Path
from typing import Any

from distillguard.serve.legacy import drop_legacy_tables, has_legacy_tables, legacy_commits
from distillguard.serve.memstate import IdIndex, WindowState
from distillguard.serve.multiproc import FileLock
from distillguard.serve.store import CHECKPOINT_EVERY_S, Commit, Decide, Deltas, Store, Windows

try:  # several times faster than the standard encoder on these lists
    import orjson

    def _dumps(doc: dict[str, Any]) -> bytes:
        return orjson.dumps(doc)

    _loads = orjson.loads
except ImportError:  # pragma: no cover - same bytes, more CPU

    def _dumps(doc: dict[str, Any]) -> bytes:
        return json.dumps(doc, separators=(",", ":")).encode()

    _loads = json.loads

log = logging.getLogger("distillguard.serve")
HORIZON_KEY = "pruned_before"  # kv: hours before this were pruned (replay skips them)
HORIZON_CHECK_S = 10.0  # how often a process looks whether another one pruned
PRUNE_CHUNK_ACCOUNTS = 2_000  # accounts pruned per hold of the state lock
COMPRESS_LEVEL = 1  # zlib: records shrink ~4x for ~0.1 ms per 100 requests


def encode_record(c: Commit) -> bytes:
    """A commit's log record: everything but its blobs, which have their own table."""
    distinct: dict[str, int] = {}
    index = [distinct.setdefault(d, len(distinct)) for d in c.request_decisions]
    doc = {
        "ids": c.request_ids,
        "acc": c.request_accounts,
        "hb": c.request_hours,
        "dec": list(distinct),
        "di": index,
        "last": c.accounts,
        "b": [d.columns for d in c.buckets],
        "k": [d.columns for d in c.keys],
    }
    return zlib.compress(_dumps(doc), COMPRESS_LEVEL)


def decode_record(data: bytes) -> dict[str, Any]:
    return _loads(zlib.decompress(data))


def record_decisions(doc: dict[str, Any]) -> dict[str, str]:
    """request_id -> decision JSON of one decoded record."""
    dec = doc["dec"]
    return {rid: dec[i] for rid, i in zip(doc["ids"], doc["di"], strict=True)}


def _max_hb(c: Commit) -> int:
    hours = [*c.request_hours, *(hb for hb, *_ in c.blobs)]
    for d in (*c.buckets, *c.keys):
        if d.num_rows:
            hours.append(max(d["hb"]))
    return max(hours, default=0)


class SqliteStore(Store):
    """One SQLite file in WAL mode (an append-only log, feature blobs, a key-value table) and
    the windows in memory; one writer connection, one reader connection."""

    def __init__(self, path: Path, synchronous: str = "FULL") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._w = self._connect(synchronous)
        self._r = self._connect(synchronous)
        # Writers queue on a lock file, across threads and processes (`server.workers`):
        # SQLite's own busy handler would make a waiting process sleep 1, 2, 5, 10... ms.
        self._wlock = FileLock(path.with_name(path.name + "-write.lock"))
        self._rlock = threading.Lock()  # the reader connection
        self._state_lock = threading.RLock()  # the memory state and `_applied`
        self._create()
        self._migrate_legacy()
        self._reset_memory()
        with self._state_lock:
            self._catch_up()
        # Checkpoints copy WAL pages into the database file (and fsync it): done by the
        # committing connection they would land on a random POST's latency, so a background
        # thread runs them on its own connection instead (PASSIVE never blocks the writer).
        self._w.execute("PRAGMA wal_autocheckpoint=0")
        self._closed = threading.Event()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, args=(synchronous,), name="dg-checkpoint", daemon=True
        )
        self._checkpointer.start()

    # ------------------------------------------------------------------------- set-up
    def _connect(self, synchronous: str) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute(f"PRAGMA synchronous={synchronous.upper()}")
        con.execute("PRAGMA busy_timeout=10000")
        return con

    def _create(self) -> None:
        self._w.executescript(
            """
            CREATE TABLE IF NOT EXISTS log (seq INTEGER PRIMARY KEY AUTOINCREMENT,
                max_hb INTEGER, data BLOB);
            CREATE INDEX IF NOT EXISTS log_hb ON log(max_hb);
            CREATE TABLE IF NOT EXISTS blobs (seq INTEGER PRIMARY KEY AUTOINCREMENT,
                hb INTEGER, kind TEXT, data BLOB, n INTEGER);
            CREATE INDEX IF NOT EXISTS blobs_hb ON blobs(hb);
            CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID;
            """
        )

    def _migrate_legacy(self) -> None:
        """A state file of the pre-log layout becomes log records (serve/legacy.py)."""
        with self._wlock:
            con = self._w
            if not has_legacy_tables(con):
                return
            con.execute("BEGIN IMMEDIATE")
            try:
                commits = legacy_commits(con)
                for c in commits:
                    con.execute(
                        "INSERT INTO log(max_hb, data) VALUES (?, ?)",
                        (_max_hb(c), encode_record(c)),
                    )
                drop_legacy_tables(con)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        ids = sum(len(c.request_ids) for c in commits)
        log.warning("state file %s upgraded to the log layout (%d request ids)", self.path, ids)

    def _checkpoint_loop(self, synchronous: str) -> None:
        con = self._connect(synchronous)
        try:
            while not self._closed.wait(CHECKPOINT_EVERY_S):
                con.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            con.close()

    def _reset_memory(self) -> None:
        self.state = WindowState()
        self.ids = IdIndex()
        self.last: dict[str, str] = {}
        self._applied = 0  # last log record applied to memory
        with self._rlock:
            self._horizon = int(self._kv(self._r, HORIZON_KEY) or 0)
        self._horizon_checked = time.monotonic()

    # ------------------------------------------------------------------------- memory
    def _apply(self, seq: int, doc: dict[str, Any]) -> None:
        """One log record into memory; rows of pruned hours are skipped."""
        floor = self._horizon or None
        for cols in doc["b"]:
            self.state.apply_buckets(Deltas(cols), floor)
        for cols in doc["k"]:
            self.state.apply_keys(Deltas(cols), floor)
        if doc["ids"]:
            ids = doc["ids"]
            if floor is not None:
                ids = [r for r, hb in zip(ids, doc["hb"], strict=True) if hb >= floor]
            self.ids.add(ids, seq)
        self.last.update(doc["last"])
        self._applied = seq

    def _catch_up(self, con: sqlite3.Connection | None = None) -> None:
        """Apply the records appended since ours (by other processes; all of them at start).
        Caller holds the state lock; `con` is the writer connection under the writer lock."""
        if con is None:
            with self._rlock:
                rows = self._r.execute(
                    "SELECT seq, data FROM log WHERE seq > ? ORDER BY seq", (self._applied,)
                ).fetchall()
        else:
            rows = con.execute(
                "SELECT seq, data FROM log WHERE seq > ? ORDER BY seq", (self._applied,)
            ).fetchall()
        for seq, data in rows:
            self._apply(seq, decode_record(data))
        if time.monotonic() - self._horizon_checked > HORIZON_CHECK_S:
            self._horizon_checked = time.monotonic()
            with self._rlock:
                horizon = int(self._kv(self._r, HORIZON_KEY) or 0)
            if horizon > self._horizon:
                # Another process pruned: forget those hours too. The ids of its deleted
                # records stay in this index (until a restart) but answer "not known": their
                # record is gone (`_confirmed`).
                self._prune_memory(horizon)

    def _prune_memory(self, before_hb: int) -> None:
        self._horizon = max(self._horizon, before_hb)
        accounts = list(self.state.accounts)
        for start in range(0, len(accounts), PRUNE_CHUNK_ACCOUNTS):
            with self._state_lock:  # released between chunks (unless the caller holds it)
                for a in accounts[start : start + PRUNE_CHUNK_ACCOUNTS]:
                    acc = self.state.accounts.get(a)
                    if acc is not None:
                        acc.prune(before_hb)

    def _confirmed(self, candidates: dict[str, list[int]]) -> dict[str, str]:
        """The candidates whose record really holds them: id -> decision JSON."""
        seqs = sorted({s for ss in candidates.values() for s in ss})
        if not seqs:
            return {}
        with self._rlock:
            rows = self._r.execute(
                "SELECT data FROM log WHERE seq IN (SELECT value FROM json_each(?))",
                (json.dumps(seqs),),
            ).fetchall()
        held: dict[str, str] = {}
        for (data,) in rows:
            held.update(record_decisions(decode_record(data)))
        return {rid: held[rid] for rid in candidates if rid in held}

    # ------------------------------------------------------------------------- Store
    def known(self, request_ids: list[str]) -> dict[str, str]:
        with self._state_lock:
            self._catch_up()
            return self._confirmed(self.ids.candidates(request_ids))

    def commit(self, c: Commit, decide: Decide | None = None) -> bool:
        with self._wlock, self._state_lock:
            con = self._w
            self._catch_up(con)
            if c.request_ids and self._confirmed(self.ids.candidates(c.request_ids)):
                return False  # another process stored one of these ids meanwhile
            try:
                for b in c.buckets:
                    self.state.apply_buckets(b)
                for k in c.keys:
                    self.state.apply_keys(k)
                if decide is not None:
                    accounts = list(dict.fromkeys(c.request_accounts))
                    w = self.state.windows(accounts, *c.window_from)
                    c.request_decisions, c.accounts = decide(w)
                record = encode_record(c)
                con.execute("BEGIN IMMEDIATE")
                try:
                    cur = con.execute(
                        "INSERT INTO log(max_hb, data) VALUES (?, ?)", (_max_hb(c), record)
                    )
                    seq = int(cur.lastrowid or 0)
                    if c.blobs:
                        con.executemany(
                            "INSERT INTO blobs(hb, kind, data, n) VALUES (?, ?, ?, ?)", c.blobs
                        )
                    if c.clock_ms is not None:
                        con.execute(
                            "INSERT INTO kv VALUES ('clock', ?) ON CONFLICT(k) "
                            "DO UPDATE SET v = max(v, excluded.v)",
                            (c.clock_ms,),
                        )
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
            except BaseException:
                # Memory may hold deltas the file does not: rebuild it from the file.
                self._reset_memory()
                self._catch_up(con)
                raise
            if c.request_ids:
                self.ids.add(c.request_ids, seq)
            self.last.update(c.accounts)
            self._applied = seq
        return True

    def windows(self, accounts: list[str], short_from_hb: int, long_from_hb: int) -> Windows:
        with self._state_lock:
            self._catch_up()
            return self.state.windows(accounts, short_from_hb, long_from_hb)

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
        with self._state_lock:
            self._catch_up()
            return self.last.get(account_id)

    @staticmethod
    def _kv(con: sqlite3.Connection, key: str) -> bytes | None:
        row = con.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
        if row is None:
            return None
        value = row[0]
        return str(value).encode() if isinstance(value, int) else value

    def get_kv(self, key: str) -> bytes | None:
        with self._rlock:
            return self._kv(self._r, key)

    def put_kv(self, key: str, value: bytes) -> None:
        with self._wlock:
            self._w.execute(
                "INSERT INTO kv VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v",
                (key, value),
            )

    def prune(self, before_hb: int) -> None:
        """Log records whose every row is older than `before_hb` are deleted (their ids are
        forgotten); rows of older hours in newer records are skipped from now on, in memory
        and at replay (the horizon is stored)."""
        with self._wlock:
            self._w.execute("BEGIN IMMEDIATE")
            try:
                dead = {
                    seq
                    for (seq,) in self._w.execute(
                        "SELECT seq FROM log WHERE max_hb < ?", (before_hb,)
                    )
                }
                self._w.execute("DELETE FROM log WHERE max_hb < ?", (before_hb,))
                self._w.execute(
                    "INSERT INTO kv VALUES (?, ?) ON CONFLICT(k) "
                    "DO UPDATE SET v = max(v, excluded.v)",
                    (HORIZON_KEY, before_hb),
                )
                self._w.execute("COMMIT")
            except BaseException:
                self._w.execute("ROLLBACK")
                raise
        with self._rlock:
            hours = [
                hb
                for (hb,) in self._r.execute(
                    "SELECT DISTINCT hb FROM blobs WHERE hb < ?", (before_hb,)
                )
            ]
        # One hour of blobs per transaction: POSTs interleave instead of waiting for a scan.
        for hb in hours:
            with self._wlock:
                self._w.execute("DELETE FROM blobs WHERE hb = ?", (hb,))
        with self._state_lock:
            self._horizon = max(self._horizon, before_hb)
            self.ids.drop_records(dead)
        self._prune_memory(before_hb)

    def count_requests(self) -> int:
        with self._state_lock:
            self._catch_up()
            return self.ids.size

    def version(self) -> int:
        with self._state_lock:
            self._catch_up()
            return self._applied  # the last log record: every commit appends one

    def close(self) -> None:
        self._closed.set()
        self._checkpointer.join(timeout=30)
        with self._wlock, self._rlock:
            self._r.close()
            self._w.close()
        self._wlock.close()
