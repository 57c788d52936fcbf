"""The scoring service without HTTP: ingest a batch, decide, persist; background workers.

One POST = one validated Arrow table = one store transaction:
  typed decoding (serve/typed.py), or the validator when the schema refuses the batch ->
  drop known request_ids -> request rows (no text) and counter deltas ->
  [inline: request signals] -> commit counters, read the accounts' windows inside the same
  transaction, decide, store the decisions -> respond.

Request signals cost ~25 ms per call plus ~25 us per event, so by default a worker thread
coalesces the acknowledged batches and has a helper process compute them every
`signals.flush_ms`; their counts join the accounts' windows within that delay. The analysis
thread re-runs linkage, Leiden and scoring every `analysis.interval_s` over the stored features.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as quote_json
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from distillguard.ingest.litellm import litellm_record_to_event
from distillguard.ingest.otel import payload_records
from distillguard.serve.analysis import (
    REGISTRY_KEY,
    VERDICTS_KEY,
    AnalysisResult,
    alert_pending,
    recent_enriched,
    reconcile,
    window_start_hb,
)
from distillguard.serve.config import ServeConfig, ip_intel_table, release_times
from distillguard.serve.decide import Policy, decide, encode
from distillguard.serve.features import (
    MS_PER_HOUR,
    IpInfoCache,
    adoption_lag_h,
    event_deltas,
    request_rows,
    signal_deltas,
    to_ipc,
)
from distillguard.serve.logstore import SqliteStore
from distillguard.serve.metrics import Metrics
from distillguard.serve.multiproc import (
    METRICS_EVERY_S,
    Runtime,
    other_metrics,
    write_metrics,
)
from distillguard.serve.store import Commit, Deltas, Store, Windows
from distillguard.serve.typed import TypedDecoder
from distillguard.serve.validate import EventValidator, Rejected
from distillguard.serve.workers import (
    Worker,
    analyse_ipc,
    analyse_sqlite,
    signal_commits_ipc,
    warm_signal_flush,
)
from distillguard.signals import INPUT_COLUMNS, compute_signals

log = logging.getLogger("distillguard.serve")
MAX_CLOCK_SKEW_MS = 5 * 60_000  # a timestamp further in the future does not move the clock
MAX_REPORTED_REJECTS = 100
COMMIT_ATTEMPTS = 5
SIGNAL_COMMIT_ROWS = 256
SIDE_ALONE_AFTER_S = 0.02  # a side update waits this long for a POST to ride along with
SIDE_ATTEMPTS = 3
VERDICTS_STAMP_KEY = "verdicts_stamp"
VERDICTS_REFRESH_S = 1.0


@dataclass
class Outcome:
    """HTTP status and JSON body of one ingest call."""

    status: int
    body: bytes


def _json(status: int, payload: Any) -> Outcome:
    return Outcome(status, json.dumps(payload).encode())


def open_store(cfg: ServeConfig) -> Store:
    if cfg.get("state", "backend") == "redis":
        from distillguard.serve.redis_store import RedisStore

        return RedisStore(
            cfg.get("state", "redis_url"),
            cfg.get("state", "redis_prefix"),
            int(cfg.get("state", "retention_hours")),
        )
    return SqliteStore(cfg.state_path, cfg.get("state", "synchronous"))


def _first_occurrence(ids: pa.Array) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(code of each row's id, distinct ids, mask of rows that are their id's first)."""
    values = ids.to_pylist()
    if len(dict.fromkeys(values)) == len(values):  # the usual case: no id twice in a batch
        return np.arange(len(values)), values, np.ones(len(values), dtype=bool)
    enc = pc.dictionary_encode(ids)
    codes = enc.indices.to_numpy(zero_copy_only=False)
    first = np.empty(len(enc.dictionary), dtype=np.int64)
    first[codes[::-1]] = np.arange(len(codes))[::-1]
    return codes, enc.dictionary.to_pylist(), first[codes] == np.arange(len(codes))


def _as_batch(table: pa.Table) -> pa.RecordBatch:
    return table.combine_chunks().to_batches(max_chunksize=table.num_rows)[0]


@dataclass
class _Pending:
    """One caller's table waiting for the group commit."""

    table: pa.Table
    done: threading.Event = field(default_factory=threading.Event)
    body: bytes | None = None
    error: BaseException | None = None
    on_done: Callable[[_Pending], None] | None = None  # run on the committer thread
    queued_at: float = field(default_factory=time.perf_counter)


