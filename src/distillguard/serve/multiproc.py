"""Several request processes for one service (`server.workers`), sharing one state store.

The request path is GIL-bound, so one process uses at most one core. With `server.workers = N`
the command starts a small supervisor that binds N listening sockets on the same address
(SO_REUSEPORT: the kernel spreads connections over them) and runs one full service per socket
in its own spawned process. What they share, and how:

- **State**: the SQLite file (or Redis). SQLite serialises writers; the request-id primary key
  keeps idempotency across processes (a commit that loses a race for an id is retried and the
  id answered as a duplicate). A writer lock file (`SqliteStore`) makes writers queue in the
  kernel instead of in SQLite's sleeping busy handler.
- **Background analysis**: one process runs it (whoever holds `analysis.lock` in the runtime
  folder; another takes over if it dies); the others reload its verdicts from the store when
  the stored stamp changes (within a second).
- **Metrics**: each process writes its counters to `metrics-<i>.json` in the runtime folder
  every second; `GET /metrics` answers the sum over processes.
- **Sign-ups**: judged under `signups.lock`, reloading the stored history when another process
  changed it.

A killed supervisor (kill -9) takes its workers with it (PR_SET_PDEATHSIG), so a restart never
meets an orphan still answering on the port; a worker that dies is restarted.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import wait as wait_any
from pathlib import Path
from typing import Any

log = logging.getLogger("distillguard.serve")
METRICS_EVERY_S = 1.0
RESTART_PAUSE_S = 1.0
STOP_GRACE_S = 30.0
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Runtime:
    """Where the processes of one multi-process service meet: a folder for lock and metrics
    files, this process's index and how many there are."""

    folder: Path
    index: int
    count: int

    def lock(self, name: str) -> FileLock:
        return FileLock(self.folder / f"{name}.lock")


class FileLock:
    """An exclusive `flock` on a file: waiters sleep in the kernel (the GIL is released) and are
    woken as soon as it is free; the kernel releases it when its holder dies."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self._thread_lock = threading.Lock()  # flock is per open file, not per thread

    def acquire(self, blocking: bool = True) -> bool:
        if not self._thread_lock.acquire(blocking):
            return False
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._thread_lock.release()
            return False
        except BaseException:
            self._thread_lock.release()
            raise
        return True

    def release(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._thread_lock.release()

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


# --------------------------------------------------------------------------------- metrics
def write_metrics(runtime: Runtime, snapshot: dict[str, Any]) -> None:
    """This process's counters, replaced atomically (readers never see half a file)."""
    path = runtime.folder / f"metrics-{runtime.index}.json"
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(snapshot))
    os.replace(tmp, path)


def other_metrics(runtime: Runtime) -> list[dict[str, Any]]:
    """The last snapshots of the other processes (a missing or torn file counts as none)."""
    out = []
    for i in range(runtime.count):
        if i == runtime.index:
            continue
        try:
            out.append(json.loads((runtime.folder / f"metrics-{i}.json").read_text()))
        except (OSError, ValueError):
            continue
    return out


# --------------------------------------------------------------------------------- supervisor
def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when the supervisor dies, whatever killed it."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the helpers' watchdog pattern would do
        return


def _worker_main(
    config: str | None, host: str, port: int, sock: socket.socket, runtime: Runtime, ppid: int
) -> None:
    _die_with_parent()
    if os.getppid() != ppid:  # the supervisor died before the prctl: do not serve
        os._exit(0)
    from distillguard.serve.commands import run_single
    from distillguard.serve.config import load_config

    cfg = load_config(Path(config) if config else None)
    run_single(cfg, host, port, runtime=runtime, sockets=[sock])


def run_workers(config: Path | None, host: str, port: int, count: int) -> None:
    """Bind `count` sockets on host:port, run one service per socket, restart any that dies,
    and stop them all on SIGINT/SIGTERM."""
    folder = Path(tempfile.mkdtemp(prefix="distillguard-serve-"))
    ctx = multiprocessing.get_context("spawn")
    sockets = [_listening_socket(host, port) for _ in range(count)]
    cfg = str(config.resolve()) if config else None
    stopping = threading.Event()

    def spawn(i: int) -> multiprocessing.process.BaseProcess:
        p = ctx.Process(
            target=_worker_main,
            args=(cfg, host, port, sockets[i], Runtime(folder, i, count), os.getpid()),
            name=f"dg-serve-{i}",
        )
        p.start()
        return p

    def on_signal(signum: int, _: Any) -> None:
        stopping.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    procs = [spawn(i) for i in range(count)]
    try:
        while not stopping.is_set():
            wait_any([p.sentinel for p in procs], timeout=0.5)
            for i, p in enumerate(procs):
                if not p.is_alive() and not stopping.is_set():
                    log.warning("worker %d exited with %s; restarting", i, p.exitcode)
                    time.sleep(RESTART_PAUSE_S)
                    procs[i] = spawn(i)
    finally:
        for p in procs:
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signal.SIGINT)  # uvicorn's graceful stop: drain, then close
        deadline = time.monotonic() + STOP_GRACE_S
        for p in procs:
            p.join(timeout=max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join()
        for s, handler in old.items():
            signal.signal(s, handler)
        for sock in sockets:
            sock.close()
        shutil.rmtree(folder, ignore_errors=True)
