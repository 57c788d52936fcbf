"""Redis state, for several service replicas behind one load balancer.

Layout (all under `state.redis_prefix`, every key expiring after the retention):
  req:<request_id>      decision JSON (idempotency)
  bk:<account>          hash "<hour>:<metric>" -> count
  ky:<account>          hash "<kind>|<hour>|<key>" -> count
  bl:<kind>:<hour>      list of Arrow IPC feature blobs; blhours: sorted set of those hours
  acct:<account>        last decision JSON;  kv:<name>: analysis results, campaigns, clock

A commit WATCHes its request ids, reads its accounts' hashes, merges the batch's own deltas in
memory to decide, then writes counters, blobs and decisions in one MULTI/EXEC: all or nothing,
and a request id another replica stored meanwhile aborts it (the caller retries, and then sees
the id as known). Durability is Redis's: run it with `appendonly yes` and `appendfsync always`
for "acknowledged = persisted" (`everysec` may lose the last second on a power cut).
"""

from __future__ import annotations

from collections import defaultdict

import redis

from distillguard.serve.store import (
    METRICS,
    Commit,
    Decide,
    Deltas,
    Store,
    Windows,
    empty_windows,
)

CLOCK_SCRIPT = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > cur then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
"""
HOUR_S = 3600


def _bucket_fields(tables: list[Deltas]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for t in tables:
        metrics = [m for m in t.column_names if m in METRICS]
        cols = {c: t[c].to_pylist() for c in ["account_id", "hb", *metrics]}
        for i, account in enumerate(cols["account_id"]):
            hb = cols["hb"][i]
            for m in metrics:
                if cols[m][i]:
                    out[account][f"{hb}:{m}"] += int(cols[m][i])
    return out


def _key_fields(tables: list[Deltas]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for t in tables:
        rows = zip(
            *[t[c].to_pylist() for c in ("account_id", "kind", "key", "hb", "n")], strict=True
        )
        for account, kind, key, hb, n in rows:
            out[account][f"{kind}|{hb}|{key}"] += int(n)
    return out


def _decode(h: dict) -> dict[str, int]:
    return {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in h.items()}


def windows_from_hashes(
    accounts: list[str],
    buckets: list[dict[str, int]],
    keys: list[dict[str, int]],
    short_from: int,
    long_from: int,
) -> Windows:
    """The `Windows` of each account from its two hashes (same meaning as the SQLite queries)."""
    w = empty_windows(accounts)
    for i in range(len(accounts)):
        for field, v in buckets[i].items():
            hb_text, _, metric = field.partition(":")
            hb = int(hb_text)
            if hb < long_from or metric not in w.long:
                continue
            w.long[metric][i] += v
            if hb >= short_from:
                w.short[metric][i] += v
            if metric == "requests":
                w.hour_counts[i][hb % 24] += v
        seen_long: dict[str, set[str]] = defaultdict(set)
        seen_short: dict[str, set[str]] = defaultdict(set)
        tpl: dict[str, int] = defaultdict(int)
        for field, v in keys[i].items():
            kind, hb_text, key = field.split("|", 2)
            hb = int(hb_text)
            if hb < long_from:
                continue
            seen_long[kind].add(key)
            if hb >= short_from:
                seen_short[kind].add(key)
            if kind == "tpl":
                tpl[key] += v
            elif kind == "model":
                first = w.first_use_hb[i].get(key)
                w.first_use_hb[i][key] = hb if first is None else min(first, hb)
        for kind in w.distinct_long:
            w.distinct_long[kind][i] = len(seen_long[kind])
            w.distinct_short[kind][i] = len(seen_short[kind])
        w.top_template[i] = max(tpl.values(), default=0)
    return w


class RedisStore(Store):
    """`Store` on a Redis server shared by replicas."""

    def __init__(self, url: str, prefix: str = "dg:", retention_hours: int = 192) -> None:
        self.r = redis.Redis.from_url(url)
        self.r.ping()
        self.p = prefix
        self.ttl = int(retention_hours) * HOUR_S
        self._clock = self.r.register_script(CLOCK_SCRIPT)

    def _req(self, rid: str) -> str:
        return f"{self.p}req:{rid}"

    def known(self, request_ids: list[str]) -> dict[str, str]:
        if not request_ids:
            return {}
        values = self.r.mget([self._req(r) for r in request_ids])
        return {
            rid: v.decode() for rid, v in zip(request_ids, values, strict=True) if v is not None
        }

    def _hashes(self, pipe, accounts: list[str]) -> tuple[list[dict], list[dict]]:
        for a in accounts:
            pipe.hgetall(f"{self.p}bk:{a}")
            pipe.hgetall(f"{self.p}ky:{a}")
        raw = pipe.execute()
        return [_decode(h) for h in raw[0::2]], [_decode(h) for h in raw[1::2]]

    def commit(self, c: Commit, decide: Decide | None = None) -> bool:
        bucket_delta = _bucket_fields(c.buckets)
        key_delta = _key_fields(c.keys)
        req_keys = [self._req(r) for r in c.request_ids]
        with self.r.pipeline(transaction=True) as pipe:
            try:
                if req_keys:
                    pipe.watch(*req_keys)
                    if any(v is not None for v in pipe.mget(req_keys)):
                        return False
                if decide is not None:
                    accounts = list(dict.fromkeys(c.request_accounts))
                    reader = self.r.pipeline(transaction=False)
                    buckets, keys = self._hashes(reader, accounts)
                    for i, a in enumerate(accounts):  # this batch's own counts, not yet written
                        for f, v in bucket_delta.get(a, {}).items():
                            buckets[i][f] = buckets[i].get(f, 0) + v
                        for f, v in key_delta.get(a, {}).items():
                            keys[i][f] = keys[i].get(f, 0) + v
                    w = windows_from_hashes(accounts, buckets, keys, *c.window_from)
                    c.request_decisions, c.accounts = decide(w)
                pipe.multi()
                self._write(pipe, c, bucket_delta, key_delta, req_keys)
                pipe.execute()
            except redis.WatchError:
                return False
        return True

    def _write(self, pipe, c: Commit, bucket_delta, key_delta, req_keys: list[str]) -> None:
        for prefix, delta in (("bk", bucket_delta), ("ky", key_delta)):
            for account, fields in delta.items():
                name = f"{self.p}{prefix}:{account}"
                for f, v in fields.items():
                    pipe.hincrby(name, f, v)
                pipe.expire(name, self.ttl)
        for key, decision in zip(req_keys, c.request_decisions, strict=True):
            pipe.set(key, decision, ex=self.ttl)
        if req_keys:
            pipe.incrby(f"{self.p}nreq", len(req_keys))
        for hb, kind, data, n in c.blobs:
            name = f"{self.p}bl:{kind}:{hb}"
            pipe.rpush(name, data)
            pipe.expire(name, self.ttl)
            pipe.zadd(f"{self.p}blhours", {str(hb): hb})
            if kind == "events":
                pipe.hincrby(f"{self.p}blrows", str(hb), n)
        for account, decision in c.accounts.items():
            pipe.set(f"{self.p}acct:{account}", decision, ex=self.ttl)
        if c.clock_ms is not None:
            self._clock(keys=[f"{self.p}kv:clock"], args=[c.clock_ms], client=pipe)
        pipe.incr(f"{self.p}version")

    def windows(self, accounts: list[str], short_from_hb: int, long_from_hb: int) -> Windows:
        buckets, keys = self._hashes(self.r.pipeline(transaction=False), accounts)
        return windows_from_hashes(accounts, buckets, keys, short_from_hb, long_from_hb)

    def blobs(self, since_hb: int) -> dict[str, list[bytes]]:
        hours = [int(h) for h in self.r.zrangebyscore(f"{self.p}blhours", since_hb, "+inf")]
        out: dict[str, list[bytes]] = {}
        for kind in ("events", "signals"):
            pipe = self.r.pipeline(transaction=False)
            for hb in hours:
                pipe.lrange(f"{self.p}bl:{kind}:{hb}", 0, -1)
            out[kind] = [b for chunk in pipe.execute() for b in chunk]
        return out

    def event_rows_by_hour(self, since_hb: int) -> list[tuple[int, int]]:
        rows = {int(k): int(v) for k, v in self.r.hgetall(f"{self.p}blrows").items()}
        return sorted(((h, n) for h, n in rows.items() if h >= since_hb), reverse=True)

    def account(self, account_id: str) -> str | None:
        v = self.r.get(f"{self.p}acct:{account_id}")
        return v.decode() if v is not None else None

    def get_kv(self, key: str) -> bytes | None:
        return self.r.get(f"{self.p}kv:{key}")

    def put_kv(self, key: str, value: bytes) -> None:
        self.r.set(f"{self.p}kv:{key}", value)

    def prune(self, before_hb: int) -> None:
        self.r.zremrangebyscore(f"{self.p}blhours", "-inf", before_hb - 1)
        old_hours = [h for h in self.r.hkeys(f"{self.p}blrows") if int(h) < before_hb]
        if old_hours:
            self.r.hdel(f"{self.p}blrows", *old_hours)
        for prefix, hour_of in (
            ("bk", lambda f: f.split(":", 1)[0]),
            ("ky", lambda f: f.split("|")[1]),
        ):
            for name in self.r.scan_iter(f"{self.p}{prefix}:*", count=500):
                old = [f for f in _decode(self.r.hgetall(name)) if int(hour_of(f)) < before_hb]
                if old:
                    self.r.hdel(name, *old)

    def count_requests(self) -> int:
        return int(self.r.get(f"{self.p}nreq") or 0)

    def version(self) -> int:
        return int(self.r.get(f"{self.p}version") or 0)

    def close(self) -> None:
        self.r.close()
