"""A real `distillguard serve` process on a loopback port: kill -9 under load, then restart."""

from __future__ import annotations

import threading
import time

import httpx

from distillguard.serve.harness import ServerProcess, write_config
from tests.serve.conftest import READ, READ_TOKEN, WRITE, WRITE_TOKEN, free_port
from tests.serve.traffic import normal_user


def _sender(url: str, batches: list[list[dict]], acked: list[str], stop: threading.Event) -> None:
    with httpx.Client(timeout=10.0) as client:
        for batch in batches:
            if stop.is_set():
                return
            try:
                r = client.post(f"{url}/v1/events", json={"events": batch}, headers=WRITE)
            except httpx.HTTPError:
                return  # the server died mid-request: that batch was never acknowledged
            if r.status_code == 200:
                acked.extend(e["request_id"] for e in batch)


def test_every_acknowledged_event_survives_kill_9(tmp_path):
    port = free_port()
    cfg = write_config(tmp_path / "serve.toml", port, WRITE_TOKEN, READ_TOKEN)
    server = ServerProcess(cfg, port, tmp_path / "server.log")
    events = [e for k in range(30) for e in normal_user(f"acct{k:02d}", 40, seed=k)]
    batches = [events[i : i + 100] for i in range(0, len(events), 100)]
    acked: list[str] = []
    stop = threading.Event()
    server.start()
    try:
        t = threading.Thread(target=_sender, args=(server.url, batches, acked, stop))
        t.start()
        deadline = time.time() + 30
        while len(acked) < 400 and time.time() < deadline:
            time.sleep(0.02)
        server.kill9()  # under load: the sender is mid-stream
        stop.set()
        t.join(timeout=30)
        assert 400 <= len(acked) < len(events)

        server.start()
        acked_set = set(acked)
        sent = [e for e in events if e["request_id"] in acked_set]
        with httpx.Client(timeout=30.0) as client:
            for i in range(0, len(sent), 500):
                chunk = sent[i : i + 500]
                r = client.post(f"{server.url}/v1/events", json={"events": chunk}, headers=WRITE)
                body = r.json()
                # Known ids come back as duplicates: nothing acknowledged was lost.
                assert body["duplicates"] == len(chunk), body["accepted"]
            health = client.get(f"{server.url}/healthz").json()
            assert health["status"] == "ok"
            view = client.get(f"{server.url}/v1/accounts/acct00", headers=READ)
            assert view.status_code == 200
        server.stop()  # SIGINT: a graceful stop, exit status 0 and no traceback in the log
        assert server.proc is not None and server.proc.returncode == 0
        assert "Traceback" not in (tmp_path / "server.log").read_text()
    finally:
        stop.set()
        server.stop()
