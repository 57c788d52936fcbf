from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from distillguard.serve.app import create_app
from distillguard.serve.auth import sha256_hash
from distillguard.serve.config import ServeConfig, load_config

WRITE_TOKEN = "test-write-token-0123456789"
READ_TOKEN = "test-read-token-0123456789"
WRITE = {"Authorization": f"Bearer {WRITE_TOKEN}"}
READ = {"Authorization": f"Bearer {READ_TOKEN}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metric_sum(text: str, prefix: str) -> float:
    """The sum of every Prometheus sample whose line starts with `prefix`."""
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
    )


def make_config(tmp: Path, **sections: dict[str, Any]) -> ServeConfig:
    """A config with a write and a read token, state under `tmp`, background loops off."""
    overrides: dict[str, Any] = {
        "auth": {
            "tokens": [
                {"name": "gw", "hash": sha256_hash(WRITE_TOKEN), "scopes": ["write"]},
                {"name": "ro", "hash": sha256_hash(READ_TOKEN), "scopes": ["read"]},
            ]
        },
        "state": {"path": str(tmp / "state.db")},
        # In-thread helpers: a spawned helper process per test would cost seconds each; the
        # real-process tests (test_process, test_otel) run the default helper processes.
        "signals": {"inline": True, "process": False},
        "analysis": {"interval_s": 0, "min_accounts": 2, "process": False},
    }
    for name, values in sections.items():
        overrides[name] = {**overrides.get(name, {}), **values}
    return load_config(None, overrides)


@pytest.fixture
def client_factory(tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def make(**sections: dict[str, Any]) -> TestClient:
        c = TestClient(create_app(make_config(tmp_path, **sections)))
        c.__enter__()
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def client(client_factory: Callable[..., TestClient]) -> TestClient:
    return client_factory()


class Receiver:
    """A webhook receiver on 127.0.0.1 that records every JSON POST."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("content-length", 0))
                received.append(
                    {"auth": self.headers.get("authorization"), **json.loads(self.rfile.read(size))}
                )
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway redis-server on a free loopback port (skipped if the binary is absent)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server not installed (apt-get install -y redis-server)")
    pytest.importorskip("redis")
    port = free_port()
    work = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(work)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait()