@dataclass
class _Side:
    """Counter updates that acknowledge nothing (request signals): they ride along with the
    next group commit instead of paying a transaction and an fsync of their own."""

    commit: Commit
    done: threading.Event = field(default_factory=threading.Event)
    attempts: int = 0


class Service:
    """Ingest, decisions, state and background work of `distillguard serve`."""

    def __init__(
        self, cfg: ServeConfig, store: Store | None = None, runtime: Runtime | None = None
    ) -> None:
        self.cfg = cfg
        self.store = store or open_store(cfg)
        self.validator = EventValidator()
        self.typed = TypedDecoder(self.validator)
        self.runtime = runtime  # set when this is one of several request processes
        self.metrics = Metrics()
        self._analysis_lead = runtime.lock("analysis") if runtime else None
        self._leads_analysis = runtime is None
        self._verdicts_stamp: bytes | None = None
        self._analysed_version: int | None = None  # the store's version at the last run
        self.policy = Policy.from_config(cfg.raw)
        self.short_hours = int(cfg.get("windows", "short_hours"))
        self.long_hours = int(cfg.get("windows", "long_hours"))
        self.inline_signals = bool(cfg.get("signals", "inline"))
        self.store_text = bool(cfg.get("state", "store_prompts"))
        self.releases = release_times(cfg)  # model -> release ms: the adoption-lag indicator
        self.ip_intel = ip_intel_table(cfg)  # the provider's own IP intelligence, if configured
        self.ip_info = IpInfoCache(intel=self.ip_intel)
        self._ingest_lock = threading.Lock()
        self._group_cond = threading.Condition()
        self._group: list[_Pending] = []
        self._side: list[_Side] = []
        self._closing = False
        self._analysis_lock = threading.Lock()
        self._queue: list[tuple[pa.Table, pa.Table]] = []
        self._queued = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._commit_thread = threading.Thread(
            target=self._committer, name="dg-commit", daemon=True
        )
        self._commit_thread.start()
        self._signal_worker = Worker(bool(cfg.get("signals", "process")), warm_signal_flush)
        self._analysis_worker = Worker(bool(cfg.get("analysis", "process")))
        clock = self.store.get_kv("clock")
        self.clock_ms = int(clock) if clock else 0
        self.analysis: AnalysisResult | None = None
        self._load_verdicts()

    # ----------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self._signal_worker.start()
        if not self.inline_signals:
            self._spawn("dg-signals", self._signal_loop)
        if float(self.cfg.get("analysis", "interval_s")) > 0:
            # Its helper is spawned now, not at the first run: starting a process stalled
            # the request path for ~50 ms under load (measured).
            self._analysis_worker.start()
            self._spawn("dg-analysis", self._analysis_loop)
        if self.runtime is not None:
            self._spawn("dg-metrics", self._metrics_loop)

    def _spawn(self, name: str, target: Any) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout=30)
        self._threads.clear()
        self.flush_signals()  # through the committer, which drains everything before exiting
        with self._group_cond:
            self._closing = True
            self._group_cond.notify_all()
        self._commit_thread.join(timeout=30)
        self._signal_worker.stop()
        self._analysis_worker.stop()
        if self.runtime is not None:
            write_metrics(self.runtime, self.metrics.snapshot())
        if self._analysis_lead is not None:
            self._analysis_lead.close()  # closing the file releases the lock
        self.store.close()

    # ----------------------------------------------------------------------------- ingest
    def ingest_body(self, body: bytes) -> Outcome:
        """A `POST /v1/events` body -> 200 with decisions, 400, 413 or 422.

        A batch that the typed schema takes whole (the usual case) is decoded and checked in C;
        any other goes through the JSON decoder and the rule-by-rule validator, which says which
        row broke which rule."""
        table = self.decode_typed(body)
        if isinstance(table, Outcome):
            return table
        if table is None:
            return self.ingest_untyped(body)
        return Outcome(200, self.ingest(table))

    def ingest_untyped(self, body: bytes) -> Outcome:
        """A body the typed schema refused: the JSON decoder, then the rule-by-rule validator
        (400, 413, 422 naming each bad row's field and reason, or 200)."""
        try:
            payload = orjson.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return _json(400, {"detail": f"malformed JSON: {exc}"})
        if not isinstance(payload, dict):
            return _json(422, {"detail": 'body must be a JSON object {"events": [...]}'})
        return self.ingest_payload(payload.get("events"))

    def decode_typed(self, body: bytes) -> pa.Table | Outcome | None:
        """The typed path of `ingest_body`: the events table, a 413, or None when the body
        must go through the JSON decoder and the rule-by-rule validator."""
        table = self.typed.decode(body)
        if table is not None and (too_many := self._over_batch_limit(table.num_rows, "events")):
            return too_many
        return table

    def ingest_payload(self, events: Any, text: bool = False) -> Outcome:
        """A decoded `events` list -> 200 with decisions, 413 or 422."""
        if not isinstance(events, list):
            return _json(422, {"detail": [{"field": "events", "reason": "missing_field"}]})
        if too_many := self._over_batch_limit(len(events), "events"):
            return too_many
        table, rejected, _ = self.validator.validate(events, text=text)
        if rejected:
            self.metrics.inc("distillguard_rejected_events_total", len(rejected))
            return self._rejected(rejected)
        return Outcome(200, self.ingest(table))

    def ingest_otlp(self, payload: dict[str, Any]) -> Outcome:
        """OTLP/JSON traces: GenAI spans become events (ingest OTel mapping); others skipped.

        OTLP semantics: valid spans are accepted and the rest reported as a partial success.
        """
        stats: dict[str, int] = {}
        records, _, _ = payload_records(payload, 1, 0, stats)
        if too_many := self._over_batch_limit(len(records), "spans"):
            return too_many
        table, rejected, _ = self.validator.validate(records, text=True)
        self.metrics.inc("distillguard_rejected_events_total", len(rejected))
        decided = json.loads(self.ingest(table)) if table.num_rows else {"decisions": []}
        doc: dict[str, Any] = {
            "decisions": decided["decisions"],
            "skipped_non_genai": stats.get("skipped_non_genai", 0),
        }
        if rejected:
            doc["partialSuccess"] = {
                "rejectedSpans": len(rejected),
                "errorMessage": "; ".join(
                    f"span {r.index}: {r.reason}:{r.field}" for r in rejected[:20]
                ),
            }
        return _json(200, doc)

    def ingest_litellm(self, records: Any) -> Outcome:
        """LiteLLM proxy standard logging payloads (one per request) -> events, scored.

        Mapped by the ingest LiteLLM adapter (`end_user`, else the virtual key's hash, is the
        account; `requester_ip_address` the IP). Like OTLP, valid records are accepted and the
        invalid ones listed: a logging callback has no way to fix and resend a record.
        """
        if not isinstance(records, list):
            return _json(422, {"detail": [{"field": "records", "reason": "missing_field"}]})
        if too_many := self._over_batch_limit(len(records), "records"):
            return too_many
        events = [litellm_record_to_event(r) if isinstance(r, dict) else None for r in records]
        table, rejected, _ = self.validator.validate(events, text=True)
        self.metrics.inc("distillguard_rejected_events_total", len(rejected))
        decided = json.loads(self.ingest(table)) if table.num_rows else {"decisions": []}
        decided["rejected"] = [r.as_dict() for r in rejected[:MAX_REPORTED_REJECTS]]
        return _json(200, decided)

    def _over_batch_limit(self, n: int, what: str) -> Outcome | None:
        """413 for a batch of more than `server.max_batch_events` events (spans, records)."""
        limit = int(self.cfg.get("server", "max_batch_events"))
        if n <= limit:
            return None
        return _json(413, {"detail": f"batch of {n} {what}; limit is {limit}"})

    def _rejected(self, rejected: list[Rejected]) -> Outcome:
        return _json(
            422,
            {
                "detail": [r.as_dict() for r in rejected[:MAX_REPORTED_REJECTS]],
                "rejected": len(rejected),
            },
        )

    def submit(self, table: pa.Table, on_done: Callable[[_Pending], None]) -> None:
        """`ingest` without waiting: `on_done(pending)` runs on the committer thread once the
        table's decisions (`pending.body`) or its error (`pending.error`) are set. An event
        loop answers from there without a thread of its own waiting on each commit."""
        self._enqueue_group(_Pending(table, on_done=on_done))

    def _enqueue_group(self, pending: _Pending) -> None:
        with self._group_cond:
            self._group.append(pending)
            self._group_cond.notify()

    def ingest(self, table: pa.Table) -> bytes:
        """Decide and persist a validated contract table; the JSON body of the response.

        Group commit: callers queue their tables and one committer thread takes everything
        queued as one batch (one transaction, one fsync). Under load the batches grow by
        themselves, so per-commit fixed costs (fsync, statement and kernel overheads) are
        shared, and each caller is answered as soon as its own group is done.
        """
        pending = _Pending(table)
        self._enqueue_group(pending)
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        assert pending.body is not None
        return pending.body

    def _committer(self) -> None:
        while True:
            with self._group_cond:
                while not self._group and not self._side and not self._closing:
                    self._group_cond.wait()
                if not self._group and not self._closing:
                    # Side updates ride along with POSTs' transactions (+~1 ms each, no fsync
                    # of their own); one goes alone only when no POST came for a while, since a
                    # POST arriving during a lone side commit waits for its fsync.
                    self._group_cond.wait(SIDE_ALONE_AFTER_S)
                if not self._group and not self._side:
                    return  # closing and drained
                group, self._group = self._group, []
                # One side update per transaction: a flush's slices merged into one commit
                # held the committer for ~35 ms, and the POSTs arriving meanwhile waited.
                side, self._side = self._side[:1], self._side[1:]
            try:
                bodies = self._ingest_group([p.table for p in group], side) if group else []
                if not group:
                    self.store.commit(_merged(side))
            except BaseException as exc:  # every waiter gets the error, none hangs
                log.exception("commit failed")
                retry = [item for item in side if item.attempts < SIDE_ATTEMPTS]
                for item in side:
                    item.attempts += 1
                    if item not in retry:
                        item.done.set()  # given up on: those requests keep no signals
                with self._group_cond:
                    self._side[:0] = retry  # signal counts are retried with the next commit
                for p in group:
                    p.error = exc
                    self._finish(p)
                continue
            for p, body in zip(group, bodies, strict=True):
                p.body = body
                self._finish(p)
            for item in side:
                item.done.set()

    def _finish(self, p: _Pending) -> None:
        """Time the batch (queued -> decided, for every caller alike) and wake its caller."""
        self.metrics.observe_batch(time.perf_counter() - p.queued_at)
        p.done.set()
        if p.on_done is not None:
            p.on_done(p)

    def _ingest_group(self, tables: list[pa.Table], side: list[_Side] | None = None) -> list[bytes]:
        combined = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        ids = combined["request_id"].combine_chunks()
        codes, distinct, first = _first_occurrence(ids)
        with self._ingest_lock:
            for attempt in range(COMMIT_ATTEMPTS):
                known = self.store.known(distinct)  # SQLite: an in-memory index
                is_known = np.array([d in known for d in distinct], dtype=bool)
                new_mask = first & ~is_known[codes]
                decisions = dict(known)
                if not new_mask.any():
                    if side:
                        self.store.commit(_merged(side))
                    break
                # (filtering every column costs ~0.2 ms: not when all rows are new)
                new = combined if new_mask.all() else combined.filter(pa.array(new_mask))
                committed = self._commit_new(new, side or [])
                if committed is not None:
                    decisions.update(committed)
                    break
                # Another replica or request process stored one of these ids meanwhile: look
                # again.
                if attempt == COMMIT_ATTEMPTS - 1:
                    raise RuntimeError("request ids kept being taken by other writers")
        self.metrics.inc("distillguard_duplicate_events_total", float(len(codes) - new_mask.sum()))
        bodies, offset = [], 0
        for t in tables:  # each caller gets the decisions of its own rows, in its order
            end = offset + t.num_rows
            bodies.append(
                self._response(distinct, codes[offset:end], decisions, new_mask[offset:end])
            )
            offset = end
        return bodies

    def _advance_clock(self, ts_ms: np.ndarray) -> None:
        ceiling = int(time.time() * 1000) + MAX_CLOCK_SKEW_MS
        if len(ts_ms):
            self.clock_ms = max(self.clock_ms, min(int(ts_ms.max()), ceiling))

    def _window_from(self) -> tuple[int, int]:
        now_hb = self.clock_ms // MS_PER_HOUR
        return now_hb - self.short_hours + 1, now_hb - self.long_hours + 1

    def _commit_new(self, new: pa.Table, side: list[_Side]) -> dict[str, str] | None:
        """Commit new requests; their decision JSON by id, or None if the commit lost a race."""
        rows, addresses = request_rows(new, self.ip_info, self.store_text)
        buckets, keys = event_deltas(rows, addresses, models=bool(self.releases))
        # NumPy, not Arrow compute, for small reductions: in a busy process an Arrow compute
        # call costs ~70 us (measured), most of it dispatch through code the caches lost
        hb = int(np.asarray(rows["hb"]).max())
        commit = Commit(
            request_ids=rows["request_id"].to_pylist(),
            request_accounts=rows["account_id"].to_pylist(),
            request_hours=rows["hb"].to_pylist(),
            buckets=[buckets],
            keys=[keys],
            blobs=[(hb, "events", to_ipc(rows.drop_columns(["hb"])), rows.num_rows)],
        )
        if self.inline_signals:
            signals = pa.Table.from_batches([compute_signals(_as_batch(new))])
            s_buckets, s_keys = signal_deltas(rows, signals)
            commit.buckets.append(s_buckets)
            commit.keys.append(s_keys)
            commit.blobs.append((hb, "signals", to_ipc(signals), signals.num_rows))
        for item in side:
            commit.buckets.extend(item.commit.buckets)
            commit.keys.extend(item.commit.keys)
            commit.blobs.extend(item.commit.blobs)
        self._advance_clock(np.asarray(rows["ts_ms"]))
        commit.clock_ms = self.clock_ms
        commit.window_from = self._window_from()
        per_account: dict[str, str] = {}
        labels: dict[str, str] = {}

        def decide_fn(w: Windows) -> tuple[list[str], dict[str, str]]:
            verdicts = self.analysis.verdicts if self.analysis else {}
            if self.releases:
                w.adopt_lag_h = adoption_lag_h(w, self.releases)
            for d in decide(w, verdicts, self.policy, self.short_hours):
                per_account[d["account_id"]] = encode(d)
                labels[d["account_id"]] = d["decision"]
            return [per_account[a] for a in commit.request_accounts], per_account

        if not self.store.commit(commit, decide_fn):
            return None
        for account, n in Counter(commit.request_accounts).items():
            self.metrics.inc("distillguard_events_total", float(n), decision=labels[account])
        if not self.inline_signals:
            self._enqueue(rows.select(["request_id", "account_id", "hb"]), new)
        return dict(zip(commit.request_ids, commit.request_decisions, strict=True))

    @staticmethod
    def _response(
        distinct: list[str], codes: np.ndarray, decisions: dict[str, str], counted: np.ndarray
    ) -> bytes:
        # The stored decision JSON is spliced in as text: no re-encoding per request.
        parts = []
        for code, fresh in zip(codes.tolist(), counted.tolist(), strict=True):
            rid = distinct[code]
            dup = "false" if fresh else "true"
            parts.append(  # the C string quoter: json.dumps costs ~10 us a call in Python
                f'{{"request_id":{quote_json(rid)},{decisions[rid][1:-1]},"duplicate":{dup}}}'
            )
        accepted = int(counted.sum())
        return (
            f'{{"accepted":{accepted},"duplicates":{len(parts) - accepted},'
            f'"decisions":[{",".join(parts)}]}}'
        ).encode()

    # ----------------------------------------------------------------------------- signals
    def _enqueue(self, rows: pa.Table, events: pa.Table) -> None:
        with self._cond:
            self._queue.append((rows, events))
            self._queued += rows.num_rows
            self.metrics.set("distillguard_signal_queue_events", self._queued)
            if self._queued >= int(self.cfg.get("signals", "flush_events")):
                self._cond.notify_all()

    def _signal_loop(self) -> None:
        wait_s = float(self.cfg.get("signals", "flush_ms")) / 1000.0
        while not self._stop.is_set():
            with self._cond:
                self._cond.wait(timeout=wait_s)
            try:
                self.flush_signals()
            except Exception:  # keep the worker alive; the batch stays counted without signals
                log.exception("signal flush failed")

    def flush_signals(self) -> int:
        """Compute and store the signals of every queued event; returns how many."""
        with self._cond:
            pending, self._queue, self._queued = self._queue, [], 0
            self.metrics.set("distillguard_signal_queue_events", 0)
        if not pending:
            return 0
        rows = pa.concat_tables([r for r, _ in pending])
        events = pa.concat_tables([e for _, e in pending])
        # Signals and their counter deltas are computed by the helper, in slices that ride
        # along with the POSTs' transactions (one slice each), so a flush neither adds fsyncs
        # nor makes a POST wait for all of it.
        parts = self._signal_worker.run(
            signal_commits_ipc, to_ipc(_signal_inputs(events)), to_ipc(rows), SIGNAL_COMMIT_ROWS
        )
        side = [
            _Side(Commit(buckets=[Deltas(b)], keys=[Deltas(k)], blobs=[(hb, "signals", blob, n)]))
            for hb, blob, n, b, k in parts
        ]
        with self._group_cond:
            if self._commit_thread.is_alive():
                self._side.extend(side)
                self._group_cond.notify()
            else:  # stopped: nobody else writes any more
                self.store.commit(_merged(side))
                for item in side:
                    item.done.set()
        for item in side:  # committed on return (tests and stop() rely on it)
            item.done.wait()
        self.metrics.inc("distillguard_signal_events_total", rows.num_rows)
        return rows.num_rows

    # ----------------------------------------------------------------------------- analysis
    def _analysis_loop(self) -> None:
        """Runs the analysis every `interval_s` in the process that leads it; the others (with
        several request processes) take over if the leader dies and meanwhile reload its
        verdicts whenever they change."""
        interval = float(self.cfg.get("analysis", "interval_s"))
        due = time.monotonic() + interval
        tick = interval if self.runtime is None else min(interval, VERDICTS_REFRESH_S)
        while not self._stop.wait(max(0.0, min(tick, due - time.monotonic()))):
            try:
                if not self._leads_analysis and self._analysis_lead is not None:
                    self._leads_analysis = self._analysis_lead.acquire(blocking=False)
                if not self._leads_analysis:
                    self._load_verdicts()
                elif time.monotonic() >= due:
                    due = time.monotonic() + interval
                    self._run_analysis_if_changed()
            except Exception:
                log.exception("background analysis failed")

    def _run_analysis_if_changed(self) -> bool:
        """A scheduled run, unless nothing was committed since the last one: an idle service
        stops re-running linkage and clustering over an unchanged window (the window follows
        the events' clock). Signal counts that land after a run are commits too, so they get
        a run of their own. True if it ran."""
        version = self.store.version()
        if version == self._analysed_version:
            return False
        self.run_analysis()
        self._analysed_version = version  # not after a failure: the next tick retries
        return True

    def _load_verdicts(self) -> None:
        """The stored verdicts, if they changed since this process last read them."""
        stamp = self.store.get_kv(VERDICTS_STAMP_KEY)
        if self.analysis is not None and stamp == self._verdicts_stamp:
            return
        saved = self.store.get_kv(VERDICTS_KEY)
        if saved:
            self.analysis = AnalysisResult.from_json(saved)
            self._verdicts_stamp = stamp

    def _metrics_loop(self) -> None:
        assert self.runtime is not None
        while not self._stop.wait(METRICS_EVERY_S):
            try:
                write_metrics(self.runtime, self.metrics.snapshot())
            except OSError:
                log.exception("could not write the metrics snapshot")

    def render_metrics(self) -> str:
        """Prometheus text: this process's counters plus the other request processes'."""
        others = other_metrics(self.runtime) if self.runtime is not None else []
        return self.metrics.render(others)

    def run_analysis(self) -> AnalysisResult | None:
        """Linkage + Leiden + scoring over the recent window; swaps in the new verdicts."""
        a = self.cfg.raw["analysis"]
        with self._analysis_lock:
            since = window_start_hb(self.clock_ms, int(a["window_hours"]))
            threshold = float(self.cfg.get("decisions", "flag_threshold"))
            if isinstance(self.store, SqliteStore) and self._analysis_worker.enabled:
                # The helper reads the window from the file itself: loading and decoding up to
                # `max_events` rows would otherwise stall the request path for a while.
                data = self._analysis_worker.run(
                    analyse_sqlite, str(self.store.path), since, int(a["max_events"]),
                    int(a["min_accounts"]), threshold, self.clock_ms,
                )  # fmt: skip
                if data is None:
                    return None
            else:
                enriched = recent_enriched(self.store, since, int(a["max_events"]))
                if enriched is None or pc.count_distinct(enriched["account_id"]).as_py() < int(
                    a["min_accounts"]
                ):
                    return None
                data = self._analysis_worker.run(
                    analyse_ipc, to_ipc(enriched), threshold, self.clock_ms
                )
            result = AnalysisResult.from_json(data)
            raw = self.store.get_kv(REGISTRY_KEY)
            registry = json.loads(raw) if raw else {}
            new = reconcile(result, registry)
            sent = alert_pending(registry, self.cfg.raw["alerts"])
            self.store.put_kv(REGISTRY_KEY, json.dumps(registry).encode())
            self.store.put_kv(VERDICTS_KEY, result.to_json())
            stamp = str(time.time_ns()).encode()
            self.store.put_kv(VERDICTS_STAMP_KEY, stamp)  # other processes reload on change
            self._verdicts_stamp = stamp
            self.analysis = result
            retention = int(self.cfg.get("state", "retention_hours"))
            self.store.prune(self.clock_ms // MS_PER_HOUR - retention)
        self.metrics.inc("distillguard_analysis_runs_total")
        self.metrics.set("distillguard_analysis_seconds", result.seconds)
        self.metrics.set("distillguard_campaigns", len(result.campaigns))
        self.metrics.inc("distillguard_alerts_total", sent, outcome="sent")
        if new:
            log.info("new campaigns: %s", ", ".join(new))
        return result

    # ----------------------------------------------------------------------------- reads
    def account_view(self, account_id: str) -> dict[str, Any] | None:
        last = self.store.account(account_id)
        if last is None:
            return None
        short_from, long_from = self._window_from()
        w = self.store.windows([account_id], short_from, long_from)
        verdict = self.analysis.verdicts.get(account_id) if self.analysis else None
        return {
            "account_id": account_id,
            "last_decision": json.loads(last),
            "windows": {
                f"{self.short_hours}h": _window_dict(w, "short"),
                f"{self.long_hours}h": _window_dict(w, "long"),
            },
            "cluster": None
            if verdict is None
            else {
                "risk": round(verdict.risk, 4),
                "size": verdict.size,
                "campaign_id": verdict.campaign_id,
                "reasons": [text for _, text in verdict.reasons],
            },
        }

    def campaigns_view(self) -> dict[str, Any]:
        raw = self.store.get_kv(REGISTRY_KEY)
        registry = json.loads(raw) if raw else {}
        campaigns = [
            {
                "campaign_id": cid,
                **{k: v for k, v in entry.items() if k != "summary"},
                **entry.get("summary", {}),
            }
            for cid, entry in sorted(registry.items())
        ]
        at = self.analysis.at_ms if self.analysis else None
        return {"analysed_at_ms": at, "campaigns": campaigns}

    def health(self) -> dict[str, Any]:
        with self._cond:
            queued = self._queued
        a = self.analysis
        return {
            "status": "ok",
            "backend": self.cfg.get("state", "backend"),
            # which request process answered (several with `server.workers`), and whether it
            # is the one running the background analysis
            "worker": self.runtime.index if self.runtime else 0,
            "workers": self.runtime.count if self.runtime else 1,
            "leads_analysis": self._leads_analysis,
            "clock_ms": self.clock_ms,
            "signal_queue": queued,
            "last_analysis": None
            if a is None
            else {
                "at_ms": a.at_ms,
                "events": a.events,
                "accounts": a.accounts,
                "campaigns": len(a.campaigns),
                "seconds": a.seconds,
            },
        }


def _signal_inputs(events: pa.Table) -> pa.Table:
    """Only the columns signals read cross to the helper (a third less to copy and pickle)."""
    return events.select([c for c in INPUT_COLUMNS if c in events.schema.names])


def _merged(side: list[_Side]) -> Commit:
    """Side updates as one commit (no request ids: nothing to race for)."""
    out = Commit()
    for item in side:
        out.buckets.extend(item.commit.buckets)
        out.keys.extend(item.commit.keys)
        out.blobs.extend(item.commit.blobs)
    return out


def _window_dict(w: Windows, which: str) -> dict[str, int]:
    sums = w.short if which == "short" else w.long
    distinct = w.distinct_short if which == "short" else w.distinct_long
    out = {m: int(v[0]) for m, v in sums.items()}
    out.update({f"distinct_{k}s": int(v[0]) for k, v in distinct.items()})
    if which == "long":
        out["top_template_requests"] = int(w.top_template[0])
    return out
