"""Load benchmark of `distillguard serve` on loopback: throughput, batch latency, kill -9 recovery.

    .venv/bin/python bench/serve_load.py [--rate 5000] [--batch 100] [--max-seconds 30]

1. Simulated traffic (scenario `small`, copied with fresh request ids and shifted timestamps up
   to --events) is pre-encoded as JSON bodies of --batch events.
2. A real server process (`python -m distillguard.serve`, SQLite, synchronous=FULL) gets them
   open loop: POST k is due at k * batch / rate seconds, sent over one of --connections
   keep-alive connections, and its latency runs from when it was due to when its response
   (with the decisions) was read. `--rate 0` runs closed loop instead (--clients connections
   posting back to back), which measures saturation throughput, not latency.
3. A second server is killed with SIGKILL mid-load, restarted, and every acknowledged request id
   is POSTed again: all must come back as duplicates (nothing acknowledged was lost).

The load generator runs on the same machine (its CPU time is reported). Bounded: at most
--events events and --max-seconds per phase; loopback only; stops by itself.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from distillguard.serve.harness import ServerProcess, write_config

WRITE_TOKEN = "bench-write-token-0123456789abcdef"
READ_TOKEN = "bench-read-token-0123456789abcdef"
DAY_MS = 86_400_000


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def simulated_events(work: Path, total: int, live_rate: float | None = None) -> pa.Table:
    """`total` events of scenario `small`, copied with fresh request ids. Timestamps: the
    scenario's, each copy shifted past the last (a replay: ~27 events per simulated hour, so
    the clock crosses hours every few POSTs), or with `live_rate` those of a live gateway
    sending `live_rate` events/s from now on (a POST's events all fall in the current hour)."""
    from distillguard.simulate.engine import simulate

    sim = work / "sim"
    simulate("small", None, 0, sim)  # called directly: no CLI start-up in the measurement
    base = pq.read_table(sim / "events.parquet").sort_by("timestamp")
    base = base.set_column(
        base.schema.get_field_index("timestamp"),
        "timestamp",
        pc.cast(base["timestamp"], pa.int64()),
    )
    span = int(pc.max(base["timestamp"]).as_py() - pc.min(base["timestamp"]).as_py()) + DAY_MS
    copies = []
    for k in range(-(-total // base.num_rows)):
        t = base.set_column(
            0, "request_id", pc.binary_join_element_wise(base["request_id"], f"-{k}", "")
        )
        t = t.set_column(
            t.schema.get_field_index("timestamp"), "timestamp", pc.add(t["timestamp"], k * span)
        )
        copies.append(t)
    events = pa.concat_tables(copies).slice(0, total)
    if live_rate is None:
        return events
    now_ms = int(time.time() * 1000)
    live = pa.array(now_ms + np.arange(events.num_rows) * 1000 // int(live_rate), pa.int64())
    return events.set_column(events.schema.get_field_index("timestamp"), "timestamp", live)


def encode(events: pa.Table, batch: int) -> list[tuple[bytes, list[str]]]:
    """JSON bodies of `batch` events (absent fields left out) with their request ids."""
    out = []
    for i in range(0, events.num_rows, batch):
        chunk = [
            {k: v for k, v in r.items() if v is not None}
            for r in events.slice(i, batch).to_pylist()
        ]
        out.append((json.dumps({"events": chunk}).encode(), [e["request_id"] for e in chunk]))
    return out


class Load:
    """--clients threads posting pre-encoded bodies over keep-alive connections."""

    def __init__(self, port: int, bodies: list[tuple[bytes, list[str]]], clients: int) -> None:
        self.port, self.bodies, self.clients = port, bodies, clients
        self.next = 0
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.acked: list[str] = []
        self.errors = 0
        self.stop = threading.Event()

    def _take(self) -> int | None:
        with self.lock:
            if self.next >= len(self.bodies) or self.stop.is_set():
                return None
            self.next += 1
            return self.next - 1

    def _worker(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {WRITE_TOKEN}"}
        while (i := self._take()) is not None:
            body, ids = self.bodies[i]
            start = time.perf_counter()
            try:
                conn.request("POST", "/v1/events", body=body, headers=headers)
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                with self.lock:
                    self.errors += 1
                return  # the server is gone (crash phase)
            elapsed = time.perf_counter() - start
            with self.lock:
                if response.status == 200:
                    self.latencies.append(elapsed)
                    self.acked.extend(ids)
                else:
                    self.errors += 1
        conn.close()

    def run(self, max_seconds: float) -> float:
        threads = [threading.Thread(target=self._worker) for _ in range(self.clients)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        deadline = start + max_seconds
        while any(t.is_alive() for t in threads) and time.perf_counter() < deadline:
            time.sleep(0.05)
        self.stop.set()
        for t in threads:
            t.join()
        return time.perf_counter() - start


class OpenLoop:
    """Open-loop load at a fixed offered rate: POST k is due at start + k / posts_per_s whatever
    happened to the earlier ones, and its latency is counted from when it was *due*, so a
    stalled server shows up in the figures instead of slowing the load down (no coordinated
    omission). Enough keep-alive connections are kept that a slow response never delays the
    next send; if all are busy, the wait is part of the latency."""

    def __init__(
        self,
        port: int,
        bodies: list[tuple[bytes, list[str]]],
        posts_per_s: float,
        conns: int,
        workers: int = 1,
    ) -> None:
        self.port, self.bodies, self.interval, self.conns = port, bodies, 1.0 / posts_per_s, conns
        self.workers = workers  # > 1: spread the connections evenly over the request processes
        self.due: queue.SimpleQueue[tuple[int, float] | None] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.latencies: list[float] = []  # from due time to response read, seconds
        self.trace: list[tuple[float, float]] = []  # (due time, latency) per acknowledged POST
        self.send_delays: list[float] = []  # from due time to the start of the send
        self.acked = 0
        self.errors = 0
        self.last_done = 0.0

    def _worker(self, conn: http.client.HTTPConnection | None = None) -> None:
        conn = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {WRITE_TOKEN}"}
        while (item := self.due.get()) is not None:
            k, due = item
            body, ids = self.bodies[k]
            sent = time.perf_counter()
            try:
                conn.request("POST", "/v1/events", body=body, headers=headers)
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                with self.lock:
                    self.errors += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                continue
            done = time.perf_counter()
            with self.lock:
                if response.status == 200:
                    self.latencies.append(done - due)
                    self.trace.append((due, done - due))
                    self.send_delays.append(sent - due)
                    self.acked += len(ids)
                    self.last_done = max(self.last_done, done)
                else:
                    self.errors += 1
        conn.close()

    def run(self, max_seconds: float) -> float:
        """Offer every body (or as many as fit in `max_seconds`); seconds from the first due
        time to the last response."""
        opened = balanced_connections(self.port, self.conns, self.workers)
        threads = [threading.Thread(target=self._worker, args=(c,)) for c in opened]
        for t in threads:
            t.start()
        start = time.perf_counter() + 0.05
        n = min(len(self.bodies), int(max_seconds / self.interval))
        for k in range(n):
            due = start + k * self.interval
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            self.due.put((k, due))
        for _ in threads:
            self.due.put(None)
        for t in threads:
            t.join()
        return max(self.last_done - start, 1e-9)


def balanced_connections(port: int, n: int, workers: int) -> list[http.client.HTTPConnection]:
    """`n` keep-alive connections, as many to each request process as a least-connections
    balancer would give. With `server.workers` > 1 the kernel spreads connections over the
    processes by a hash of the addresses (SO_REUSEPORT), which split 16 connections 13/3 in
    some trials; so connections are opened, asked which process answers (/healthz), and kept
    until each process holds n / workers of them."""
    if workers <= 1:
        return [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(n)]
    want = -(-n // workers)
    held: dict[int, list[http.client.HTTPConnection]] = {}
    for _ in range(50 * n):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/healthz")
        worker = json.loads(conn.getresponse().read())["worker"]
        if len(held.setdefault(worker, [])) < want:
            held[worker].append(conn)
        else:
            conn.close()
        if sum(len(v) for v in held.values()) >= n:
            break
    return [c for conns in held.values() for c in conns][:n]


def _own_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the server and all its descendants (request processes when
    `server.workers` > 1, helper processes) (Linux /proc), in seconds."""
    total = 0.0
    for p in [pid, *_descendants(pid)]:
        try:
            total += _own_cpu(p)
        except OSError:
            continue  # a process that ended meanwhile
    return total


def _request_pids(pid: int, workers: int) -> list[int]:
    """The request processes: the server itself, and its workers (direct children) if any."""
    return [pid] + (_children(pid) if workers > 1 else [])


def request_cpu_seconds(pid: int, workers: int) -> float:
    """CPU of the request processes."""
    total = 0.0
    for p in _request_pids(pid, workers):
        try:
            total += _own_cpu(p)
        except OSError:
            continue
    return total


def request_rss_mb(pid: int, workers: int) -> float:
    """Resident memory of the request processes (Linux /proc), in MB."""
    total_kb = 0
    for p in _request_pids(pid, workers):
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total_kb += int(line.split()[1])
    return round(total_kb / 1024, 1)


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        kids = _children(todo.pop())
        out += kids
        todo += kids
    return out


def prioritise(pid: int, niceness: int) -> None:
    """Raise the server's (and its helpers' and our own) CPU priority on a shared machine, so
    the figures approach those of dedicated cores. Needs root for a negative niceness."""
    for p in [pid, *_descendants(pid), os.getpid()]:
        for task in Path(f"/proc/{p}/task").glob("*"):  # every thread
            try:
                os.setpriority(os.PRIO_PROCESS, int(task.name), niceness)
            except (OSError, ValueError):
                continue


def _latency_figures(lat_s: list[float]) -> dict:
    lat = np.array(lat_s) * 1000
    if not len(lat):
        return {"batches": 0}
    pct = {f"p{q}_ms": round(float(np.percentile(lat, q)), 1) for q in (50, 95, 99)}
    return {"batches": len(lat), **pct, "max_ms": round(float(lat.max()), 1)}


def host_reference_ms() -> float:
    """CPU ms of a fixed workload of small JSON, NumPy and Arrow calls (the request path's kind
    of work, none of distillguard's code). The shared test host's speed drifts by up to 2x
    within an hour; this figure, taken beside each run, tells a slow stretch from a change."""
    ids = [f"acct_{i % 37}" for i in range(100)]
    arr = pa.array(ids)
    ints = np.random.default_rng(0).integers(0, 1000, 2000)
    start = time.process_time()
    for _ in range(300):
        json.loads(json.dumps({"events": ids}))
        pc.dictionary_encode(arr)
        np.unique(ints)
        {k: len(k) for k in ids}
    return round((time.process_time() - start) * 1000, 1)


def throughput_phase(args: argparse.Namespace, work: Path, bodies) -> dict:
    port = free_port()
    cfg = write_config(work / "tp" / "serve.toml", port, WRITE_TOKEN, READ_TOKEN, **_extra(args))
    server = ServerProcess(cfg, port, work / "tp" / "server.log")
    server.start(timeout=300)  # spawned processes start slowly on a loaded machine
    try:
        # First-call costs (IP ranges, regexes) off the clock; with several request processes,
        # over enough connections that each process gets some.
        n_warm = 5 if args.workers == 1 else 10 * args.workers
        warm = Load(port, bodies[:n_warm], 1 if args.workers == 1 else args.connections)
        warm.run(60)
        time.sleep(2.0)  # let the helpers finish their start-up work
        if args.nice is not None:
            prioritise(server.proc.pid, args.nice)
        reference = [host_reference_ms()]
        rest = bodies[n_warm:]
        if args.rate:
            load = OpenLoop(port, rest, args.rate / args.batch, args.connections, args.workers)
        else:
            load = Load(port, rest, args.clients)
        cpu0, load0, own0 = cpu_seconds(server.proc.pid), os.getloadavg()[0], _self_cpu()
        main0 = request_cpu_seconds(server.proc.pid, args.workers)
        seconds = load.run(args.max_seconds)
        server_cpu = cpu_seconds(server.proc.pid) - cpu0
        main_cpu = request_cpu_seconds(server.proc.pid, args.workers) - main0
        own_cpu = _self_cpu() - own0
        rss_mb = request_rss_mb(server.proc.pid, args.workers)
        load1 = os.getloadavg()[0]
        reference.append(host_reference_ms())
    finally:
        server.stop()
    events = load.acked if isinstance(load.acked, int) else len(load.acked)
    out = {
        "mode": f"open loop, {args.rate} events/s offered" if args.rate else "closed loop",
        "events": events,
        "seconds": round(seconds, 2),
        "events_per_s": round(events / seconds),
        **_latency_figures(load.latencies),
        "errors": load.errors,
        # The machine is shared: CPU time per event (server + helper processes) is the figure
        # that does not depend on what else runs; events_per_server_cpu_s is what one fully
        # available core would sustain.
        "server_cpu_s": round(server_cpu, 2),
        "of_which_request_processes_cpu_s": round(main_cpu, 2),  # the rest: helper processes
        "server_cpu_ms_per_1000_events": round(1000 * server_cpu / max(events, 1) * 1000, 1),
        "events_per_server_cpu_s": round(events / max(server_cpu, 1e-9)),
        "load_generator_cpu_s": round(own_cpu, 2),
        "request_processes_rss_mb_after": rss_mb,  # state held in memory (windows, ids)
        "load_average_before_after": [round(load0, 1), round(load1, 1)],
        "host_reference_ms_before_after": reference,
    }
    if args.rate and args.trace:
        write_trace(Path(args.trace), load.trace)
    if args.rate:
        late = np.array(load.send_delays) * 1000
        out["send_delay_p99_ms"] = round(float(np.percentile(late, 99)), 1) if len(late) else None
    return out


def write_trace(path: Path, trace: list[tuple[float, float]]) -> None:
    """CSV of (seconds from the first due time, latency ms) per POST: shows whether the slow
    POSTs come in periodic bursts (signal flush, analysis) or at random."""
    t0 = min(due for due, _ in trace)
    rows = sorted((due - t0, lat * 1000) for due, lat in trace)
    path.write_text(
        f"# t0 (perf_counter) {t0:.6f}\ndue_s,latency_ms\n"
        + "".join(f"{d:.4f},{lat:.2f}\n" for d, lat in rows)
    )


def _self_cpu() -> float:
    t = os.times()
    return t.user + t.system


def crash_phase(args: argparse.Namespace, work: Path, bodies) -> dict:
    port = free_port()
    cfg = write_config(work / "crash" / "serve.toml", port, WRITE_TOKEN, READ_TOKEN, **_extra(args))
    server = ServerProcess(cfg, port, work / "crash" / "server.log")
    server.start(timeout=300)  # spawned processes start slowly on a loaded machine
    try:
        load = Load(port, bodies, args.clients)
        runner = threading.Thread(target=load.run, args=(args.max_seconds,))
        runner.start()
        time.sleep(args.kill_after)
        server.kill9()
        runner.join()
        acked = set(load.acked)
        server.start(timeout=300)  # spawned processes start slowly on a loaded machine
        resend = [b for b in bodies if set(b[1]) <= acked]
        partial = [b for b in bodies if set(b[1]) & acked and not set(b[1]) <= acked]
        assert not partial, "a batch is acknowledged as a whole or not at all"
        # Re-POSTing acknowledged events must report every one as a duplicate.
        lost = post_all(port, resend)
    finally:
        server.stop()
    return {"acknowledged_before_kill": len(acked), "lost_after_restart": lost}


def post_all(port: int, bodies) -> int:
    """POST every body in turn over one connection; how many events were accepted."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {WRITE_TOKEN}"}
    accepted = 0
    for body, _ in bodies:
        conn.request("POST", "/v1/events", body=body, headers=headers)
        accepted += json.loads(conn.getresponse().read())["accepted"]
    conn.close()
    return accepted


def _extra(args: argparse.Namespace) -> dict[str, str]:
    return {
        "state.synchronous": f'"{args.synchronous}"',
        "analysis.interval_s": str(args.analysis_interval),
        "signals.flush_ms": str(args.flush_ms),
        "server.workers": str(args.workers),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=150_000)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument(
        "--rate", type=float, default=5000.0,
        help="offered events/s, open loop (0: closed loop with --clients)",
    )  # fmt: skip
    p.add_argument("--connections", type=int, default=16, help="open loop: connections")
    p.add_argument("--clients", type=int, default=4, help="closed loop / crash phase clients")
    p.add_argument("--max-seconds", type=float, default=30.0)
    p.add_argument("--kill-after", type=float, default=4.0)
    p.add_argument("--synchronous", default="FULL", choices=("FULL", "NORMAL"))
    p.add_argument("--analysis-interval", type=float, default=30.0)
    p.add_argument("--skip-crash", action="store_true")
    p.add_argument("--flush-ms", type=int, default=1000, help="signals.flush_ms of the server")
    p.add_argument("--workers", type=int, default=1, help="server.workers (request processes)")
    p.add_argument("--trace", default=None, help="open loop: write per-POST latencies (CSV)")
    p.add_argument("--nice", type=int, default=None, help="e.g. -10: raise CPU priority (root)")
    p.add_argument(
        "--timestamps", default="replay", choices=("replay", "live"),
        help="replay: the scenario's clock (hours pass every few POSTs); live: stamped at --rate "
        "from now, as a gateway sends them",
    )  # fmt: skip
    args = p.parse_args()
    # `kill <pid>` (SIGTERM) unwinds like Ctrl-C, so the phases' `finally` stop their servers
    # instead of leaving them running (and using CPU) behind an interrupted benchmark.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    work = Path(tempfile.mkdtemp(prefix="dg-serve-bench-"))
    try:
        live_rate = args.rate if args.timestamps == "live" and args.rate else None
        events = simulated_events(work, args.events, live_rate)
        bodies = encode(events, args.batch)
        result = {"config": vars(args), "throughput": throughput_phase(args, work, bodies)}
        if not args.skip_crash:
            # Fresh request ids: the crash phase writes to its own state file anyway.
            result["crash"] = crash_phase(args, work, bodies)
        print(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
