"""The `distillguard` command line. Each stage registers its own commands.

Exit codes: 0 ok; 2 user error (one line on stderr, no traceback); 1 internal error.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback

import typer

from distillguard import __version__
from distillguard.errors import UserError

app = typer.Typer(
    name="distillguard",
    help="Find and stop distillation attacks on LLM APIs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Modules exposing `register(app)`; each owns its own commands.
COMMAND_MODULES = (
    "distillguard.ingest.commands",
    "distillguard.simulate.commands",
    "distillguard.evaluate",
    "distillguard.pipeline",
    "distillguard.provenance.commands",
    "distillguard.report.commands",
    "distillguard.serve.commands",
    "distillguard.signup.commands",
    "distillguard.scoring.commands",
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"distillguard {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Show the version."
    ),
) -> None:
    """Find and stop distillation attacks on LLM APIs."""


def _register_commands() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # stage not built yet
                continue
            raise
        module.register(app)


_register_commands()


def _is_usage_error(exc: Exception) -> bool:
    # Typer vendors its own click; its usage errors carry `show()` and `exit_code`.
    return type(exc).__name__ == "NoArgsIsHelpError" or (
        hasattr(exc, "show") and hasattr(exc, "exit_code")
    )


def _show_usage_error(exc: Exception) -> None:
    if type(exc).__name__ == "NoArgsIsHelpError":
        sys.exit(0)  # help was already printed
    exc.show()  # type: ignore[attr-defined]
    sys.exit(exc.exit_code)  # type: ignore[attr-defined]


def main() -> None:
    """Console entry point: map exceptions to the documented exit codes."""
    try:
        app(standalone_mode=False)
    except UserError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(1)
    except Exception as exc:
        if _is_usage_error(exc):
            _show_usage_error(exc)
        if os.environ.get("DISTILLGUARD_DEBUG"):
            traceback.print_exc()
        typer.echo(f"internal error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(1)
    sys.exit(0)
