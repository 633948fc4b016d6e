"""Helpers shared by the CLI commands: reading sources and reporting errors."""

from __future__ import annotations

import json
import math
import os
import sys

import click

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the language loads lazily: read-only commands start faster
    from ..starlark import StarlarkError

EXIT_OK, EXIT_ERR, EXIT_USAGE = 0, 1, 2
# The daemon went away in the middle of a request (or is stopping): what was asked may
# or may not have been done, and a run it was running goes on at its next start.
EXIT_UNAVAILABLE = 3

HOME_HELP = "State directory (default: $FLOWMETAL_HOME, $XDG_STATE_HOME/flowmetal, " \
            "~/.local/state/flowmetal)."



def _check_home(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    # An empty --home (say `--home "$UNSET_VAR"`) must not silently mean the default.
    if value is not None and not value.strip():
        raise click.UsageError("--home must not be empty", ctx=ctx)
    return value


def home_option(fn):
    """`--home DIR`, shared by every command that touches a home directory."""
    return click.option("--home", default=None, help=HOME_HELP, callback=_check_home)(fn)


def is_utf8(text: str) -> bool:
    """Whether ``text`` encodes as UTF-8: command-line bytes that are not UTF-8 reach
    Python as lone surrogates, which the store, the socket and stdout all refuse."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def id_problem(value: str) -> str | None:
    """Why ``value`` cannot be a run, flow, batch or message id, or None. The store's
    rules (non-empty UTF-8 without NUL, at most MAX_ID_BYTES bytes), checked before
    the store (or the daemon) sees the id, so that misuse is a one-line usage error."""
    from store.keys import MAX_ID_BYTES
    if not value:
        return "must not be empty"
    if not is_utf8(value):
        return f"{shown(value)} is not valid UTF-8"
    b = value.encode("utf-8")
    if b"\x00" in b:
        return f"{shown(value)} must not contain NUL"
    if len(b) > MAX_ID_BYTES:
        return f"{shown(value)} is longer than {MAX_ID_BYTES} bytes"
    return None


def shown(value: str, width: int = 40) -> str:
    """``value`` quoted for a one-line message (long values cut short; bytes that are
    not UTF-8, which reach us as surrogates, shown as bytes)."""
    cut = value if len(value) <= width else value[:width]
    text = repr(cut) if is_utf8(cut) else repr(cut.encode("utf-8", "surrogateescape"))
    return text if cut is value else text + "..."


def check_id(value: str, what: str = "run id") -> str:
    """``value`` if it is a well-formed id, else a usage error (exit 2)."""
    why = id_problem(value)
    if why is not None:
        raise click.UsageError(f"{what} {why}")
    return value


def _check_id_param(ctx: click.Context, param: click.Parameter,
                    value: str | None) -> str | None:
    why = None if value is None else id_problem(value)
    if why is not None:
        raise click.BadParameter(why, ctx=ctx, param=param)
    return value


def id_argument(name: str, metavar: str | None = None):
    """A positional id argument (RUN_ID, BATCH_ID, ...) checked as `check_id` does."""
    return click.argument(name, metavar=metavar, callback=_check_id_param)


def run_id_argument(fn):
    """The RUN_ID argument of `resume`, `status`, `logs`, `cancel`, ..."""
    return id_argument("run_id")(fn)




# More worker processes than this only thrash (flows share the store's one writer),
# and a typo such as --workers 2000 would start every one of them at the first flow.
MAX_WORKERS = max(8, 4 * (os.cpu_count() or 1))


def workers_option(default: int, where: str):
    """`--workers N`: worker processes hosting the flows (0: in `where`), at most
    `MAX_WORKERS`."""
    return click.option("--workers", type=click.IntRange(0, MAX_WORKERS), default=default,
                        show_default=True,
                        help=f"Worker processes hosting the flows (0: in {where}).")


def root_flow_options(fn):
    """`--flow NAME` and `--arg NAME=VALUE`: the root of a run (`run`, `submit`)."""
    fn = click.option("--arg", "arg_pairs", multiple=True, metavar="NAME=VALUE",
                      help="Bind an argument of --flow (converted by its declared "
                           "type).")(fn)
    return click.option("--flow", "flow_name", default=None,
                        help="Run this flow as the root (default: the file's "
                             "`if __name__ == \"__flow__\":` block).")(fn)


def quota_file_problem(home: Any) -> str | None:
    """What is wrong with ``HOME/quotas.toml`` (one line naming the file), or None
    when it is fine or absent."""
    from ..quotas import QuotaConfig, QuotaConfigError
    try:
        QuotaConfig.load(home)
    except QuotaConfigError as e:
        return str(e)
    return None


def warn_quota_file(command: str, home: Any, consequence: str) -> None:
    """Say on stderr (one line) that the home's quotas file is broken, and what that
    means for this command. A broken file is never silently ignored."""
    problem = quota_file_problem(home)
    if problem is not None:
        click.echo(f"flowmetal {command}: warning: {problem}; {consequence}", err=True)


# A program is sent to the daemon in one frame (16 MiB, where JSON may escape a
# byte into six) and stored with every run: 2 MiB is far more than any flow needs,
# and `run /dev/zero` stops there rather than filling memory.
MAX_SOURCE_BYTES = 2 * 1024 * 1024


def read_source(path: str) -> str:
    """The text of a .flow/.star file, or a one-line usage error (exit 2)."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SOURCE_BYTES + 1)
    except OSError as e:
        raise click.UsageError(f"{shown_path(path)}: {e.strerror}") from None
    if len(data) > MAX_SOURCE_BYTES:
        raise click.UsageError(f"{shown_path(path)}: larger than "
                               f"{MAX_SOURCE_BYTES // (1024 * 1024)} MiB, the most a flow "
                               f"file may be")
    try:
        # Newlines as a file opened in text mode reads them (\r\n and \r are \n).
        return data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    except UnicodeDecodeError:
        raise click.UsageError(f"{shown_path(path)}: not UTF-8 text") from None


def parse_arg_pairs(pairs: tuple[str, ...]) -> dict[str, str]:
    """`--arg name=value` options as a dict (values stay strings: the flow's
    declared argument types convert them), or a one-line usage error."""
    out = {}
    for p in pairs:
        name, eq, value = p.partition("=")
        if not eq or not name.strip():
            raise click.UsageError(f"--arg {shown(p)}: expected name=value")
        if not is_utf8(p):
            # Bytes that are not UTF-8 (surrogates in argv) cannot be stored or printed.
            raise click.UsageError(f"--arg {shown(p)}: not valid UTF-8")
        if name.strip() in out:
            # Which one was meant? Taking the last silently ran with the other wrong.
            raise click.UsageError(f"--arg {shown(name.strip())} given twice")
        out[name.strip()] = value
    return out



def report_error(err: StarlarkError) -> int:
    """Print a Starlark error to stderr; the exit status it deserves."""
    from ..starlark import StarlarkSyntaxError
    click.echo(str(err), err=True)
    return EXIT_USAGE if isinstance(err, StarlarkSyntaxError) else EXIT_ERR


def _finite(obj: Any) -> Any:
    """`obj` with non-finite floats as the strings "NaN", "Infinity", "-Infinity"
    (JSON has no such numbers; Python's json writes them bare, which parsers refuse)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "NaN" if math.isnan(obj) else ("Infinity" if obj > 0 else "-Infinity")
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def json_text(obj: Any) -> str:
    """Standard JSON for a command's --json output (non-finite floats as strings;
    anything else not JSON as its str)."""
    try:
        return json.dumps(obj, default=str, allow_nan=False)
    except ValueError:   # a NaN or infinity somewhere: rare, so walked only then
        return json.dumps(_finite(obj), default=str, allow_nan=False)


def out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def shown_path(path: Any) -> str:
    """A path for a one-line message: quoted when it holds a newline or another
    unprintable character (it would break the line or hide its own mistake)."""
    text = os.fsdecode(path) if isinstance(path, (bytes, os.PathLike)) else str(path)
    return text if text.isprintable() else repr(text)


def home_path(home: str | None, *, create: bool = True) -> Any:
    """The home directory (`actors.home.home_dir`); one that cannot be made (a file
    in its place, a parent that does not exist or is not ours) is one line, exit 1."""
    from actors.home import home_dir
    try:
        return home_dir(home, create=create)
    except OSError as e:
        where = e.filename if e.filename else home
        why = "it is not a directory" if isinstance(e, FileExistsError) else (e.strerror or e)
        raise click.ClickException(f"cannot use the home directory {shown_path(where)}: "
                                   f"{why}") from None
    except (RuntimeError, ValueError) as e:
        # expanduser of '~nosuchuser/…' (RuntimeError), a NUL in the path (ValueError)
        where = home if home is not None else os.environ.get("FLOWMETAL_HOME", "")
        raise click.ClickException(f"cannot use the home directory {shown_path(where)}: {e}"
                                   if where.strip() else str(e)) from None


def open_store(home: str | None, *, create: bool = True) -> Any:
    """The home's store. With ``create=False`` (commands that only read) None when
    there is none, rather than a new home made where a typo pointed. A store that
    cannot be opened (damaged, a file where the home should be) is one line, exit 1."""
    from store import Store, StoreError, StoreNotFoundError
    path = home_path(home, create=create)
    try:
        # FLOWMETAL_SYNC=0 trades machine-crash durability for speed (tests); a
        # killed process still loses nothing.
        sync = os.environ.get("FLOWMETAL_SYNC", "1") not in ("0", "false", "no")
        return Store.open(path, sync=sync, create=create)
    except StoreNotFoundError:
        return None
    except OSError as e:   # (a file where the home or the store should be)
        raise click.ClickException(f"cannot use the home directory {shown_path(path)}: "
                                   f"{e.strerror or e}") from None
    except StoreError as e:
        raise click.ClickException(f"cannot open the store: {e}") from None


def existing_store(home: str | None, command: str, missing: str) -> Any:
    """The home's store for a command about one run or batch; none there means that
    one cannot exist: `missing` (exit 2), naming the home."""
    st = open_store(home, create=False)
    if st is None:
        click.echo(f"flowmetal {command}: {missing} (no store in "
                   f"{home_path(home, create=False)}: nothing has run there)", err=True)
        sys.exit(EXIT_USAGE)
    return st
