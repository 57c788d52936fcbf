"""Background analysis: the batch linkage, clustering and scoring over the recent window.

Every `analysis.interval_s` the stored feature rows of the last `analysis.window_hours` are
loaded into an in-process DuckDB and run through the same stages as `distillguard detect`
(ibis fingerprints and link expressions, Leiden, `scoring.risk.score`, campaign assembly).
Cluster risks and campaign ids then feed every live decision until the next run. A campaign
is matched to the previous run's by shared members, so its id is stable across runs; a
campaign seen for the first time is sent to the alert webhook.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import duckdb
import httpx
import numpy as np
import pyarrow as pa

from distillguard.scoring.indicators import CLUSTER_INDICATORS, noisy_or
from distillguard.serve.decide import REASON_FLOOR, ClusterVerdict
from distillguard.serve.features import MS_PER_HOUR, from_ipc
from distillguard.serve.store import SqliteBlobReader, Store

log = logging.getLogger("distillguard.serve")
REGISTRY_KEY = "campaigns"
VERDICTS_KEY = "verdicts"


@dataclass
class AnalysisResult:
    """Per-account cluster verdicts and the campaigns of one run."""

    at_ms: int
    events: int
    accounts: int
    verdicts: dict[str, ClusterVerdict] = field(default_factory=dict)
    campaigns: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "at_ms": self.at_ms,
                "events": self.events,
                "accounts": self.accounts,
                "seconds": self.seconds,
                "campaigns": self.campaigns,
                "verdicts": {
                    a: [v.risk, v.campaign_id, v.size, v.reasons] for a, v in self.verdicts.items()
                },
            }
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> AnalysisResult:
        d = json.loads(data)
        verdicts = {
            a: ClusterVerdict(risk, cid, size, [tuple(r) for r in reasons])
            for a, (risk, cid, size, reasons) in d["verdicts"].items()
        }
        return cls(d["at_ms"], d["events"], d["accounts"], verdicts, d["campaigns"], d["seconds"])


def recent_enriched(
    store: Store | SqliteBlobReader, since_hb: int, max_events: int
) -> pa.Table | None:
    """Stored request rows joined to their signals: the enriched table of the batch stages.

    Requests whose signals were never computed (in flight at a crash) are left out: without a
    template id they would all share one empty key and look linked.
    """
    # Only the newest hours holding about `max_events` rows are read: memory stays bounded
    # however long the window and however busy the service.
    blobs = store.blobs(store.cutoff_hour(since_hb, max_events))
    rows, sigs = from_ipc(blobs.get("events", [])), from_ipc(blobs.get("signals", []))
    if rows is None or sigs is None:
        return None
    con = duckdb.connect()
    try:
        con.register("r", rows)
        con.register("s", sigs)
        return con.sql(
            "SELECT r.*, s.* EXCLUDE (request_id) FROM r JOIN s USING (request_id) "
            f"WHERE r.ts_ms >= {int(since_hb) * MS_PER_HOUR} "
            f"ORDER BY r.ts_ms DESC LIMIT {int(max_events)}"
        ).to_arrow_table()
    finally:
        con.close()


def _cluster_reasons(clusters: pa.Table) -> dict[int, list[tuple[float, str]]]:
    cols = {name: clusters[name].to_numpy(zero_copy_only=False) for name in clusters.column_names}
    k = clusters.num_rows
    _, contrib = noisy_or(CLUSTER_INDICATORS, cols, k)
    out: dict[int, list[tuple[float, str]]] = {}
    for c in np.flatnonzero(cols["risk"] > 0):  # clusters that carry risk: few
        out[int(c)] = [
            (float(contrib[c, j] * cols["behaviour"][c]), ind.reason(cols, int(c)))
            for j, ind in enumerate(CLUSTER_INDICATORS)
            if contrib[c, j] > REASON_FLOOR
        ]
    return out


def _ranked(long: pa.Table, key: str, value: str, floor: float | None = None) -> dict:
    rows = long.sort_by([("campaign_id", "ascending"), (value, "descending"), (key, "ascending")])
    out: dict[str, list[str]] = {}
    for cid, k, v in zip(
        rows["campaign_id"].to_pylist(), rows[key].to_pylist(), rows[value].to_pylist(), strict=True
    ):
        if floor is None or v >= floor:
            out.setdefault(cid, []).append(k)
    return out


def _campaign_rows(e, assignment) -> list[dict[str, Any]]:
    from distillguard.campaigns import build as cb

    totals = cb.campaign_totals(e, assignment).to_pyarrow().sort_by("campaign_id")
    caps = _ranked(
        cb.capability_shares(e, assignment).to_pyarrow(),
        "capability",
        "share",
        cb.MIN_CAPABILITY_SHARE,
    )
    models = _ranked(cb.model_counts(e, assignment).to_pyarrow(), "model", "requests")
    out = []
    for row in totals.to_pylist():
        cid = row["campaign_id"]
        out.append(
            {
                "campaign_id": cid,
                "accounts": int(row["accounts"]),
                "requests": int(row["requests"]),
                "output_tokens": int(row["output_tokens"]),
                "first_seen_ms": int(row["first_ms"]),
                "last_seen_ms": int(row["last_ms"]),
                "capabilities": caps.get(cid, []),
                "ips": int(row["ips"]),
                "asns": int(row["asns"]),
                "models": models.get(cid, []),
            }
        )
    return out


def analyse(enriched: pa.Table, flag_threshold: float, at_ms: int) -> AnalysisResult:
    """The batch stages over `enriched`; campaign ids are this run's (`campaign-01`, ...)."""
    # Imported here: ibis, igraph and scikit-learn take seconds to import, and the request
    # path never needs them, so the service starts answering before the first analysis.
    from distillguard.clusters.leiden import communities
    from distillguard.engines.duckdb import ibis_backend
    from distillguard.fingerprints.account import account_fingerprints
    from distillguard.pipeline.stages import campaign_assignment, link_graph
    from distillguard.scoring.risk import score

    start = time.perf_counter()
    con = duckdb.connect()
    try:
        be = ibis_backend(con)
        e = be.create_table("enriched", enriched)
        fp = account_fingerprints(e).to_pyarrow()
        graph, ev = link_graph(be, e, None, fp)  # the same graph as `distillguard detect`
        clusters = communities(fp["account_id"], graph)
        scored = score(fp, graph, clusters, threshold=flag_threshold)
        assigned = campaign_assignment(be, ev, fp, scored.accounts, graph)
        assignment = be.create_table("assignment", assigned.select(["account_id", "campaign_id"]))
        campaigns = _campaign_rows(e, assignment)
    finally:
        con.close()
    cluster_risk = scored.clusters["risk"].to_numpy()
    sizes = scored.clusters["size"].to_numpy()
    reasons = _cluster_reasons(scored.clusters)
    verdicts: dict[str, ClusterVerdict] = {}
    for account, cl, cid in zip(
        assigned["account_id"].to_pylist(),
        assigned["cluster"].to_pylist(),
        assigned["campaign_id"].to_pylist(),
        strict=True,
    ):
        if cluster_risk[cl] > 0 or cid is not None:
            verdicts[account] = ClusterVerdict(
                float(cluster_risk[cl]), cid, int(sizes[cl]), reasons.get(cl, [])
            )
    return AnalysisResult(
        at_ms=at_ms,
        events=enriched.num_rows,
        accounts=fp.num_rows,
        verdicts=verdicts,
        campaigns=campaigns,
        seconds=round(time.perf_counter() - start, 3),
    )


