"""`POST /v1/signups`: judge new accounts at sign-up against the service's live campaigns.

Body `{"accounts": [<contract section 2 records>]}` (write scope). Each account is judged with the
batch check (`distillguard.signup`): its payment and device fingerprints, sign-up IP, subnet and
proxy pool against the accounts the background analysis put in campaigns, and its e-mail shape,
burst and sign-up path against the sign-ups posted before it. Response:
`{"decisions": [{account_id, decision, verification, score, campaign_id, tier, evidence,
reasons}], "known": {...}}`; an invalid record makes the whole batch 422 (nothing is stored).

The e-mail address is used in memory only: what is kept of a sign-up (`signups` in the state
store) is its domain and a keyed hash of a machine-made name pattern, never the address; error
details name the field, never echo its value.
"""

from __future__ import annotations

import ipaddress
import json
import threading
import time
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
from fastapi import Request, Response

from distillguard import contract
from distillguard.serve.config import signup_policy
from distillguard.signup.decide import check_signups
from distillguard.signup.features import as_history, prepare_new
from distillguard.signup.known import (
    HISTORY_SCHEMA,
    TRAFFIC_SCHEMA,
    KnownState,
    conform_history,
)
from distillguard.signup.policy import SignupPolicy

if TYPE_CHECKING:
    from fastapi import FastAPI
    from fastapi.params import Depends

    from distillguard.serve.service import Service

HISTORY_KEY = "signups"
REVISION_KEY = "signups_revision"
SIGNUP_DECISIONS = ("allow", "require_verification", "deny")
MAX_HISTORY = 500_000  # newest sign-ups kept for bursts, naming patterns and identity links
STRING_FIELDS = (
    "email_domain",
    "payment_fingerprint",
    "country",
    "org_id",
    "email",
    "device_fingerprint",
)


