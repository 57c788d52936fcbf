"""`detect`: ingest -> signals -> fingerprints -> links -> clusters -> scoring -> campaigns.

Each stage writes its result under `OUT/work/` so that later stages, the report, `explain`
and the exports read files, not process memory. The relational stages are ibis expressions;
they run on DuckDB (`engines.duckdb`, the default) or on Spark (`engines.spark`). With a state
directory (`pipeline.incremental`) the enriched requests are kept by day, and a `since` run
enriches only the new days.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import ibis
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from distillguard import __version__
from distillguard.campaigns import build as cb
from distillguard.clusters.leiden import communities
from distillguard.contract import DETECTED_ACCOUNTS, DETECTED_CAMPAIGNS, TIMESTAMP
from distillguard.engines.duckdb import DuckDBEngine
from distillguard.errors import UserError
from distillguard.fingerprints.account import account_fingerprints
from distillguard.ingest import run_ingest
from distillguard.ingest.ipintel import is_disposable_domain
from distillguard.pipeline import incremental
from distillguard.pipeline.stages import ParquetStore, campaign_assignment, link_graph
from distillguard.scoring.risk import DEFAULT_THRESHOLD, score

Progress = Callable[[str, int | None], None]


@dataclass
class DetectConfig:
    """Inputs and knobs of one detection run."""

    events: list[Path]
    out: Path
    accounts: list[Path] | None = None
    releases: list[Path] | None = None
    ip_intel: list[Path] | None = None
    intel_bundles: list[Path] | None = None
    threshold: float = DEFAULT_THRESHOLD
    input_format: str = "contract"
    memory_limit: str = "4GB"
    threads: int | None = None
    redact: bool = False
    engine: str = "duckdb"
    spark_master: str | None = None
    state: Path | None = None
    since: str | None = None  # YYYY-MM-DD: enrich only events from this UTC day (needs state)

    @classmethod
    def for_simulation(cls, sim: Path, out: Path) -> DetectConfig:
        """The inputs `distillguard simulate` writes into `sim`, detected into `out`."""
        return cls(
            events=[sim / "events.parquet"],
            accounts=[sim / "accounts.parquet"],
            releases=[sim / "releases.parquet"],
            ip_intel=[sim / "ip_intel.csv"],
            out=out,
        )


def _rss_gb() -> float:
    """This process's resident memory now (Linux /proc; 0 where unavailable)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e9


class _PeakSampler:
    """Samples resident memory every `interval` s in a daemon thread; `peak` is the highest."""

    def __init__(self, interval: float = 0.25) -> None:
        self.peak = _rss_gb()
        self._stop = threading.Event()
        self._interval = interval
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, _rss_gb())

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return max(self.peak, _rss_gb())


@dataclass
class Timings:
    """Wall-clock seconds and peak resident memory (GB) per stage, in order."""

    stages: dict[str, float] = field(default_factory=dict)
    peak_gb: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        sampler = _PeakSampler()
        try:
            yield
        finally:
            self.peak_gb[name] = round(sampler.stop(), 2)
        self.stages[name] = round(time.perf_counter() - start, 3)


@dataclass
class DetectResult:
    out: Path
    accounts: int
    flagged: int
    campaigns: int
    summary: dict


def _accounts_dim(path: Path) -> pa.Table | None:
    if not path.exists():
        return None
    t = pq.read_table(path)
    created = pc.cast(t["created_at"], pa.int64()) if "created_at" in t.column_names else None
    return pa.table(
        {
            "account_id": t["account_id"],
            "created_ms": created,
            "tier": t["tier"],
            "email_domain": t["email_domain"],
            "payment_fingerprint": t["payment_fingerprint"],
            "device_fingerprint": t["device_fingerprint"],
            "org_id": t["org_id"],
            "disposable": is_disposable_domain(t["email_domain"]),
        }
    )


def _releases_dim(path: Path) -> pa.Table | None:
    if not path.exists():
        return None
    t = pq.read_table(path)
    if t.num_rows == 0:
        return None
    return pa.table({"model": t["model"], "released_ms": pc.cast(t["released_at"], pa.int64())})


ENGINES = ("duckdb", "spark")


def _open_engine(cfg: DetectConfig, work: Path):
    """The engine that runs enrichment and the ibis stages (`DuckDBEngine` or `SparkEngine`)."""
    if cfg.engine not in ENGINES:
        raise UserError(f"--engine must be one of {', '.join(ENGINES)}, got {cfg.engine!r}")
    if cfg.engine == "duckdb":
        if cfg.spark_master:
            raise UserError("--spark-master needs --engine spark")
        return DuckDBEngine(work, memory_limit=cfg.memory_limit, threads=cfg.threads)
    try:
        from distillguard.engines.spark import SparkEngine
    except ImportError as exc:
        raise UserError(f"--engine spark needs the spark extra ({exc.name} missing)") from None
    return SparkEngine(master=cfg.spark_master)


