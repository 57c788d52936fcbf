"""Run `distillguard serve` as a real process on a loopback port (tests, bench/serve_load.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from distillguard.serve.auth import sha256_hash


def write_config(path: Path, port: int, write_token: str, read_token: str, **extra: str) -> Path:
    """A TOML config with one write and one read token; `extra` maps 'section.key' -> TOML."""
    sections: dict[str, list[str]] = {
        "server": [f"port = {port}"],
        "state": [f'path = "{path.parent / "state.db"}"'],
        "auth": [
            "tokens = ["
            f'{{ name = "gw", hash = "{sha256_hash(write_token)}", scopes = ["write"] }}, '
            f'{{ name = "ro", hash = "{sha256_hash(read_token)}", scopes = ["read"] }}]'
        ],
    }
    for dotted, value in extra.items():
        section, key = dotted.split(".", 1)
        sections.setdefault(section, []).append(f"{key} = {value}")
    text = "\n".join(f"[{s}]\n" + "\n".join(lines) + "\n" for s, lines in sections.items())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


class ServerProcess:
    """`python -m distillguard serve --config ...`, started and stopped (or killed) by us."""

    def __init__(self, config: Path, port: int, log: Path) -> None:
        self.config, self.port, self.log = config, port, log
        self.proc: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{port}"

    def start(self, timeout: float = 180.0) -> None:  # spawned helpers: slow under load
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "distillguard.serve", "--config", str(self.config),
             "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.proc.kill()  # not left running behind a failed test or benchmark
        self.proc.wait()
        raise RuntimeError("server did not become healthy in time")

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
