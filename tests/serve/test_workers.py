"""`server.workers = 2`: two request processes on one port sharing the SQLite state."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from typing import Any

from distillguard.serve.harness import ServerProcess, write_config
from tests.serve.conftest import READ, READ_TOKEN, WRITE, WRITE_TOKEN, free_port, metric_sum
from tests.serve.traffic import hydra, normal_user

HEADERS = {**WRITE, "Content-Type": "application/json"}


class Worker:
    """Requests to one given request process. The server closes keep-alive connections idle
    for 5 s (slow steps on a loaded machine), so a broken one is replaced by a new connection
    that reaches the same process; POSTs are idempotent, so resending is safe."""

    def __init__(self, port: int, index: int, conn: http.client.HTTPConnection) -> None:
        self.port, self.index, self.conn = port, index, conn

    def call(self, method: str, path: str, body: Any = None) -> Any:
        for attempt in range(3):
            try:
                return _call(self.conn, method, path, body)
            except (OSError, http.client.HTTPException):
                self.conn.close()
                if attempt == 2:
                    raise
                self.conn = _connection_to(self.port, {self.index})[self.index].conn
        raise AssertionError("unreachable")


def _call(conn: http.client.HTTPConnection, method: str, path: str, body: Any = None) -> Any:
    payload = None if body is None else json.dumps(body).encode()
    headers = HEADERS if method == "POST" else READ
    conn.request(method, path, body=payload, headers=headers)
    response = conn.getresponse()
    data = response.read()
    assert response.status == 200, (response.status, data[:300])
    return data.decode() if path == "/metrics" else json.loads(data)


def _connection_to(port: int, wanted: set[int]) -> dict[int, Worker]:
    """Keep-alive connections until each wanted process holds one (the kernel spreads them)."""
    found: dict[int, Worker] = {}
    for _ in range(200):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        worker = _call(conn, "GET", "/healthz")["worker"]
        if worker in found or worker not in wanted:
            conn.close()
        else:
            found[worker] = Worker(port, worker, conn)
        if set(found) == wanted:
            return found
    raise AssertionError(f"connections reached only workers {sorted(found)}")


def _without_duplicate_flag(decisions: list[dict]) -> list[dict]:
    return [{k: v for k, v in d.items() if k != "duplicate"} for d in decisions]


def test_two_workers_share_state_stay_idempotent_and_run_one_analysis(tmp_path):
    port = free_port()
    cfg = write_config(
        tmp_path / "serve.toml", port, WRITE_TOKEN, READ_TOKEN,
        **{"server.workers": "2", "analysis.interval_s": "1", "analysis.min_accounts": "2",
           "signals.flush_ms": "200"},
    )  # fmt: skip
    server = ServerProcess(cfg, port, tmp_path / "server.log")
    server.start(timeout=300)  # spawned processes: slow on a loaded machine
    try:
        conns = _connection_to(port, {0, 1})
        deadline = time.time() + 60
        leads = {}
        while time.time() < deadline:  # one process takes the analysis lock, the other not
            leads = {w: c.call("GET", "/healthz")["leads_analysis"] for w, c in conns.items()}
            if any(leads.values()):
                break
            time.sleep(0.2)
        assert sorted(leads.values()) == [False, True]
        follower = conns[next(w for w, lead in leads.items() if not lead)]

        # Idempotent across processes: the other worker answers the stored decisions.
        users = [e for k in range(4) for e in normal_user(f"user{k}", 25, seed=k)]
        first = conns[0].call("POST", "/v1/events", {"events": users})
        again = conns[1].call("POST", "/v1/events", {"events": users})
        assert first["accepted"] == 100 and again["duplicates"] == 100
        assert _without_duplicate_flag(again["decisions"]) == _without_duplicate_flag(
            first["decisions"]
        )

        # The same new batch through both at once: every id is counted exactly once.
        racing = [dict(e, request_id=e["request_id"] + "-race") for e in users]
        results: dict[int, dict] = {}
        threads = [
            threading.Thread(
                target=lambda w=w: results.__setitem__(
                    w, conns[w].call("POST", "/v1/events", {"events": racing})
                )
            )
            for w in conns
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(r["accepted"] for r in results.values()) == len(racing)
        assert sum(r["duplicates"] for r in results.values()) == len(racing)

        # The analysis (run by one process) reaches the other one's decisions.
        cluster = hydra("hyd", accounts=6, n_each=30)
        for i in range(0, len(cluster), 90):
            conns[0].call("POST", "/v1/events", {"events": cluster[i : i + 90]})
        campaigns: list = []
        deadline = time.time() + 90
        while time.time() < deadline and not campaigns:
            campaigns = follower.call("GET", "/v1/campaigns")["campaigns"]
            time.sleep(0.5)
        assert len(campaigns) == 1
        later = hydra("hyd", accounts=6, n_each=1, seed=9, start=cluster[-1]["timestamp"] + 60_000)
        later = [dict(e, request_id=e["request_id"] + "-late") for e in later]
        decided = follower.call("POST", "/v1/events", {"events": later})["decisions"]
        assert {d["decision"] for d in decided} <= {"challenge", "block"}
        assert {d["campaign_id"] for d in decided} == {campaigns[0]["campaign_id"]}

        # /metrics adds up both processes' counters (each writes its own every second).
        accepted = len(users) + len(racing) + len(cluster) + len(later)
        time.sleep(2.5)
        for worker in conns.values():
            text = worker.call("GET", "/metrics")
            assert metric_sum(text, "distillguard_events_total{") == accepted
            assert metric_sum(text, "distillguard_duplicate_events_total") == 200
            assert metric_sum(text, "distillguard_analysis_runs_total") >= 1

        # kill -9 of the supervisor takes both workers with it; nothing acknowledged is lost.
        for worker in conns.values():
            worker.conn.close()
        server.kill9()
        time.sleep(0.5)
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0  # nobody left on the port
        server.start(timeout=300)  # spawned processes: slow on a loaded machine
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        assert _call(conn, "POST", "/v1/events", {"events": users + racing})["duplicates"] == 200
        conn.close()
        server.stop()  # SIGINT: a graceful stop, exit status 0 and no traceback in the log
        assert server.proc is not None and server.proc.returncode == 0
        assert "Traceback" not in (tmp_path / "server.log").read_text()
    finally:
        server.stop()