def _check_incremental(cfg: DetectConfig) -> int | None:
    """--since as epoch ms (None for a full run), after checking the options go together."""
    if cfg.since is not None and cfg.state is None:
        raise UserError("--since needs --state DIR (the state of earlier runs)")
    return incremental.parse_since(cfg.since) if cfg.since is not None else None


def run_detect(cfg: DetectConfig, progress: Progress | None = None) -> DetectResult:
    """Run every stage and write contract section 6 files into `cfg.out`."""
    since_ms = _check_incremental(cfg)
    note = progress or (lambda _msg, _n: None)
    work = cfg.out / "work"
    work.mkdir(parents=True, exist_ok=True)
    t = Timings()
    engine = _open_engine(cfg, work)
    try:
        return _run_stages(cfg, engine, since_ms, note, t)
    finally:
        engine.close()


def _run_stages(cfg: DetectConfig, engine, since_ms: int | None, note: Progress, t: Timings):
    out, work = cfg.out, cfg.out / "work"
    be = engine.backend
    state = None
    if cfg.state is not None:
        settings = incremental.enrichment_settings(cfg.input_format, cfg.ip_intel)
        state = incremental.State.open(cfg.state, settings, since_ms)

    with t.stage("ingest"):
        note("ingest", None)
        ingested = run_ingest(
            events=cfg.events,
            accounts=cfg.accounts,
            releases=cfg.releases,
            ip_intel=cfg.ip_intel,
            out=work / "ingest",
            progress=False,
            input_format=cfg.input_format,
        )
    if ingested.events.accepted == 0:
        raise UserError("no valid events to analyse (see rejects.jsonl)")

    with t.stage("signals"):
        note("signals", ingested.events.accepted)
        enriched = engine.enrich(
            work / "ingest" / "events",
            _ip_intel(work / "ingest" / "ip_intel.parquet"),
            work,
            since_ms=since_ms,
            on_batch=lambda n: note("signals+", n),
        )
        new_rows = None
        if state is not None:
            new_rows = engine.count(enriched)
            enriched = _update_state(cfg, engine, state, enriched, since_ms, work, new_rows)

    e = engine.read(enriched, "enriched")
    accounts_dim = _accounts_dim(work / "ingest" / "accounts.parquet")
    releases_dim = _releases_dim(work / "ingest" / "releases.parquet")
    acc = be.create_table("accounts_dim", accounts_dim) if accounts_dim is not None else None
    rel = be.create_table("releases_dim", releases_dim) if releases_dim is not None else None

    with t.stage("fingerprints"):
        note("fingerprints", None)
        fp = account_fingerprints(e, acc, rel).to_pyarrow()
        pq.write_table(fp, work / "fingerprints.parquet")

    with t.stage("links"):
        note("links", None)
        store = ParquetStore(be, work / "links")
        graph, ev = link_graph(be, e, acc, fp, store)
        pq.write_table(graph, work / "edges.parquet")

    with t.stage("clusters"):
        note("clusters", None)
        clusters = communities(fp["account_id"], graph)

    with t.stage("scoring"):
        note("scoring", None)
        boosts = _intel_boosts(cfg, be, e, acc)
        scored = score(fp, graph, clusters, threshold=cfg.threshold, boosts=boosts)
        pq.write_table(scored.clusters, work / "clusters.parquet")

    with t.stage("campaigns"):
        note("campaigns", None)
        assigned = campaign_assignment(be, ev, fp, scored.accounts, graph)
        pq.write_table(assigned, work / "scores.parquet")
        assignment = be.create_table("assignment", assigned.select(["account_id", "campaign_id"]))
        campaigns = _write_campaigns(e, assignment, rel, out, work)
        _write_accounts(assigned, out)
        store.drop("link_evidence")

    summary = _summary(cfg, ingested, t, assigned, campaigns)
    if state is not None:
        summary["incremental"] = {
            "state": str(cfg.state),
            "since": cfg.since,
            "days": state.days,
            "enriched_now": new_rows,
            # Input events before --since are not re-read: the state holds those days.
            "skipped_before_since": ingested.events.accepted - (new_rows or 0),
        }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return DetectResult(
        out=out,
        accounts=assigned.num_rows,
        flagged=int(pc.sum(assigned["flagged"]).as_py() or 0),
        campaigns=campaigns.num_rows,
        summary=summary,
    )


