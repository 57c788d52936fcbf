"""`python -m distillguard.serve --config FILE`: the service without loading every CLI stage."""

from __future__ import annotations

import sys

import typer

from distillguard.errors import UserError
from distillguard.serve.commands import serve_command


def main() -> None:
    try:
        typer.run(serve_command)
    except UserError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
