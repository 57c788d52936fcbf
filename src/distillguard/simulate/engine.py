"""Run a scenario: accounts first (small), then events chunk by chunk, streamed to Parquet.

Output layout (DIR):
  events.parquet    contract.EVENTS, sorted by timestamp (then request_id), 250k-row groups.
  accounts.parquet  contract.ACCOUNTS (sorted by account_id, so row order reveals nothing)
  labels.parquet    contract.LABELS (ground truth)
  releases.parquet  contract.RELEASES
  ip_intel.csv      contract section 4
  truth.json        scenario metadata: per-campaign main capability, counts, personas
  signups.parquet   sign-up ground truth: per account its planned first use, its campaign's
                    start, whether it is a replacement account, and its batch sign-up run
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from distillguard import contract
from distillguard.errors import UserError
from distillguard.simulate import network
from distillguard.simulate.accounts import (
    DAY_MS,
    PersonaAccounts,
    SharedPools,
    build_persona_accounts,
    scaled_counts,
)
from distillguard.simulate.events import Segment, generate_events
from distillguard.simulate.scenario import Scenario, load_scenario

CHUNK_EVENTS = 200_000
BUCKET_EVENTS = 500_000  # events per time bucket sorted in memory at the end
ROW_GROUP = 250_000
SPILL_OPTS = pa.ipc.IpcWriteOptions(compression="lz4")
PARQUET_OPTS = {"compression": "zstd", "compression_level": 1}


class TimeBuckets:
    """Spill events into time buckets, then write them out in global timestamp order.

    Chunks are generated account by account, so their rows span the whole window. Each chunk is
    split into ~1M-event time buckets on disk; the final file is written bucket by bucket, each
    sorted in memory (one bucket at a time keeps memory flat at any scale).
    """

    def __init__(self, root: Path, start_ms: int, span_ms: int, total_events: int) -> None:
        self.root = root
        self.start_ms = start_ms
        self.n = max(1, min(4096, -(-total_events // BUCKET_EVENTS)))
        self.width = max(1, -(-span_ms // self.n))
        self.writers: dict[int, pa.ipc.RecordBatchFileWriter] = {}
        root.mkdir(parents=True, exist_ok=True)

    def add(self, table: pa.Table) -> None:
        ts = table["timestamp"].cast(pa.int64()).to_numpy()
        bucket = np.clip((ts - self.start_ms) // self.width, 0, self.n - 1)
        order = np.argsort(bucket, kind="stable")
        bounds = np.searchsorted(bucket[order], np.arange(self.n + 1))
        for b in range(self.n):
            lo, hi = bounds[b], bounds[b + 1]
            if hi > lo:
                if b not in self.writers:
                    self.writers[b] = pa.ipc.new_file(
                        str(self.root / f"b{b:05d}.arrow"), contract.EVENTS, options=SPILL_OPTS
                    )
                self.writers[b].write_table(table.take(pa.array(order[lo:hi])))

    def merge_sorted(self, path: Path, progress: Callable[[int], None] | None = None) -> None:
        for w in self.writers.values():
            w.close()
        written = 0
        with pq.ParquetWriter(path, contract.EVENTS, **PARQUET_OPTS) as out:
            for b in sorted(self.writers):
                spill = self.root / f"b{b:05d}.arrow"
                with pa.memory_map(str(spill)) as src:
                    part = pa.ipc.open_file(src).read_all()
                keys = [("timestamp", "ascending"), ("request_id", "ascending")]
                out.write_table(part.take(pc.sort_indices(part, keys)), row_group_size=ROW_GROUP)
                written += part.num_rows
                del part
                spill.unlink()
                if progress:
                    progress(written)
        self.writers = {}

    def cleanup(self) -> None:
        for w in self.writers.values():
            w.close()
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class SimResult:
    out: Path
    scenario: str
    seed: int
    scale: float
    accounts: int
    events: int
    seconds: float
    personas: dict[str, dict[str, int | str | None]] = field(default_factory=dict)


def _seq(*parts: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(x) & 0xFFFFFFFF for x in parts]))


def _segments(pa_: PersonaAccounts, cap: int) -> list[tuple[int, int, int, int]]:
    """(account, n, t0, t1) pieces; an account above `cap` events is cut into time windows."""
    out = []
    for a, (n, t0, t1) in enumerate(
        zip(pa_.n_events.tolist(), pa_.active_start.tolist(), pa_.active_end.tolist(), strict=True)
    ):
        k = -(-n // cap)
        if k == 1:
            out.append((a, n, t0, t1))
            continue
        edges = np.linspace(t0, t1, k + 1).astype(np.int64)
        sizes = np.full(k, n // k)
        sizes[: n - sizes.sum()] += 1
        out.extend((a, int(sizes[i]), int(edges[i]), int(edges[i + 1])) for i in range(k))
    return out


def _plan_chunks(
    personas: list[PersonaAccounts], seed: int, chunk: int
) -> list[dict[int, list[tuple[int, int, int, int]]]]:
    """Spread all segments over chunks of ~`chunk` events, each mixing every persona."""
    flat: list[tuple[int, tuple[int, int, int, int]]] = []
    for pi, pa_ in enumerate(personas):
        flat.extend((pi, s) for s in _segments(pa_, chunk))
    rng = _seq(seed, 0xC4C4)
    order = rng.permutation(len(flat))
    sizes = np.array([flat[i][1][1] for i in order])
    chunk_of = np.cumsum(sizes) // chunk
    chunks: list[dict[int, list[tuple[int, int, int, int]]]] = [
        {} for _ in range(int(chunk_of.max()) + 1 if len(order) else 0)
    ]
    for c, i in zip(chunk_of.tolist(), order.tolist(), strict=True):
        pi, segment = flat[i]
        chunks[c].setdefault(pi, []).append(segment)
    return [c for c in chunks if c]


def _as_segment(rows: list[tuple[int, int, int, int]]) -> Segment:
    arr = np.array(sorted(rows), dtype=np.int64)
    return Segment(arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3])


def simulate(
    scenario: str | Path | Scenario,
    scale: float | None = None,
    seed: int = 0,
    out: str | Path = "sim-out",
    progress: Callable[[int, int], None] | None = None,
    chunk_events: int = CHUNK_EVENTS,
) -> SimResult:
    """Generate a scenario into `out` (see module docstring for the files)."""
    started = time.perf_counter()
    sc = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    scale = sc.default_scale if scale is None else float(scale)
    if not (0 < scale <= 10):
        raise UserError("scale must be in (0, 10]")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    n_accounts = sum(scaled_counts(p, scale, sc.min_accounts)[0] for p in sc.personas)
    pools = SharedPools.create(_seq(seed, 0x9001), n_accounts)
    proxy_flags: list[np.ndarray] = []
    personas: list[PersonaAccounts] = []
    taken: dict[str | None, int] = {}  # accounts per campaign so far: their wrapper slices
    for i, p in enumerate(sc.personas):
        acc = build_persona_accounts(
            sc, p, i, scale, _seq(seed, 0xACC, i), pools, proxy_flags,
            account_salt=seed * 7919 + i, wrapper_offset=taken.get(p.campaign, 0), seed=seed,
        )  # fmt: skip
        personas.append(acc)
        taken[p.campaign] = taken.get(p.campaign, 0) + len(acc.n_events)
    _write_accounts(out, sc, personas)
    _write_signup_truth(out, sc, personas)
    network.write_ip_intel(
        out / "ip_intel.csv", np.concatenate(proxy_flags) if proxy_flags else np.zeros(0, np.uint32)
    )

    ips = pools.flat()
    uas = pa.array(pools.ua, pa.string())
    chunks = _plan_chunks(personas, seed, chunk_events)
    total = int(sum(int(p.n_events.sum()) for p in personas))
    done = 0
    req_salt = (seed * 0x5851F42D4C957F2D + 0x14057B7EF767814F) & (2**64 - 1)
    buckets = TimeBuckets(out / ".buckets", sc.start_ms, int(sc.days * DAY_MS), total)
    try:
        for ci, chunk in enumerate(chunks):
            parts = []
            for pi in sorted(chunk):
                seg = _as_segment(chunk[pi])
                parts.append(
                    generate_events(
                        sc, personas[pi], seg, ips, uas, _seq(seed, ci, pi, 0xE7), done, req_salt
                    )
                )
                done += int(seg.n.sum())
            buckets.add(pa.concat_tables(parts))
            if progress:  # generation is the first half of the work, the sorted write the second
                progress(done, 2 * total)
        buckets.merge_sorted(
            out / "events.parquet",
            (lambda rows: progress(total + rows, 2 * total)) if progress else None,
        )
    finally:
        buckets.cleanup()
    _write_truth(out, sc, personas, seed, scale)
    result = SimResult(out, sc.name, seed, scale, n_accounts, total, time.perf_counter() - started)
    result.personas = {
        p.persona.name: {
            "accounts": len(p.n_events),
            "events": int(p.n_events.sum()),
            "campaign": p.persona.campaign,
        }
        for p in personas
    }
    return result


def _write_accounts(out: Path, sc: Scenario, personas: list[PersonaAccounts]) -> None:
    accounts = pa.concat_tables([p.table for p in personas])
    if pc.count_distinct(accounts["account_id"]).as_py() != accounts.num_rows:
        raise RuntimeError("account id collision; use another seed")
    labels = pa.table(
        {
            "account_id": accounts["account_id"],
            "persona": pa.array(
                np.repeat(
                    [p.persona.name for p in personas], [len(p.n_events) for p in personas]
                ).tolist(),
                pa.string(),
            ),
            "campaign_id": pa.array(
                np.repeat(
                    np.array([p.persona.campaign for p in personas], dtype=object),
                    [len(p.n_events) for p in personas],
                ).tolist(),
                pa.string(),
            ),
        },
        schema=contract.LABELS,
    )
    order = pc.sort_indices(accounts, [("account_id", "ascending")])
    pq.write_table(accounts.take(order), out / "accounts.parquet", **PARQUET_OPTS)
    pq.write_table(labels.take(order), out / "labels.parquet", **PARQUET_OPTS)
    releases = pa.table(
        {
            "model": [r.model for r in sc.releases],
            "released_at": pa.array(
                [sc.start_ms + int(r.at_day * DAY_MS) for r in sc.releases], pa.int64()
            ).cast(contract.TIMESTAMP),
        },
        schema=contract.RELEASES,
    )
    pq.write_table(releases, out / "releases.parquet", **PARQUET_OPTS)


def _write_signup_truth(out: Path, sc: Scenario, personas: list[PersonaAccounts]) -> None:
    """Who signed up when, and which attacker accounts replace burned ones (issue 9).

    A campaign starts with the first planned use of any of its accounts; an attacker account
    registered after that start is a replacement (the operation was already running).
    """
    campaign_start: dict[str, int] = {}
    for p in personas:
        if p.persona.campaign and len(p.active_start):
            first = int(p.active_start.min())
            c = p.persona.campaign
            campaign_start[c] = min(campaign_start.get(c, first), first)
    parts = []
    for p in personas:
        n = len(p.n_events)
        created = p.table["created_at"].cast(pa.int64()).to_numpy()
        camp = p.persona.campaign
        start = np.full(n, campaign_start.get(camp, 0) if camp else 0, np.int64)
        batch = p.signup_batch if p.signup_batch is not None else np.full(n, -1, np.int64)
        batch_ids = pa.array(
            np.char.add(f"{p.persona.name}-", batch.astype(str)).astype(object), pa.string()
        )
        parts.append(
            pa.table(
                {
                    "account_id": p.account_id,
                    "persona": pa.array([p.persona.name] * n, pa.string()),
                    "campaign_id": pa.array([camp] * n, pa.string()),
                    "created_at": p.table["created_at"],
                    "in_window": pa.array(created >= sc.start_ms),
                    "first_use": pa.array(p.active_start, pa.int64()).cast(contract.TIMESTAMP),
                    "campaign_start": pa.array(
                        start, pa.int64(), mask=np.full(n, camp is None)
                    ).cast(contract.TIMESTAMP),
                    "replacement": pa.array((created > start) & (camp is not None)),
                    "signup_batch": pc.if_else(pa.array(batch >= 0), batch_ids, None),
                }
            )
        )
    table = pa.concat_tables(parts)
    order = pc.sort_indices(table, [("account_id", "ascending")])
    pq.write_table(table.take(order), out / "signups.parquet", **PARQUET_OPTS)


def _write_truth(
    out: Path, sc: Scenario, personas: list[PersonaAccounts], seed: int, scale: float
) -> None:
    campaigns: dict[str, dict] = {}
    for pa_ in personas:
        p = pa_.persona
        if not p.is_attacker:
            continue
        c = campaigns.setdefault(
            p.campaign,
            {
                "personas": [],
                "accounts": 0,
                "requests": 0,
                "main_capability": p.main_capability,
                "capabilities": p.capabilities,
            },
        )
        c["personas"].append(p.name)
        c["accounts"] += len(pa_.n_events)
        c["requests"] += int(pa_.n_events.sum())
        c["main_capability"] = c["main_capability"] or max(p.capabilities, key=p.capabilities.get)
    truth = {
        "scenario": sc.name,
        "description": sc.description,
        "seed": seed,
        "scale": scale,
        "start": sc.start.isoformat(),
        "days": sc.days,
        "releases": {r.model: r.at_day for r in sc.releases},
        "campaigns": campaigns,
        "personas": {
            pa_.persona.name: {
                "kind": pa_.persona.kind,
                "campaign": pa_.persona.campaign,
                "accounts": len(pa_.n_events),
                "events": int(pa_.n_events.sum()),
            }
            for pa_ in personas
        },
    }
    (out / "truth.json").write_text(json.dumps(truth, indent=2, sort_keys=True), encoding="utf-8")
