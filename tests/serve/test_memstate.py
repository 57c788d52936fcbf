from __future__ import annotations

import random
import threading
from collections import defaultdict

import pytest

from distillguard.serve import memstate
from distillguard.serve.logstore import SqliteStore
from distillguard.serve.memstate import IdIndex, WindowState
from distillguard.serve.store import EVENT_METRICS, METRICS, Commit, Deltas, Windows

ACCOUNTS = ["a", "b", "c", "d"]
KINDS = ["ip", "home_ip", "subnet", "tpl", "model"]


def _random_deltas(rng: random.Random, hours: range) -> tuple[Deltas, Deltas]:
    rows = [(rng.choice(ACCOUNTS), rng.choice(hours)) for _ in range(rng.randint(1, 6))]
    buckets = {"account_id": [a for a, _ in rows], "hb": [h for _, h in rows]}
    for m in [*rng.sample(METRICS, 5), "requests"]:
        buckets[m] = [rng.randint(0, 4) for _ in rows]
    keys: dict[str, list] = {c: [] for c in ("account_id", "kind", "key", "hb", "n")}
    for _ in range(rng.randint(1, 8)):
        keys["account_id"].append(rng.choice(ACCOUNTS))
        keys["kind"].append(rng.choice(KINDS))
        keys["key"].append(f"k{rng.randint(0, 6)}")
        keys["hb"].append(rng.choice(hours))
        keys["n"].append(rng.randint(1, 3))
    return Deltas(buckets), Deltas(keys)


def _reference(buckets: list[Deltas], keys: list[Deltas], accounts, s_from, l_from) -> dict:
    """The SQL queries' meaning, computed the slow obvious way from every delta row."""
    out: dict = {}
    for acc in accounts:
        long, short = defaultdict(int), defaultdict(int)
        hours = [0] * 24
        for d in buckets:
            for i, (a, hb) in enumerate(zip(d["account_id"], d["hb"], strict=True)):
                if a != acc:
                    continue
                for m in (c for c in d.column_names if c in METRICS):
                    if hb >= l_from:
                        long[m] += d[m][i]
                    if hb >= s_from:
                        short[m] += d[m][i]
                if hb >= l_from and "requests" in d.column_names:
                    hours[hb % 24] += d["requests"][i]
        seen = defaultdict(set)  # (kind, window) -> keys
        tpl, first = defaultdict(int), {}
        for d in keys:
            for a, kind, key, hb, n in zip(*(d[c] for c in d.column_names), strict=True):
                if a != acc:
                    continue
                if hb >= l_from:
                    seen[(kind, "long")].add(key)
                    if kind == "tpl":
                        tpl[key] += n
                    if kind == "model":
                        first[key] = min(first.get(key, hb), hb)
                if hb >= s_from:
                    seen[(kind, "short")].add(key)
        out[acc] = {
            "long": {m: long[m] for m in METRICS},
            "short": {m: short[m] for m in METRICS},
            "distinct_long": {k: len(seen[(k, "long")]) for k in KINDS},
            "distinct_short": {k: len(seen[(k, "short")]) for k in KINDS},
            "top": max(tpl.values(), default=0),
            "hours": hours,
            "first": first,
        }
    return out


