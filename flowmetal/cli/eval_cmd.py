"""`flowmetal eval FILE`: run a plain Starlark file, no flows, no store."""

from __future__ import annotations

import os
import sys

import click

from .common import EXIT_ERR, EXIT_OK, read_source, report_error


@click.command("eval")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--max-steps", type=click.IntRange(min=1), default=None,
              help="Step budget (loop iterations and calls) before the program is stopped.")
def eval_command(file: str, max_steps: int | None) -> None:
    """Run a Starlark FILE and print its print() output.

    Exits 0 on success, 1 on a runtime error, 2 on a syntax error or misuse;
    1 without a message when stdout is closed or its reader has gone.
    """
    from ..loading import FileLoader, LoadError, check_loads   # lazily: see common.py
    from ..starlark import StarlarkError, exec_file
    source = read_source(file)
    closed = []   # set once stdout turns out closed (a reader gone, `>&-`)

    def print_(text: str) -> None:
        try:
            sys.stdout.write(text + "\n")
        except (AttributeError, BrokenPipeError):   # sys.stdout is None: fd 1 closed
            closed.append(True)
            raise _StdoutClosed("stdout is closed") from None

    try:
        # A module it loads that is missing or does not compile is a syntax error at
        # the load (file:line:col, exit 2), found before anything runs, as for `run`.
        check_loads(source, file, {})
        exec_file(source, file, loader=FileLoader(file), max_steps=max_steps, print=print_)
    except StarlarkError as e:
        if closed or not _flush_stdout():
            _quiet_exit()
        sys.exit(report_error(e))
    except LoadError as e:
        click.echo(f"{file}: {e}", err=True)
        sys.exit(EXIT_ERR)
    if not _flush_stdout():
        _quiet_exit()
    sys.exit(EXIT_OK)


_PROG = "flowmetal eval"


class _StdoutClosed(Exception):
    pass


def _flush_stdout() -> bool:
    """Flush stdout; False if it is closed or its reader has gone."""
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
        return True
    except BrokenPipeError:
        return False
    except OSError as e:   # a full disk, say: said, not swallowed
        click.echo(f"{_PROG}: cannot write the output: {e.strerror or e}", err=True)
        _quiet_exit()


def _quiet_exit() -> None:
    """End as a Unix tool does when its output goes away: no message, exit 1.
    stdout is pointed at /dev/null first, so that the interpreter's flush at
    exit finds nothing to complain about."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, 1)
        os.close(fd)
    except OSError:
        pass
    sys.exit(EXIT_ERR)
