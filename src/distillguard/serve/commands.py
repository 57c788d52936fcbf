"""`distillguard serve` (the scoring service) and `distillguard serve-token` (make a token)."""

from __future__ import annotations

import logging
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from distillguard.errors import UserError

if TYPE_CHECKING:
    from distillguard.serve.config import ServeConfig
    from distillguard.serve.multiproc import Runtime

log = logging.getLogger("distillguard.serve")
SWITCH_INTERVAL_S = 0.001


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)
    app.command("serve-token")(token_command)


def serve_command(
    config: Path = typer.Option(None, "--config", help="TOML config (see docs/serve.md)"),
    host: str = typer.Option(None, "--host", help="address to listen on (default from config)"),
    port: int = typer.Option(None, "--port", help="port (default from config)"),
) -> None:
    """Real-time scoring service for API gateways: POST events, get decisions."""
    from distillguard.serve.config import ip_intel_table, load_config, signup_policy

    cfg = load_config(config)
    # Bad policy or IP-intel files stop the start here (exit 2), not in a worker.
    signup_policy(cfg)
    ip_intel_table(cfg)
    host = host or cfg.get("server", "host")
    port = port or int(cfg.get("server", "port"))
    if not 0 < port < 65536:
        raise UserError(f"bad port {port}")
    workers = int(cfg.get("server", "workers"))
    backend = cfg.get("state", "backend")
    typer.echo(f"distillguard serve on http://{host}:{port} (state: {backend}, workers: {workers})")
    if workers > 1:
        from distillguard.serve.multiproc import run_workers

        run_workers(config, host, port, workers)
    else:
        run_single(cfg, host, port)


def run_single(
    cfg: ServeConfig,
    host: str,
    port: int,
    runtime: Runtime | None = None,
    sockets: list[socket.socket] | None = None,
) -> None:
    """One request process: the app under uvicorn (on `sockets` when the supervisor bound
    them, see serve/multiproc.py)."""
    import uvicorn

    from distillguard.serve.app import create_app

    app = create_app(cfg, runtime=runtime, freeze_heap=True)
    # The request path shares the GIL with the signal and analysis threads' Arrow glue: a
    # shorter switch interval (default 5 ms) bounds how long a POST waits for its turn.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    try:
        uvicorn.Server(config).run(sockets=sockets)
    except KeyboardInterrupt:
        # uvicorn re-raises a SIGINT once it has drained and stopped: this is the graceful
        # stop (Ctrl-C, or the supervisor stopping its workers), not an error to trace
        log.info("stopped")


def token_command(
    scopes: str = typer.Option("read,write", "--scopes", help="comma-separated: read, write"),
    name: str = typer.Option("gateway", "--name", help="a label for the token"),
    scrypt: bool = typer.Option(False, "--scrypt", help="store an scrypt hash (slow, salted)"),
) -> None:
    """Print a new random token and the config line that grants it (only the hash is kept)."""
    from distillguard.serve.auth import new_token, scrypt_hash, sha256_hash

    wanted = [s.strip() for s in scopes.split(",") if s.strip()]
    if not wanted or not set(wanted) <= {"read", "write"}:
        raise UserError("--scopes takes read, write or both")
    token = new_token()
    digest = scrypt_hash(token) if scrypt else sha256_hash(token)
    typer.echo(f"token (give to the client, not stored anywhere): {token}")
    typer.echo("add to [auth] tokens in the config:")
    typer.echo(f'  {{ name = "{name}", hash = "{digest}", scopes = {wanted!r} }}'.replace("'", '"'))