def _as_reference(w: Windows) -> dict:
    return {
        acc: {
            "long": {m: w.long[m][i] for m in METRICS},
            "short": {m: w.short[m][i] for m in METRICS},
            "distinct_long": {k: w.distinct_long[k][i] for k in KINDS},
            "distinct_short": {k: w.distinct_short[k][i] for k in KINDS},
            "top": w.top_template[i],
            "hours": list(w.hour_counts[i]),
            "first": dict(w.first_use_hb[i]),
        }
        for i, acc in enumerate(w.accounts)
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_memory_windows_equal_the_sql_meaning_as_the_clock_moves(seed):
    rng = random.Random(seed)
    state, buckets, keys = WindowState(), [], []
    accounts = [*ACCOUNTS, "never-seen"]
    for step in range(60):
        now = 100 + step * rng.choice([0, 1, 3])  # a clock that stalls or jumps
        b, k = _random_deltas(rng, range(now - 200, now + 2))  # late and early rows too
        state.apply_buckets(b)
        state.apply_keys(k)
        buckets.append(b)
        keys.append(k)
        for s_from, l_from in [(now - 23, now - 167), (rng.randint(0, 400), rng.randint(0, 400))]:
            got = _as_reference(state.windows(accounts, s_from, l_from))
            assert got == _reference(buckets, keys, accounts, s_from, l_from)


def test_pruned_hours_are_forgotten_and_later_ones_kept():
    rng = random.Random(7)
    state, buckets, keys = WindowState(), [], []
    for _ in range(40):
        b, k = _random_deltas(rng, range(100, 140))
        state.apply_buckets(b)
        state.apply_keys(k)
        buckets.append(b)
        keys.append(k)
    state.prune(120)
    kept_b = [_filtered(d, 120) for d in buckets]
    kept_k = [_filtered(d, 120) for d in keys]
    for s_from, l_from in [(0, 0), (125, 110), (130, 121)]:
        got = _as_reference(state.windows(ACCOUNTS, s_from, l_from))
        assert got == _reference(kept_b, kept_k, ACCOUNTS, s_from, l_from)
    before = _as_reference(state.windows(ACCOUNTS, 0, 0))
    assert any(v["long"]["requests"] for v in before.values())


def _filtered(d: Deltas, min_hb: int) -> Deltas:
    keep = [i for i, hb in enumerate(d["hb"]) if hb >= min_hb]
    return Deltas({c: [d[c][i] for i in keep] for c in d.column_names})


def test_id_index_finds_ids_across_segments_and_forgets_dropped_records(monkeypatch):
    monkeypatch.setattr(memstate, "SEGMENT_IDS", 8)  # several sorted segments and merges
    index = IdIndex()
    for seq in range(1, 21):
        index.add([f"r{seq}-{i}" for i in range(5)], seq)
    index.wait_merged()
    assert len(index.segments) >= 1 and not index.sealed and index.size == 100
    found = index.candidates(["r3-4", "r17-0", "nope"])
    assert found["r3-4"] == [3] and found["r17-0"] == [17] and "nope" not in found
    index.drop_records({3, 4})
    assert "r3-4" not in index.candidates(["r3-4"]) and index.size == 90


def _held_merges(monkeypatch) -> threading.Event:
    """Background merges wait for the returned event before sorting."""
    go = threading.Event()
    sort = memstate._sorted

    def held(h, s):
        assert go.wait(10)
        return sort(h, s)

    monkeypatch.setattr(memstate, "_sorted", held)
    return go


def _index_with_held_merges(monkeypatch) -> tuple[IdIndex, threading.Event]:
    """Records 1-4 of four ids each, in dicts of 8 whose merges wait for the event."""
    monkeypatch.setattr(memstate, "SEGMENT_IDS", 8)
    go = _held_merges(monkeypatch)
    index = IdIndex()
    for seq in range(1, 5):
        index.add([f"r{seq}-{i}" for i in range(4)], seq)
    return index, go


def test_id_index_finds_ids_of_a_sealed_dict_before_its_segment_exists(monkeypatch):
    index, go = _index_with_held_merges(monkeypatch)
    assert index.sealed and not index.segments  # the merge is held: not published yet
    assert index.candidates(["r1-0", "r4-3"]) == {"r1-0": [1], "r4-3": [4]}
    index.sealed[0].ids[hash("twin")] = 1  # as if an id with twin's hash were sealed
    index.add(["twin"], 5)
    assert index.collided == {"twin": 5}  # the collision check searches sealed dicts too
    go.set()
    index.wait_merged()
    assert not index.sealed and index.segments
    assert index.candidates(["r1-0", "r4-3"]) == {"r1-0": [1], "r4-3": [4]}


def test_id_index_drop_waits_for_a_merge_in_flight(monkeypatch):
    index, go = _index_with_held_merges(monkeypatch)
    threading.Timer(0.2, go.set).start()
    index.drop_records({1})  # must not let the merge publish record 1's ids again
    assert not index.sealed
    assert index.candidates(["r1-0", "r2-0"]) == {"r2-0": [2]} and index.size == 12


def test_id_index_keeps_sealed_ids_searchable_after_a_failed_merge(monkeypatch):
    monkeypatch.setattr(memstate, "SEGMENT_IDS", 8)
    sort = memstate._sorted
    calls = []

    def fails_once(h, s):
        calls.append(len(h))
        if len(calls) == 1:
            raise MemoryError("as if the merge ran out of memory")
        return sort(h, s)

    monkeypatch.setattr(memstate, "_sorted", fails_once)
    monkeypatch.setattr(threading, "excepthook", lambda args: None)  # expected: no report
    index = IdIndex()
    index.add([f"a{i}" for i in range(8)], 1)
    index.wait_merged()
    assert index.sealed and index.candidates(["a3"]) == {"a3": [1]}
    index.add([f"b{i}" for i in range(8)], 2)  # the next seal starts a new merge thread
    index.wait_merged()
    assert not index.sealed and index.candidates(["a3", "b5"]) == {"a3": [1], "b5": [2]}


def test_id_index_keeps_an_id_whose_hash_is_taken_apart():
    index = IdIndex()
    index.recent[hash("new")] = 1  # as if another id with the same hash were stored
    index.size = 1
    index.add(["new"], 2)
    assert index.collided == {"new": 2}
    assert sorted(index.candidates(["new"])["new"]) == [1, 2]


def _commit(ids: list[str], account: str, hb: int) -> Commit:
    n = len(ids)
    return Commit(
        request_ids=ids,
        request_accounts=[account] * n,
        request_hours=[hb] * n,
        request_decisions=[f'{{"decision":"allow","n":{n}}}'] * n,
        buckets=[Deltas({"account_id": [account], "hb": [hb], **{m: [n] for m in EVENT_METRICS}})],
        keys=[
            Deltas(
                {"account_id": [account], "kind": ["ip"], "key": ["1.2.3.4"], "hb": [hb], "n": [n]}
            )
        ],
        accounts={account: f'{{"decision":"allow","n":{n}}}'},
    )


def test_log_replay_restores_windows_ids_and_last_decisions(tmp_path):
    store = SqliteStore(tmp_path / "s.db")
    assert store.commit(_commit(["x1", "x2"], "acc", 500))
    assert store.commit(_commit(["x3"], "acc", 501))
    before = _as_reference(store.windows(["acc"], 490, 400))
    store.close()
    again = SqliteStore(tmp_path / "s.db")
    assert _as_reference(again.windows(["acc"], 490, 400)) == before
    assert before["acc"]["long"]["requests"] == 3
    assert again.known(["x1", "x3", "x9"]) == {
        "x1": '{"decision":"allow","n":2}',
        "x3": '{"decision":"allow","n":1}',
    }
    assert again.account("acc") == '{"decision":"allow","n":1}'
    assert again.count_requests() == 3
    assert not again.commit(_commit(["x2", "x4"], "acc", 502))  # x2 is taken: nothing written
    assert again.count_requests() == 3
    again.close()


def test_two_stores_on_one_file_see_each_others_commits(tmp_path):
    one, two = SqliteStore(tmp_path / "s.db"), SqliteStore(tmp_path / "s.db")
    assert one.commit(_commit(["p1"], "acc", 600))
    assert two.known(["p1"]) == {"p1": '{"decision":"allow","n":1}'}
    assert not two.commit(_commit(["p1"], "acc", 600))  # caught up under the writer lock
    assert two.commit(_commit(["p2", "p3"], "acc", 600))
    assert one.windows(["acc"], 0, 0).long["requests"] == [3]
    assert two.windows(["acc"], 0, 0).distinct_long["ip"] == [1]
    one.close()
    two.close()


def test_prune_survives_a_restart(tmp_path):
    store = SqliteStore(tmp_path / "s.db")
    for hb in (100, 101, 103):
        assert store.commit(_commit([f"r{hb}"], "a", hb))
    store.prune(before_hb=102)
    expect = _as_reference(store.windows(["a"], 0, 0))
    store.close()
    again = SqliteStore(tmp_path / "s.db")
    assert _as_reference(again.windows(["a"], 0, 0)) == expect
    assert expect["a"]["long"]["requests"] == 1
    assert set(again.known(["r100", "r101", "r103"])) == {"r103"}
    again.close()


def test_settled_heap_is_frozen_with_rarer_young_collections():
    import gc

    from distillguard.serve.app import GC_YOUNG_THRESHOLD, settle_heap

    threshold = gc.get_threshold()
    try:
        settle_heap()
        assert gc.get_freeze_count() > 1000
        assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
