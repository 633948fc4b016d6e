"""`flowmetal eval FILE`: run a plain Starlark file, no flows, no store."""

from __future__ import annotations

import sys

import click

from .common import EXIT_ERR, EXIT_OK, read_source, report_error


@click.command("eval")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--max-steps", type=click.IntRange(min=1), default=None,
              help="Step budget (loop iterations) before the program is stopped.")
def eval_command(file: str, max_steps: int | None) -> None:
    """Run a Starlark FILE and print its print() output.

    Exits 0 on success, 1 on a runtime error, 2 on a syntax error or misuse.
    """
    from ..loading import FileLoader, LoadError   # lazily: see common.py
    from ..starlark import StarlarkError, exec_file
    source = read_source(file)
    try:
        exec_file(source, file, loader=FileLoader(file), max_steps=max_steps)
    except StarlarkError as e:
        sys.stdout.flush()
        sys.exit(report_error(e))
    except LoadError as e:
        click.echo(f"{file}: {e}", err=True)
        sys.exit(EXIT_ERR)
    sys.exit(EXIT_OK)
