"""Helpers shared by the CLI commands: reading sources and reporting errors."""

from __future__ import annotations

import sys

import click

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the language loads lazily: read-only commands start faster
    from ..starlark import StarlarkError

EXIT_OK, EXIT_ERR, EXIT_USAGE = 0, 1, 2


def root_flow_options(fn):
    """`--flow NAME` and `--arg NAME=VALUE`: the root of a run (`run`, `submit`)."""
    fn = click.option("--arg", "arg_pairs", multiple=True, metavar="NAME=VALUE",
                      help="Bind an argument of --flow (converted by its declared "
                           "type).")(fn)
    return click.option("--flow", "flow_name", default=None,
                        help="Run this flow as the root (default: the file's "
                             "`if __name__ == \"__flow__\":` block).")(fn)


def read_source(path: str) -> str:
    """The text of a .flow/.star file, or a one-line usage error (exit 2)."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError:
        raise click.UsageError(f"{path}: not UTF-8 text") from None
    except OSError as e:
        raise click.UsageError(f"{path}: {e.strerror}") from None


def parse_arg_pairs(pairs: tuple[str, ...]) -> dict[str, str]:
    """`--arg name=value` options as a dict (values stay strings: the flow's
    declared argument types convert them), or a one-line usage error."""
    out = {}
    for p in pairs:
        name, eq, value = p.partition("=")
        if not eq or not name.strip():
            raise click.UsageError(f"--arg {p!r}: expected name=value")
        out[name.strip()] = value
    return out


def report_error(err: StarlarkError) -> int:
    """Print a Starlark error to stderr; the exit status it deserves."""
    from ..starlark import StarlarkSyntaxError
    click.echo(str(err), err=True)
    return EXIT_USAGE if isinstance(err, StarlarkSyntaxError) else EXIT_ERR


def out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
