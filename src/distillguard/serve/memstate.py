"""In-memory service state: per-account sliding windows and the request-id index.

The SQLite store keeps its counters here instead of in SQL tables: the request process is the
only writer of its memory, and the durable form of every change is the commit's log record
(logstore.py), replayed at start. Reading an account's windows is then a few NumPy reductions
over that account's own rows instead of five GROUP BY queries, and a commit appends one record
instead of updating hundreds of random B-tree pages.

Per account: one row of counters per hour (the metrics, then requests by hour of day), the
last hour each key (IP, subnet, template, model) was seen, and requests per (template, hour).
A window over hours >= start is a masked sum over those rows, whatever the clock did since the
last read (a replayed or simulated clock can move hours per POST). Semantics are those of the
SQL queries they replace: every stored hour >= the window start counts (no upper bound).
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass

import numpy as np

from distillguard.serve.store import KEY_KINDS, METRICS, Deltas, Windows, empty_windows

N_METRICS = len(METRICS)
VECTOR = N_METRICS + 24  # the metrics, then requests by hour of day (hour-of-day entropy)
HB_OFFSET = 1 << 31
KIND_CODE = {kind: code for code, kind in enumerate(KEY_KINDS)}
SEGMENT_IDS = 65_536  # request ids kept in a Python dict before they become a sorted segment


class Rows:
    """Growable NumPy rows: `hb` (int64) and `values` (int64, `width` columns)."""

    __slots__ = ("hb", "n", "values")

    def __init__(self, width: int) -> None:
        self.hb = np.empty(4, dtype=np.int64)
        self.values = np.zeros((4, width), dtype=np.int64)
        self.n = 0

    def append(self, hb: int) -> int:
        if self.n == len(self.hb):
            self.hb = np.resize(self.hb, 2 * self.n)
            grown = np.zeros((2 * self.n, self.values.shape[1]), dtype=np.int64)
            grown[: self.n] = self.values
            self.values = grown
        self.hb[self.n] = hb
        self.n += 1
        return self.n - 1

    def drop_before(self, before_hb: int) -> np.ndarray | None:
        """Drop the rows of hours before `before_hb`: the old positions of the kept rows, in
        their new order, or None when nothing was dropped (positions held elsewhere stay valid,
        so the caller's indexes need no rebuilding)."""
        inside = self.hb[: self.n] >= before_hb
        if inside.all():
            return None
        kept = np.flatnonzero(inside)
        self.hb[: len(kept)] = self.hb[kept]
        self.values[: len(kept)] = self.values[kept]
        self.values[len(kept) : self.n] = 0
        self.n = len(kept)
        return kept


class KeySets:
    """Distinct keys of every kind but templates for one account: the last hour each was seen
    (a key seen in hours >= start counts once, as `count(DISTINCT key)` over those hours did).
    The kinds share one array, so a window's counts of all kinds are one comparison and one
    bincount instead of two NumPy calls per kind. (Templates count theirs from their own
    rows, `Templates.window`.)"""

    __slots__ = ("last", "pos")

    def __init__(self) -> None:
        self.pos: dict[str, dict[str, int]] = {}  # kind -> key -> row
        self.last = Rows(1)  # hb: the last hour seen; values[:, 0]: the kind's code

    def see(self, kind: str, key: str, hb: int) -> None:
        pos = self.pos.get(kind)
        if pos is None:
            pos = self.pos[kind] = {}
        p = pos.get(key)
        if p is None:
            p = pos[key] = self.last.append(hb)
            self.last.values[p, 0] = KIND_CODE[kind]
        elif hb > self.last.hb[p]:
            self.last.hb[p] = hb

    def distinct(self, start: int) -> list[int]:
        """Distinct keys seen in hours >= start, per kind in `KEY_KINDS` order."""
        n = self.last.n
        inside = self.last.values[:n, 0][self.last.hb[:n] >= start]
        return np.bincount(inside, minlength=len(KEY_KINDS)).tolist()

    def prune(self, before_hb: int) -> None:
        """A key last seen before `before_hb` goes (as its rows did in SQL)."""
        old_n = self.last.n
        kept = self.last.drop_before(before_hb)
        if kept is None:
            return
        new_of = np.full(old_n, -1, dtype=np.int64)
        new_of[kept] = np.arange(len(kept))
        now = new_of.tolist()
        pruned = {}
        for kind, pos in self.pos.items():
            moved = {key: now[old] for key, old in pos.items() if now[old] >= 0}
            if moved:
                pruned[kind] = moved
        self.pos = pruned


class Templates:
    """Requests per (template, hour) of one account; over a window, the top template's count
    and the distinct templates (those with a row in it: every row counts requests > 0)."""

    __slots__ = ("code", "rows", "where")

    def __init__(self) -> None:
        self.code: dict[str, int] = {}  # template -> small integer
        # (template code, hour) packed in one int -> row: a dict of ints is not tracked by the
        # cyclic garbage collector (tuple keys would make every full collection walk it)
        self.where: dict[int, int] = {}
        self.rows = Rows(2)  # values: template code, requests

    def add(self, key: str, hb: int, n: int) -> None:
        c = self.code.setdefault(key, len(self.code))
        packed = _pack(c, hb)
        r = self.where.get(packed)
        if r is None:
            r = self.where[packed] = self.rows.append(hb)
            self.rows.values[r, 0] = c
        self.rows.values[r, 1] += n

    def window(self, long_from: int, short_from: int) -> tuple[int, int, int]:
        """(top template's requests and distinct templates in hours >= long_from, distinct
        templates in hours >= short_from)."""
        rows = self.rows
        hb, codes = rows.hb[: rows.n], rows.values[: rows.n, 0]
        inside = hb >= long_from
        if not inside.any():
            return 0, 0, self._distinct(codes[hb >= short_from])
        per_template = np.bincount(codes[inside], weights=rows.values[: rows.n, 1][inside])
        top, distinct = int(per_template.max()), int(np.count_nonzero(per_template))
        return top, distinct, self._distinct(codes[hb >= short_from])

    @staticmethod
    def _distinct(codes: np.ndarray) -> int:
        return int(np.count_nonzero(np.bincount(codes))) if len(codes) else 0

    def __bool__(self) -> bool:
        return self.rows.n > 0

    def prune(self, before_hb: int) -> None:
        if self.rows.drop_before(before_hb) is None:
            return
        hb, codes = self.rows.hb[: self.rows.n].tolist(), self.rows.values[: self.rows.n, 0]
        self.where = {
            _pack(c, h): r for r, (c, h) in enumerate(zip(codes.tolist(), hb, strict=True))
        }


def _pack(code: int, hb: int) -> int:
    return (code << 32) | (hb + HB_OFFSET)  # hours of years 1..9999 fit in 32 bits


class Account:
    """Window state of one account."""

    __slots__ = ("counters", "hour_row", "keys", "models", "templates")

    def __init__(self) -> None:
        self.hour_row: dict[int, int] = {}
        self.counters = Rows(VECTOR)
        self.keys = KeySets()
        self.templates = Templates()
        self.models: dict[str, list[int]] = {}  # model -> sorted hours of use

    def row(self, hb: int) -> int:
        r = self.hour_row.get(hb)
        if r is None:
            r = self.hour_row[hb] = self.counters.append(hb)
        return r

    def sums(self, start: int) -> np.ndarray:
        c = self.counters
        return c.values[: c.n][c.hb[: c.n] >= start].sum(axis=0)

    def prune(self, before_hb: int) -> None:
        c = self.counters
        if c.drop_before(before_hb) is not None:
            self.hour_row = {h: r for r, h in enumerate(c.hb[: c.n].tolist())}
        self.keys.prune(before_hb)
        self.templates.prune(before_hb)
        for model in list(self.models):
            hours = [h for h in self.models[model] if h >= before_hb]
            if hours:
                self.models[model] = hours
            else:
                del self.models[model]


class WindowState:
    """Every account's windows, updated by the same deltas the stores write."""

    def __init__(self) -> None:
        self.accounts: dict[str, Account] = {}

    def _account(self, account_id: str) -> Account:
        a = self.accounts.get(account_id)
        if a is None:
            a = self.accounts[account_id] = Account()
        return a

    def apply_buckets(self, d: Deltas, min_hb: int | None = None) -> None:
        """Counter deltas (account_id, hb, some METRICS); rows before `min_hb` are skipped."""
        if d.num_rows == 0:
            return
        names = [c for c in d.column_names if c in METRICS]
        cols: list[int] | slice = [METRICS.index(c) for c in names]
        if cols and cols == list(range(cols[0], cols[-1] + 1)):
            # event and signal deltas each come in METRICS order: a slice is a plain view,
            # ~3x cheaper per row than fancy indexing
            cols = slice(cols[0], cols[-1] + 1)
        values = np.array([d[c] for c in names], dtype=np.int64).T  # rows x metrics
        req = names.index("requests") if "requests" in names else None
        for i, (account_id, hb) in enumerate(zip(d["account_id"], d["hb"], strict=True)):
            if min_hb is not None and hb < min_hb:
                continue
            a = self._account(account_id)
            r = a.row(hb)
            a.counters.values[r, cols] += values[i]
            if req is not None:
                a.counters.values[r, N_METRICS + hb % 24] += values[i, req]

    def apply_keys(self, d: Deltas, min_hb: int | None = None) -> None:
        """Key deltas (account_id, kind, key, hb, n)."""
        rows = zip(d["account_id"], d["kind"], d["key"], d["hb"], d["n"], strict=True)
        for account_id, kind, key, hb, n in rows:
            if (min_hb is not None and hb < min_hb) or not n:
                continue
            a = self._account(account_id)
            if kind == "tpl":  # most key deltas: templates count their distinct keys too
                a.templates.add(key, hb, n)
                continue
            if kind == "model":
                hours = a.models.setdefault(key, [])
                pos = bisect.bisect_left(hours, hb)
                if pos == len(hours) or hours[pos] != hb:
                    hours.insert(pos, hb)
            a.keys.see(kind, key, hb)

    def windows(self, accounts: list[str], short_from: int, long_from: int) -> Windows:
        out = empty_windows(accounts)
        n = len(accounts)
        long = np.zeros((n, VECTOR), dtype=np.int64)
        short = np.zeros((n, VECTOR), dtype=np.int64)
        for i, account_id in enumerate(accounts):
            a = self.accounts.get(account_id)
            if a is None:
                continue
            if a.counters.n:
                long[i] = a.sums(long_from)
                short[i] = a.sums(short_from)
            if a.keys.last.n:
                long_keys, short_keys = a.keys.distinct(long_from), a.keys.distinct(short_from)
                for j, kind in enumerate(KEY_KINDS):
                    out.distinct_long[kind][i] = long_keys[j]
                    out.distinct_short[kind][i] = short_keys[j]
            if a.templates:
                top, out.distinct_long["tpl"][i], out.distinct_short["tpl"][i] = a.templates.window(
                    long_from, short_from
                )
                out.top_template[i] = top
            for model, hours in a.models.items():
                pos = bisect.bisect_left(hours, long_from)
                if pos < len(hours):
                    out.first_use_hb[i][model] = hours[pos]
        long_cols, short_cols = long.T.tolist(), short.T.tolist()
        for j, m in enumerate(METRICS):
            out.long[m] = long_cols[j]
            out.short[m] = short_cols[j]
        out.hour_counts = long[:, N_METRICS:].tolist()
        return out

    def prune(self, before_hb: int) -> None:
        for account_id in list(self.accounts):
            self.accounts[account_id].prune(before_hb)


class IdIndex:
    """Which log record holds each acknowledged request id: 64-bit hashes in sorted NumPy
    segments (16 bytes per id, not a Python object per id), the newest in a dict.

    A hash is only a candidate: the caller confirms it against the record's ids, so a hash
    collision can never make a new event look like a duplicate. Hashes are Python's string
    hash, which is only stable within a process: the index is rebuilt from the log at start.

    A full dict is sealed and becomes a segment on a background thread (sorting and merging
    segments costs ~15 ms per 65k ids and grows with the index: on the commit path it showed as
    a latency spike every ~13 s at 5,000 events/s). Until its segment is published, a sealed
    dict is searched like the others. Callers serialise `add`, `candidates` and
    `drop_records` (the store's state lock); the merge thread only takes `_publish`.
    """

    def __init__(self) -> None:
        self.recent: dict[int, int] = {}  # hash -> record seq
        # the same (hashes, record seq) as NumPy parts, one per `add`, so sealing needs no
        # Python loop over the dict
        self._parts: list[tuple[np.ndarray, np.ndarray]] = []
        self.sealed: list[_Sealed] = []  # full dicts waiting for their segment
        self.collided: dict[str, int] = {}  # ids whose hash another id already has
        self.segments: list[tuple[np.ndarray, np.ndarray]] = []  # (sorted hashes, seqs)
        self.size = 0
        self._publish = threading.Lock()  # segments and sealed change together under it
        self._merger: threading.Thread | None = None

    def _snapshot(self) -> tuple[list[dict[int, int]], list[tuple[np.ndarray, np.ndarray]]]:
        with self._publish:
            return [self.recent, *(s.ids for s in self.sealed)], self.segments

    def candidates(self, ids: list[str]) -> dict[str, list[int]]:
        """id -> record seqs that may hold it (only ids with at least one)."""
        if not self.size:
            return {}
        dicts, segments = self._snapshot()
        out: dict[str, list[int]] = {}
        hashes = [hash(i) for i in ids]
        for rid, h in zip(ids, hashes, strict=True):
            for d in dicts:
                seq = d.get(h)
                if seq is not None:
                    out.setdefault(rid, []).append(seq)
            seq = self.collided.get(rid)
            if seq is not None:
                out.setdefault(rid, []).append(seq)
        if segments:
            q = np.array(hashes, dtype=np.int64)
            for seg_h, seg_s in segments:
                lo = np.searchsorted(seg_h, q, side="left")
                hi = np.searchsorted(seg_h, q, side="right")
                for k in np.flatnonzero(hi > lo):
                    out.setdefault(ids[k], []).extend(seg_s[lo[k] : hi[k]].tolist())
        return out

    def add(self, ids: list[str], seq: int) -> None:
        """Index `ids` (all new: the caller checked) as held by record `seq`."""
        hashes = [hash(i) for i in ids]
        dicts, segments = self._snapshot()
        taken = _in_segments(segments, hashes)
        fresh = []
        for rid, h, in_segment in zip(ids, hashes, taken, strict=True):
            if in_segment or any(h in d for d in dicts):
                self.collided[rid] = seq
            else:
                self.recent[h] = seq
                fresh.append(h)
        self._parts.append((np.array(fresh, dtype=np.int64), np.full(len(fresh), seq)))
        self.size += len(ids)
        if len(self.recent) >= SEGMENT_IDS:
            self._seal()

    def _seal(self) -> None:
        hashes = np.concatenate([h for h, _ in self._parts])
        seqs = np.concatenate([s for _, s in self._parts])
        with self._publish:
            self.sealed.append(_Sealed(self.recent, hashes, seqs))
            self.recent, self._parts = {}, []
            if self._merger is None:
                self._merger = threading.Thread(
                    target=self._merge_sealed, name="dg-id-index", daemon=True
                )
                self._merger.start()

    def _merge_sealed(self) -> None:
        """Turn sealed dicts into segments, oldest first."""
        try:
            while self._merge_oldest():
                pass
        except BaseException:  # the next seal starts a new thread; the dicts stay searched
            with self._publish:
                self._merger = None
            raise

    def _merge_oldest(self) -> bool:
        """The oldest sealed dict becomes a segment; False (and the thread ends) if none is
        left. Segments of similar size merge (as in an LSM tree), so each id is re-sorted
        O(log n) times and a look-up scans few segments. NumPy's sort releases the GIL, so
        requests go on meanwhile."""
        with self._publish:
            if not self.sealed:
                self._merger = None  # under the lock: a seal from now on starts a thread
                return False
            sealed, segments = self.sealed[0], list(self.segments)
        segments.append(_sorted(sealed.hashes, sealed.seqs))
        while len(segments) > 1 and len(segments[-2][0]) <= 2 * len(segments[-1][0]):
            (h2, s2), (h1, s1) = segments.pop(), segments.pop()
            segments.append(_sorted(np.concatenate([h1, h2]), np.concatenate([s1, s2])))
        with self._publish:
            self.segments = segments
            self.sealed.pop(0)  # its ids are in the published segments now
        return True

    def wait_merged(self) -> None:
        """Return once every sealed dict is a segment."""
        merger = self._merger
        if merger is not None:
            merger.join()

    def drop_records(self, seqs: set[int]) -> None:
        """Forget the ids of pruned log records."""
        if not seqs:
            return
        self.wait_merged()  # a merge in flight would publish the dropped ids again
        dead = np.fromiter(seqs, dtype=np.int64, count=len(seqs))
        kept_segments = []
        for seg_h, seg_s in self.segments:
            keep = ~np.isin(seg_s, dead)
            if keep.any():
                kept_segments.append((seg_h[keep], seg_s[keep]))
        with self._publish:
            self.segments = kept_segments
        self.recent = {h: s for h, s in self.recent.items() if s not in seqs}
        self._parts = [
            (
                np.fromiter(self.recent.keys(), dtype=np.int64, count=len(self.recent)),
                np.fromiter(self.recent.values(), dtype=np.int64, count=len(self.recent)),
            )
        ]
        self.collided = {r: s for r, s in self.collided.items() if s not in seqs}
        self.size = len(self.recent) + len(self.collided) + sum(len(h) for h, _ in self.segments)


@dataclass
class _Sealed:
    """A full dict of the newest ids, waiting for the merge thread to make it a segment."""

    ids: dict[int, int]  # hash -> record seq, searched until the segment is published
    hashes: np.ndarray  # the same pairs as arrays, for the merge
    seqs: np.ndarray


def _in_segments(segments: list[tuple[np.ndarray, np.ndarray]], hashes: list[int]) -> list[bool]:
    if not segments:
        return [False] * len(hashes)
    q = np.array(hashes, dtype=np.int64)
    found = np.zeros(len(q), dtype=bool)
    for seg_h, _ in segments:
        pos = np.minimum(np.searchsorted(seg_h, q), len(seg_h) - 1)
        found |= seg_h[pos] == q
    return found.tolist()


def _sorted(h: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(h, kind="stable")
    return h[order], s[order]
