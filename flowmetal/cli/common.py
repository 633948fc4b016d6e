"""Helpers shared by the CLI commands: reading sources and reporting errors."""

from __future__ import annotations

import sys

import click

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the language loads lazily: read-only commands start faster
    from ..starlark import StarlarkError

EXIT_OK, EXIT_ERR, EXIT_USAGE = 0, 1, 2


def read_source(path: str) -> str:
    """The text of a .flow/.star file, or a one-line usage error (exit 2)."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError:
        raise click.UsageError(f"{path}: not UTF-8 text") from None
    except OSError as e:
        raise click.UsageError(f"{path}: {e.strerror}") from None


def report_error(err: StarlarkError) -> int:
    """Print a Starlark error to stderr; the exit status it deserves."""
    from ..starlark import StarlarkSyntaxError
    click.echo(str(err), err=True)
    return EXIT_USAGE if isinstance(err, StarlarkSyntaxError) else EXIT_ERR


def out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