def _update_state(
    cfg: DetectConfig,
    engine,
    state: incremental.State,
    new: str,
    since_ms: int | None,
    work: Path,
    rows: int,
) -> str:
    """Store the newly enriched days in the state; returns the whole stored table's source."""
    parts = work / "day_parts"
    shutil.rmtree(parts, ignore_errors=True)  # left over by an interrupted run
    engine.split_days(new, parts)
    state.replace_days(parts, since_ms)
    state.save(since_ms, cfg.events, rows, engine.name)
    shutil.rmtree(parts, ignore_errors=True)
    # The new days alone would pass for the whole table (the report reads work/enriched*).
    new_path = Path(new)
    if new_path.is_dir():
        shutil.rmtree(new_path)
    else:
        new_path.unlink()
    return state.source


def _ip_intel(path: Path) -> pa.Table | None:
    return pq.read_table(path) if path.exists() else None


def _intel_boosts(cfg: DetectConfig, be: ibis.BaseBackend, e, acc) -> pa.Table | None:
    if not cfg.intel_bundles:
        return None
    from distillguard.report.stix_import import matching_accounts  # optional stage (issue 5)

    return matching_accounts(cfg.intel_bundles, be, e, acc)


def _write_accounts(assigned: pa.Table, out: Path) -> None:
    table = pa.table(
        {
            "account_id": assigned["account_id"],
            "risk": assigned["risk"],
            "flagged": assigned["flagged"],
            "campaign_id": assigned["campaign_id"],
            "reasons": assigned["reasons"],
        },
        schema=DETECTED_ACCOUNTS,
    )
    pq.write_table(table, out / "accounts.parquet")


def _ranked_lists(long: pa.Table, key: str, value: str, min_value: float | None = None) -> dict:
    rows = long.sort_by([("campaign_id", "ascending"), (value, "descending"), (key, "ascending")])
    out: dict[str, list[str]] = {}
    for cid, k, v in zip(
        rows["campaign_id"].to_pylist(), rows[key].to_pylist(), rows[value].to_pylist(), strict=True
    ):
        if min_value is None or v >= min_value:
            out.setdefault(cid, []).append(k)
    return out


def _write_campaigns(e, assignment, rel, out: Path, work: Path) -> pa.Table:
    totals = cb.campaign_totals(e, assignment).to_pyarrow().sort_by("campaign_id")
    caps = _ranked_lists(
        cb.capability_shares(e, assignment).to_pyarrow(),
        "capability",
        "share",
        cb.MIN_CAPABILITY_SHARE,
    )
    models = _ranked_lists(cb.model_counts(e, assignment).to_pyarrow(), "model", "requests")
    ids = totals["campaign_id"].to_pylist()
    table = pa.table(
        {
            "campaign_id": totals["campaign_id"],
            "accounts": pc.cast(totals["accounts"], pa.int64()),
            "requests": pc.cast(totals["requests"], pa.int64()),
            "output_tokens": pc.cast(totals["output_tokens"], pa.int64()),
            "first_seen": pc.cast(totals["first_ms"], pa.int64()).cast(TIMESTAMP),
            "last_seen": pc.cast(totals["last_ms"], pa.int64()).cast(TIMESTAMP),
            "capabilities": pa.array([caps.get(c, []) for c in ids], pa.list_(pa.string())),
            "ips": pc.cast(totals["ips"], pa.int64()),
            "asns": pc.cast(totals["asns"], pa.int64()),
            "models": pa.array([models.get(c, []) for c in ids], pa.list_(pa.string())),
        },
        schema=DETECTED_CAMPAIGNS,
    )
    pq.write_table(table, out / "campaigns.parquet")
    pq.write_table(cb.daily_volume(e, assignment).to_pyarrow(), work / "campaign_daily.parquet")
    if rel is not None:
        pq.write_table(
            cb.release_adaptation(e, assignment, rel).to_pyarrow(),
            work / "campaign_releases.parquet",
        )
    return table


def _summary(
    cfg: DetectConfig, ingested, t: Timings, assigned: pa.Table, campaigns: pa.Table
) -> dict:
    flagged = int(pc.sum(assigned["flagged"]).as_py() or 0)
    return {
        "distillguard": __version__,
        "inputs": {
            "events": [str(p) for p in cfg.events],
            "accounts": [str(p) for p in cfg.accounts or []],
            "releases": [str(p) for p in cfg.releases or []],
            "ip_intel": [str(p) for p in cfg.ip_intel or []],
            "intel_bundles": [str(p) for p in cfg.intel_bundles or []],
        },
        "ingest": ingested.as_dict(),
        "thresholds": {"flag": cfg.threshold},
        "counts": {
            "accounts": assigned.num_rows,
            "flagged": flagged,
            "campaigns": campaigns.num_rows,
            "campaign_accounts": int(pc.sum(pc.is_valid(assigned["campaign_id"])).as_py() or 0),
        },
        "timings_s": t.stages,
        "stage_peak_rss_gb": t.peak_gb,
        "engine": cfg.engine,
    }