def _timestamp_ms(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if parsed.tzinfo is None:
            return None
        return int(parsed.timestamp() * 1000)
    return None


def validate_signups(records: Any, now_ms: int, limit: int) -> tuple[pa.Table | None, list]:
    """Contract accounts -> a table (e-mail included, in memory), or the list of errors."""
    if not isinstance(records, list):
        return None, [{"field": "accounts", "reason": "missing_field"}]
    if len(records) > limit:
        return None, [{"field": "accounts", "reason": f"more than {limit} accounts"}]
    errors: list[dict[str, Any]] = []
    cols: dict[str, list[Any]] = {f: [] for f in contract.ACCOUNTS.names}
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            errors.append({"index": i, "field": None, "reason": "wrong_type"})
            continue
        bad = _check_record(rec)
        if bad:
            aid = rec.get("account_id") if isinstance(rec.get("account_id"), str) else None
            errors += [{"index": i, "account_id": aid, "field": f, "reason": r} for f, r in bad]
            continue
        created = rec.get("created_at")
        cols["account_id"].append(rec["account_id"])
        cols["created_at"].append(now_ms if created is None else _timestamp_ms(created))
        cols["tier"].append(rec["tier"].lower() if rec.get("tier") else None)
        cols["signup_ip"].append(rec.get("signup_ip"))
        for name in STRING_FIELDS:
            cols[name].append(rec.get(name))
    if errors:
        return None, errors
    arrays = {
        name: pa.array(values, pa.int64()).cast(contract.TIMESTAMP)
        if name == "created_at"
        else pa.array(values, pa.string())
        for name, values in cols.items()
    }
    return pa.table(arrays), []


def _check_record(rec: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, reason) for each broken field; the reason never contains the value."""
    bad = []
    aid = rec.get("account_id")
    if aid is None or aid == "":
        bad.append(("account_id", "missing_field"))
    elif not isinstance(aid, str):
        bad.append(("account_id", "wrong_type"))
    if rec.get("created_at") is not None and _timestamp_ms(rec["created_at"]) is None:
        bad.append(("created_at", "bad_timestamp"))
    tier = rec.get("tier")
    if tier is not None and (not isinstance(tier, str) or tier.lower() not in contract.TIERS):
        bad.append(("tier", "unknown_value"))
    ip = rec.get("signup_ip")
    if ip is not None:
        try:
            ipaddress.ip_address(ip if isinstance(ip, str) else "")
        except ValueError:
            bad.append(("signup_ip", "bad_ip"))
    for name in STRING_FIELDS:
        if rec.get(name) is not None and not isinstance(rec[name], str):
            bad.append((name, "wrong_type"))
    return bad


class SignupDesk:
    """Sign-up history and the campaign state it is judged against, for one service."""

    def __init__(self, svc: Service, policy: SignupPolicy | None = None) -> None:
        self.svc = svc
        self.policy = policy or signup_policy(svc.cfg)
        # Several request processes share the stored history: judging is serialised across
        # them too, and a process reloads the history when another one changed it.
        self.lock: Any = svc.runtime.lock("signups") if svc.runtime else threading.Lock()
        self._history: pa.Table | None = None
        self._revision: bytes | None = None
        self._traffic: tuple[int | None, pa.Table | None] = (None, None)
        for decision in SIGNUP_DECISIONS:  # every series from the start, at 0
            svc.metrics.inc("distillguard_signup_decisions_total", 0.0, decision=decision)

    def history(self) -> pa.Table:
        revision = self.svc.store.get_kv(REVISION_KEY)
        if self._history is None or revision != self._revision:
            raw = self.svc.store.get_kv(HISTORY_KEY)
            self._history = (
                # Histories stored by older versions lack newer columns (e.g. org_id).
                conform_history(pa.ipc.open_stream(raw).read_all())
                if raw
                else HISTORY_SCHEMA.empty_table()
            )
            self._revision = revision
        return self._history

    def _save(self, history: pa.Table) -> None:
        from distillguard.serve.features import to_ipc

        if history.num_rows > MAX_HISTORY:
            order = pc.sort_indices(history, [("created_ms", "descending")])
            history = history.take(order[:MAX_HISTORY])
        self._history = history
        # The revision first: a crash between the two writes makes the others reload, not
        # keep a stale copy.
        self._revision = uuid.uuid4().hex.encode()
        self.svc.store.put_kv(REVISION_KEY, self._revision)
        self.svc.store.put_kv(HISTORY_KEY, to_ipc(history))

    def _verdicts(self) -> pa.Table:
        a = self.svc.analysis
        items = [(acc, v.campaign_id) for acc, v in a.verdicts.items()] if a else []
        return pa.table(
            {
                "account_id": pa.array([x[0] for x in items], pa.string()),
                "campaign_id": pa.array([x[1] for x in items], pa.string()),
                # the service calls an account a campaign's only through campaign membership
                "flagged": pa.array([x[1] is not None for x in items], pa.bool_()),
            }
        )

    def _traffic_table(self) -> pa.Table | None:
        """Per account and address, requests in the analysis window (cached per analysis)."""
        from distillguard.serve.analysis import window_start_hb
        from distillguard.serve.features import from_ipc

        at = self.svc.analysis.at_ms if self.svc.analysis else None
        if at is None:
            return None
        if self._traffic[0] == at:
            return self._traffic[1]
        a = self.svc.cfg.raw["analysis"]
        store = self.svc.store
        since = window_start_hb(self.svc.clock_ms, int(a["window_hours"]))
        rows = from_ipc(
            store.blobs(store.cutoff_hour(since, int(a["max_events"]))).get("events", [])
        )
        traffic = None
        if rows is not None and rows.num_rows:
            traffic = (
                rows.group_by(["account_id", "client_ip", "subnet", "asn", "ip_kind"])
                .aggregate([("client_ip", "count")])
                .rename_columns(["account_id", "client_ip", "subnet", "asn", "ip_kind", "requests"])
                .cast(TRAFFIC_SCHEMA)
            )
        self._traffic = (at, traffic)
        return traffic

    def judge(self, records: Any, limit: int) -> tuple[int, dict[str, Any]]:
        new, errors = validate_signups(records, int(time.time() * 1000), limit)
        if new is None:
            return 422, {"detail": errors}
        with self.lock:
            history = self.history()
            ids = new["account_id"].combine_chunks()
            known = KnownState.from_tables(
                self._verdicts(), history, self._traffic_table(), self.policy, exclude=ids
            )
            decisions = check_signups(new, known, self.policy, self.svc.ip_intel)
            for item in pc.value_counts(decisions["decision"]).to_pylist():
                self.svc.metrics.inc(
                    "distillguard_signup_decisions_total",
                    float(item["counts"]),
                    decision=str(item["values"]),
                )
            # what is kept of these sign-ups: never the address (prepare_new drops it)
            kept = as_history(prepare_new(new, self.svc.ip_intel))
            del new
            old = history.filter(pc.invert(pc.is_in(history["account_id"], value_set=ids)))
            self._save(pa.concat_tables([old, kept]))
        a = self.svc.analysis
        return 200, {
            "decisions": decisions.to_pylist(),
            "known": {
                "analysed_at_ms": a.at_ms if a else None,
                "flagged_accounts": known.flagged_accounts,
                "campaigns": known.campaigns,
                "signups_seen": int(self._history.num_rows if self._history is not None else 0),
            },
        }


def register_signups(
    app: FastAPI, svc: Service, write: Depends, limit: int, policy: SignupPolicy | None = None
) -> None:
    """Adds `POST /v1/signups` (write scope) to the service's app."""
    # (Request and Response are module-level: FastAPI resolves the handler's annotations there)
    from starlette.concurrency import run_in_threadpool

    from distillguard.serve.app import read_body
    from distillguard.serve.http import HttpError

    desk = SignupDesk(svc, policy)
    app.state.signups = desk
    max_accounts = int(svc.cfg.get("server", "max_batch_events"))

    @app.post("/v1/signups", dependencies=[write])
    async def post_signups(request: Request) -> Response:
        """New accounts (contract section 2) -> allow / require_verification / deny each."""
        body = await read_body(request, limit)
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise HttpError(400, "malformed JSON") from None  # no excerpt: it may hold an e-mail
        records = payload.get("accounts") if isinstance(payload, dict) else None
        status, out = await run_in_threadpool(desk.judge, records, max_accounts)
        return Response(json.dumps(out), status_code=status, media_type="application/json")