def _stable_id(members: list[str]) -> str:
    return "camp-" + hashlib.sha256("\n".join(sorted(members)).encode()).hexdigest()[:10]


def reconcile(result: AnalysisResult, registry: dict[str, dict[str, Any]]) -> list[str]:
    """Give this run's campaigns their registry ids (matched by shared members); returns the
    ids that are new. Updates `result` and `registry` in place."""
    members: dict[str, list[str]] = {}
    for account, v in result.verdicts.items():
        if v.campaign_id is not None:
            members.setdefault(v.campaign_id, []).append(account)
    owner = {a: cid for cid, entry in registry.items() for a in entry["members"]}
    rename: dict[str, str] = {}
    taken: set[str] = set()
    new: list[str] = []
    # Largest first, so a split campaign keeps its id on its biggest piece.
    for local in sorted(members, key=lambda c: (-len(members[c]), c)):
        overlap: dict[str, int] = {}
        for a in members[local]:
            if a in owner and owner[a] not in taken:
                overlap[owner[a]] = overlap.get(owner[a], 0) + 1
        if overlap:
            stable = max(sorted(overlap), key=lambda c: overlap[c])
        else:
            stable = _stable_id(members[local])
            new.append(stable)
            registry[stable] = {"first_detected_ms": result.at_ms, "alerted": False}
        taken.add(stable)
        rename[local] = stable
        registry[stable]["members"] = sorted(members[local])
    for v in result.verdicts.values():
        if v.campaign_id is not None:
            v.campaign_id = rename[v.campaign_id]
    for c in result.campaigns:
        c["campaign_id"] = rename.get(c["campaign_id"], c["campaign_id"])
        registry[c["campaign_id"]]["summary"] = c
    active = set(rename.values())
    for cid, entry in registry.items():
        entry["active"] = cid in active
    return new


def send_alert(url: str, token: str, timeout: float, campaign: dict[str, Any]) -> bool:
    """POST one new-campaign alert; True when the receiver answered 2xx."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    payload = {"type": "distillguard.campaign.new", "campaign": campaign}
    try:
        response = httpx.post(url, json=payload, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        log.warning("alert webhook failed: %s", exc)
        return False
    if response.status_code // 100 != 2:
        log.warning("alert webhook answered %s", response.status_code)
        return False
    return True


def alert_pending(registry: dict[str, dict[str, Any]], alerts: dict[str, Any]) -> int:
    """Alert every active campaign not alerted yet (new now, or a webhook that failed before)."""
    if not alerts["webhook_url"]:
        return 0
    sent = 0
    for cid in sorted(registry):
        entry = registry[cid]
        if entry.get("alerted") or not entry.get("active") or "summary" not in entry:
            continue
        campaign = {**entry["summary"], "member_accounts": entry["members"]}
        if send_alert(
            alerts["webhook_url"], alerts["webhook_token"], float(alerts["timeout_s"]), campaign
        ):
            entry["alerted"] = True
            sent += 1
    return sent


def window_start_hb(clock_ms: int, hours: int) -> int:
    return clock_ms // MS_PER_HOUR - int(hours) + 1
