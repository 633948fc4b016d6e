"""`flowmetal daemon` and its clients: submit, status, logs, history, inspect, cancel,
prune and batch.

Commands that change things (`submit`, `cancel`, `batch`, `batch retry`) talk to the
daemon over its socket; without one they fail with a line saying how to start it.
Read-only commands (`status`, `logs`, `history`, `inspect`, `batch status`, `batch
list`) read the store directly — the same data the daemon would send — so they work
with or without a daemon. `prune` deletes only ended runs and is safe either way.

Every command takes ``--home`` and ``--json``; errors are one line on stderr with exit
status 1 (2 for usage and syntax errors, and for a RUN_ID that names no run), never a
Python traceback.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable

import click

from ..jsondepth import MAX_JSON_DEPTH, loads_strict, nesting_exceeds
from .common import (EXIT_ERR, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, existing_store,
                     home_option, home_path, id_argument, open_store,
                     parse_arg_pairs, read_source, root_flow_options, run_id_argument,
                     json_text, warn_quota_file, workers_option)
from .common import shown as _shown


# ====================================================================== helpers

def _home(home: str | None, *, create: bool = True) -> Path:
    return home_path(home, create=create)


def _client(home: str | None) -> Any:
    from flowmetal.daemon.client import Client
    return Client.connect(_home(home))


def _fail(msg: str, code: int = EXIT_ERR) -> None:
    click.echo(msg, err=True)
    sys.exit(code)


def _guard(name: str) -> Callable:
    """Turn every failure of command ``name`` into one line and an exit status."""
    def deco(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*a: Any, **kw: Any) -> Any:
            from flowmetal.daemon.client import DaemonError, DaemonNotRunning
            try:
                return fn(*a, **kw)
            except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
                raise
            except DaemonNotRunning as e:
                _fail(f"flowmetal {name}: {e}")
            except DaemonError as e:
                _fail(f"flowmetal {name}: {e}",
                      EXIT_USAGE if e.kind in ("usage", "syntax") else
                      EXIT_UNAVAILABLE if e.kind == "unavailable" else EXIT_ERR)
            except KeyboardInterrupt:
                _fail(f"flowmetal {name}: interrupted", 130)
            except BrokenPipeError:
                sys.exit(EXIT_ERR)
            except Exception as e:  # noqa: BLE001 - a traceback is never the answer
                _fail(f"flowmetal {name}: {type(e).__name__}: {e}")
        return wrapper
    return deco






def _ts(t: float | None) -> str:
    if t is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _dur(a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return "-"
    d = b - a
    return f"{d * 1000:.0f} ms" if d < 1 else f"{d:.2f} s"


def _table(rows: list[tuple], header: tuple) -> None:
    table = [tuple(str(c) for c in header)] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for r in table:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def _oneline(text: Any, width: int = 60) -> str:
    if text is None:
        return "-"
    text = str(text).replace("\n", " ")
    return text if len(text) <= width else text[:width - 3] + "..."


def _emit_json(obj: Any) -> None:
    click.echo(json_text(obj))


def _write_out(frame: dict) -> None:
    stream = sys.stderr if frame.get("stream") == "stderr" else sys.stdout
    stream.write(frame.get("text", ""))
    stream.flush()


# How long a client waiting on a run waits for a daemon that went away to come back.
REATTACH_WAIT = 30.0


def follow_run(client: Any, frames: Any, as_json: bool, home: Path | None = None) -> int:
    """Print a streamed run (output frames, then the end frame) like `flowmetal run`;
    the exit status it deserves. With `home`, a daemon that goes away mid-run (a
    restart) is waited for, up to `REATTACH_WAIT` s, and the run followed on from the
    output already printed: its end is the run's, not the connection's."""
    from flowmetal.daemon.client import DaemonError
    out: list[str] = []
    end: dict = {}
    run_id, offset, clients = None, 0, []
    try:
        while True:
            try:
                for f in frames:
                    ev = f.get("event")
                    if ev == "out":
                        if as_json:
                            out.append(f.get("text", ""))
                        else:
                            _write_out(f)
                        offset = f.get("offset", offset)
                    elif ev == "started":
                        if run_id is None and not as_json:
                            click.echo(f"run {f['run_id']}", err=True)
                        run_id = f["run_id"]
                    elif ev == "end":
                        end = f
                break
            except DaemonError as e:
                if e.kind != "unavailable" or run_id is None or home is None:
                    raise
                c = _reconnect(home, run_id)
                clients.append(c)
                frames = c.stream("resume", run=run_id, wait=True, offset=offset)
    finally:
        for c in clients:
            c.close()
    if as_json:
        _emit_json({"run_id": end.get("run_id"), "state": end.get("state"),
                    "ok": end.get("result_ok"), "result": end.get("result"),
                    "output": "".join(out)})
    else:
        sys.stdout.write((end.get("result") or "") + "\n")
        sys.stdout.flush()
    return int(end.get("exit", EXIT_ERR))


def _reconnect(home: Path, run_id: str, *, goes_on: str | None = None,
               gave_up: str | None = None) -> Any:
    """A new connection to a daemon that went away, waited for up to `REATTACH_WAIT`
    s; else a DaemonError ("unavailable"). `goes_on` says what carries on meanwhile,
    `gave_up` what to do later (both default to run `run_id`'s)."""
    from flowmetal.daemon.client import Client, DaemonError, DaemonNotRunning
    goes_on = goes_on or f"run {run_id} goes on there"
    gave_up = gave_up or (f"run {run_id} goes on at its next start (`flowmetal resume "
                          f"{run_id}` follows it)")
    click.echo(f"flowmetal: the daemon went away; waiting up to {REATTACH_WAIT:g} s for it "
               f"to come back ({goes_on})", err=True)
    deadline = time.monotonic() + REATTACH_WAIT
    while True:
        try:
            return Client.connect(home)
        except (DaemonNotRunning, OSError):
            if time.monotonic() >= deadline:
                raise DaemonError(f"the daemon did not come back; {gave_up}",
                                  "unavailable") from None
            time.sleep(0.25)


# ====================================================================== daemon

class _ToDaemonLog(logging.Handler):
    """Hands records of another logger (the quotas') to the daemon's log."""

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger("flowmetal.daemon").handle(record)


@click.command("daemon")
@home_option
@workers_option(2, "the daemon's process")
@click.option("--verbose", "-v", is_flag=True, help="Log every submission.")
def daemon_command(home: str | None, workers: int, verbose: bool) -> None:
    """Run the Flowmetal daemon in the foreground (one per home directory).

    Recovers every unfinished run and batch, then serves clients on HOME/daemon.sock.
    SIGTERM or SIGINT stop it gracefully. Logs go to HOME/daemon.log and stderr.
    """
    from flowmetal.daemon.server import run_daemon
    from .common import quota_file_problem
    sync = os.environ.get("FLOWMETAL_SYNC", "1") not in ("0", "false", "no")
    path = _home(home)
    # A broken quotas file stops the daemon from starting, where `run` only warns:
    # the daemon runs unattended for a long time, for every flow of the home, with
    # its stderr in a log nobody may read; starting it with no limits at all when
    # the operator wrote some would lift them silently for as long as it runs (once
    # running, a file broken by an edit keeps the last good limits, and the daemon
    # logs why). Refusing is loud (a supervisor shows the failure), and loses
    # nothing: the runs wait in the store and carry on at the next start.
    problem = quota_file_problem(path)
    if problem is not None:
        _fail(f"flowmetal daemon: {problem}; fix (or remove) it and start the daemon "
              "again")
    # Quota problems found while running go to the daemon's log.
    qlog = logging.getLogger("flowmetal.quotas")
    qlog.addHandler(_ToDaemonLog())
    qlog.setLevel(logging.INFO)
    try:
        code = run_daemon(path, workers=workers, sync=sync, verbose=verbose)
    except Exception as e:  # noqa: BLE001 - one line, never a traceback
        _fail(f"flowmetal daemon: {type(e).__name__}: {e}")
    sys.exit(code)


# ====================================================================== submit

# What a broken quotas file means for a run the daemon hosts (see `daemon_command`).
_KEEPS_LIMITS = "a running daemon keeps the limits it last read from it"


@click.command("submit")
@click.argument("file", type=click.Path(dir_okay=False))
@root_flow_options
@click.option("--wait", is_flag=True, help="Stream the run's output and exit like "
              "`flowmetal run` (0 for Ok, 1 for Err).")
@home_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_guard("submit")
def submit_command(file: str, flow_name: str | None, arg_pairs: tuple[str, ...],
                   wait: bool, home: str | None, as_json: bool) -> None:
    """Submit FILE to the daemon; print the run id.

    With --wait, print the run id on stderr (`run ID`), then the output and the root
    Result on stdout, exactly as `flowmetal run` does.
    """
    source = read_source(file)
    args = parse_arg_pairs(arg_pairs)
    if args and flow_name is None:
        raise click.UsageError("--arg needs --flow (the main block takes no arguments)")
    with _client(home) as c:
        warn_quota_file("submit", _home(home), _KEEPS_LIMITS)
        fields = {"file": os.path.abspath(file), "source": source, "flow": flow_name,
                  "args": args}
        if not wait:
            rid = c.call("submit", **fields)["run_id"]
            _emit_json({"run_id": rid}) if as_json else click.echo(rid)
            return
        sys.exit(follow_run(c, c.stream("submit", wait=True, **fields), as_json,
                            _home(home)))


# ====================================================================== status

@click.command("status")
@run_id_argument
@home_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_guard("status")
def status_command(run_id: str, home: str | None, as_json: bool) -> None:
    """A run's state, its tree of flows, its pending actions and times."""
    from flowmetal.daemon.views import flow_tree, status_view
    st = existing_store(home, "status", f"no run {run_id!r}")
    v = status_view(st, run_id)
    if v is None:
        _fail(f"flowmetal status: no run {run_id!r}", EXIT_USAGE)
    if as_json:
        _emit_json(v)
        return
    click.echo(f"run      {v['id']}")
    click.echo(f"state    {v['state']}")
    if v["state"] in LIVE_STATES:
        click.echo(f"process  {v['owner']}" if v["owner"] is not None else
                   f"process  none: {ORPHANED_HINT.format(run=v['id'])}")
    click.echo(f"file     {v['file']}")
    click.echo(f"flow     {v['flow']}")
    click.echo(f"created  {_ts(v['created'])}")
    click.echo(f"ended    {_ts(v['finished'])}"
               + (f"  ({_dur(v['created'], v['finished'])})" if v["finished"] else ""))
    if v["result"] is not None:
        click.echo(f"result   {_oneline(v['result'], 200)}")
    click.echo("flows:")
    now = time.time()
    for depth, f in flow_tree(v["flows"]):
        res = f"  -> {_oneline(f['result'], 50)}" if f["result"] else ""
        click.echo(f"  {'  ' * depth}{f['id']}  {f['name']}  [{f['state']}]  "
                   f"{_dur(f['created'], f['finished'] or now)}{res}")
    if v["pending"]:
        click.echo("pending actions:")
        for p in v["pending"]:
            extra = ""
            if "due" in p:
                left = p["due"] - time.time()
                if p["kind"] == "receive":
                    extra = f" (times out in {left:.1f} s)" if left > 0 else " (timed out)"
                else:
                    extra = f" (due in {left:.1f} s)" if left > 0 else " (due)"
            click.echo(f"  {p['flow']} #{p['seq']}  {_oneline(p['action'], 70)}{extra}"
                       f"  since {_ts(p['since'])}")


# ====================================================================== logs

@click.command("logs")
@run_id_argument
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the run ends.")
@home_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per output chunk.")
@_guard("logs")
def logs_command(run_id: str, follow: bool, home: str | None, as_json: bool) -> None:
    """Print what a run printed (committed output only, each line once)."""
    st = existing_store(home, "logs", f"no run {run_id!r}")
    run = st.get_run(run_id)
    if run is None:
        _fail(f"flowmetal logs: no run {run_id!r}", EXIT_USAGE)
    offset = 0
    ended = ("ok", "err", "cancelled", "crashed")
    unowned: float | None = None
    while True:
        while True:
            chunks = [c for c in st.read_output(run_id, offset, limit=1000)
                      if c.offset >= offset]
            if not chunks:
                break
            for c in chunks:
                if as_json:
                    _emit_json({"offset": c.offset, "stream": c.stream, "flow": c.flow_id,
                                "time": c.time, "text": c.text})
                else:
                    (sys.stderr if c.stream == "stderr" else sys.stdout).write(c.text)
                offset = c.end
            sys.stdout.flush()
        if not follow:
            return
        run = st.get_run(run_id)
        if run is None or run.state in ended:
            if run is not None and st.output_size(run_id) > offset:
                continue
            return
        unowned = _note_if_orphaned(st, run_id, unowned)
        st.wait_output(run_id, offset, 0.5)


ORPHANED_HINT = "its process has gone; `flowmetal resume {run}` carries it on"
LIVE_STATES = ("pending", "running", "waiting")
ORPHAN_NOTE_AFTER = 8.0   # s a followed run may go unowned (a daemon adopts it after ~5 s)


def _note_if_orphaned(st: Any, run_id: str, since: float | None) -> float | None:
    """While following a live run: once nothing has run it for `ORPHAN_NOTE_AFTER` s,
    say so on stderr (once), rather than wait in silence for ever. Returns the time
    it was first seen unowned (or -1 once the note is out)."""
    from actors.ownership import run_owner
    if since == -1:
        return since
    if run_owner(st.home, run_id) is not None:
        return None
    now = time.monotonic()
    if since is None:
        return now
    if now - since >= ORPHAN_NOTE_AFTER:
        click.echo(f"flowmetal logs: run {run_id} is not running: "
                   + ORPHANED_HINT.format(run=run_id), err=True)
        return -1
    return since


# ====================================================================== history

@click.command("history")
@run_id_argument
@home_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_guard("history")
def history_command(run_id: str, home: str | None, as_json: bool) -> None:
    """A run's actions: every action of every flow with its request, result and times
    (actions still in flight last in each flow's list)."""
    from flowmetal.daemon.views import history_view
    st = existing_store(home, "history", f"no run {run_id!r}")
    h = history_view(st, run_id)
    if h is None:
        _fail(f"flowmetal history: no run {run_id!r}", EXIT_USAGE)
    if as_json:
        _emit_json(h)
        return
    if not h:
        click.echo("no actions yet")
        return
    rows = []
    for e in h:
        r = e["result"]
        if e.get("pending"):
            res = "(in flight)"
        elif isinstance(r, dict) and "error" in r:
            res = f"error: {r['error']}"
        else:
            res = r.get("value") if isinstance(r, dict) else r
        rows.append((e["flow"], e["seq"], _oneline(e["action"], 50), _oneline(res, 50),
                     _ts(e["started"]), _dur(e["started"], e["finished"])))
    _table(rows, ("FLOW", "SEQ", "ACTION", "RESULT", "STARTED", "TOOK"))


# ====================================================================== inspect

@click.command("inspect")
@run_id_argument
@home_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_guard("inspect")
def inspect_command(run_id: str, home: str | None, as_json: bool) -> None:
    """For each suspended flow: its Starlark stack and its local variables."""
    from flowmetal.daemon.views import inspect_view
    st = existing_store(home, "inspect", f"no run {run_id!r}")
    v = inspect_view(st, run_id)
    if v is None:
        _fail(f"flowmetal inspect: no run {run_id!r}", EXIT_USAGE)
    if as_json:
        _emit_json(v)
        return
    if not v:
        run = st.get_run(run_id)
        click.echo(f"run {run_id} has no suspended flows (state {run.state})")
        return
    for e in v:
        click.echo(f"flow {e['flow']} ({e['name']}) [{e['state']}]"
                   + (f" waiting on: {e['pending']}" if e.get("pending") else ""))
        if e.get("error"):
            click.echo(f"  cannot load its checkpoint: {e['error']}")
        if e.get("note"):
            click.echo(f"  {e['note']}")
        for fr in e["frames"]:
            click.echo(f"  {fr['file']}:{fr['line']} in {fr['function']}")
            for name, text in fr["locals"].items():
                click.echo(f"      {name} = {_oneline(text, 100)}")
        click.echo("")


# ====================================================================== cancel

@click.command("cancel")
@run_id_argument
@home_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_guard("cancel")
def cancel_command(run_id: str, home: str | None, as_json: bool) -> None:
    """Cancel a run: every live flow ends Err("cancelled"), children first."""
    with _client(home) as c:
        r = c.call("cancel", run=run_id)
    if as_json:
        _emit_json({k: r[k] for k in ("run_id", "cancelled", "state")})
    elif r["cancelled"]:
        click.echo(f"run {run_id}: cancelled {len(r['cancelled'])} flow(s)")
    else:
        click.echo(f"run {run_id}: nothing to cancel (state {r['state']})")


# ====================================================================== prune

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# The longest age a timedelta can hold (~2.7 million years); longer is a usage error.
_MAX_DURATION = 999_999_999 * 86400.0


def parse_duration(text: str) -> float:
    """'90s', '15m', '12h', '7d', '2w', '1d12h' -> seconds. A bare number is refused:
    `prune --older-than 7` meant as days would delete nearly every ended run."""
    t = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        raise click.BadParameter(f"{_shown(text)} has no unit: say {t}s, {t}m, {t}h, {t}d "
                                 f"or {t}w", param_hint="'--older-than'")
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhdw])", t)
    if not parts or "".join(a + b for a, b in parts) != t:
        raise click.BadParameter(f"{text!r} is not a duration (e.g. 90s, 15m, 12h, 7d)",
                                 param_hint="'--older-than'")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if not seconds <= _MAX_DURATION:   # also catches inf (a float of 400 digits)
        raise click.BadParameter(f"{_shown(text)} is too long a duration (at most "
                                 f"{_MAX_DURATION / 86400:.0f} days)",
                                 param_hint="'--older-than'")
    return seconds


@click.command("prune")
@click.option("--older-than", "older_than", required=True, metavar="DURATION",
              help="Remove ended runs that finished longer ago than this (e.g. 7d, 12h).")
@home_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_guard("prune")
def prune_command(older_than: str, home: str | None, as_json: bool) -> None:
    """Delete ended runs (their flows, journal, output) older than DURATION, then the
    flow sources no run refers to any more."""
    import datetime as dt
    seconds = parse_duration(older_than)
    st = open_store(home, create=False)
    n = st.prune(dt.timedelta(seconds=seconds), sweep=False) if st is not None else 0
    sources = st.sweep_code() if st is not None else 0
    if as_json:
        _emit_json({"removed": n, "sources_removed": sources})
    else:
        click.echo(f"removed {n} run(s)" + (f" and {sources} unused source(s)" if sources else ""))


# ====================================================================== batch

class _BatchGroup(click.Group):
    """`flowmetal batch FILE --inputs ...` is `batch run`; other words are subcommands."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run"] + list(args)
        return super().parse_args(ctx, args)


@click.group("batch", cls=_BatchGroup, invoke_without_command=False)
def batch_group() -> None:
    """Supervised batch jobs: `flowmetal batch FILE --inputs items.jsonl --flow NAME`
    runs the flow once per input line; see also `batch status|retry|cancel|list`."""


def _read_inputs(path: str) -> list[dict]:
    items = []
    try:
        f = sys.stdin if path == "-" else open(path, encoding="utf-8")
    except OSError as e:
        raise click.UsageError(f"{path}: {e.strerror}") from None
    with f:
        try:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                # An item's values are flow arguments: at most MAX_JSON_DEPTH deep.
                if nesting_exceeds(line, MAX_JSON_DEPTH + 1):
                    raise click.UsageError(f"{path}:{n}: nested more than "
                                           f"{MAX_JSON_DEPTH + 1} levels deep")
                try:
                    obj = loads_strict(line)
                except ValueError as e:
                    raise click.UsageError(f"{path}:{n}: not JSON: {e}") from None
                if not isinstance(obj, dict):
                    raise click.UsageError(f"{path}:{n}: each line must be a JSON object")
                items.append(obj)
        except UnicodeDecodeError:
            raise click.UsageError(f"{path}: not UTF-8 text") from None
    return items


class _Progress:
    """A live bar on a terminal, plain lines otherwise."""

    def __init__(self, total: int, tty: bool):
        self.total = total
        self.tty = tty
        self.t0 = time.monotonic()
        self.last_line = ""
        self.last_plain = 0.0
        self.base: int | None = None   # items already ended when we started watching

    def show(self, counts: dict, final: bool = False) -> None:
        ok, failed = counts.get("ok", 0), counts.get("failed", 0)
        cancelled = counts.get("cancelled", 0)
        running = counts.get("running", 0)
        done = ok + failed + cancelled
        if self.base is None:
            self.base = done
        el = max(1e-6, time.monotonic() - self.t0)
        rate = max(0, done - self.base) / el
        eta = (self.total - done) / rate if rate > 0 else None
        eta_s = "-" if eta is None else (f"{eta:.0f}s" if eta < 3600 else f"{eta / 3600:.1f}h")
        stats = (f"{done}/{self.total} done, {failed} failed, "
                 + (f"{cancelled} cancelled, " if cancelled else "")
                 + f"{running} running, {rate:.1f}/s, ETA {eta_s}")
        if self.tty:
            width = 30
            fill = int(width * done / self.total) if self.total else width
            line = f"\r[{'#' * fill}{'.' * (width - fill)}] {stats}"
            if line != self.last_line or final:
                sys.stderr.write(line + ("\n" if final else "\x1b[K"))
                sys.stderr.flush()
                self.last_line = line
        else:
            now = time.monotonic()
            if final or (stats != self.last_line and now - self.last_plain >= 1.0):
                sys.stderr.write(f"progress: {stats}\n")
                sys.stderr.flush()
                self.last_line = stats
                self.last_plain = now


# How often a client watching a batch checks that the daemon running it is still there.
BATCH_DAEMON_CHECK = 2.0


def _daemon_serves(home: Path) -> bool:
    """Whether a daemon answers on the home's socket."""
    from flowmetal.daemon.client import Client, DaemonError, DaemonNotRunning
    try:
        with Client.connect(home, timeout=BATCH_DAEMON_CHECK * 5) as c:
            c.ping()   # (a hung daemon counts as gone)
        return True
    except (DaemonNotRunning, DaemonError, OSError):
        return False


def _wait_for_daemon(home: Path, batch_id: str, prog: "_Progress | None") -> None:
    """A daemon went away mid-batch: wait for one to come back like `submit --wait`
    does (`_reconnect`), or fail saying how to check on the batch later."""
    if prog is not None and prog.tty and prog.last_line:
        sys.stderr.write("\n")       # off the progress bar's line
        prog.last_line = ""
    _reconnect(home, batch_id,
               goes_on=f"batch {batch_id} goes on when a daemon is started again: "
                       f"flowmetal daemon --home {home}",
               gave_up=f"batch {batch_id} goes on when a daemon is started again "
                       f"(flowmetal daemon --home {home}); check on it with "
                       f"`flowmetal batch status {batch_id}`").close()


def _watch_batch(home: str | None, batch_id: str, total: int, as_json: bool) -> int:
    st = open_store(home)
    prog = None if as_json else _Progress(total, sys.stderr.isatty())
    path = _home(home)
    next_check = time.monotonic() + BATCH_DAEMON_CHECK
    while True:
        # The daemon is checked before the store is read: a batch it ended just
        # before going away is reported, not waited for.
        gone = False
        if time.monotonic() >= next_check:
            gone = not _daemon_serves(path)
            next_check = time.monotonic() + BATCH_DAEMON_CHECK
        b = st.get_batch(batch_id)
        if b is None:
            _fail(f"flowmetal batch: batch {batch_id} disappeared")
        counts = b.meta.get("counts") or {}
        ended = b.state in ("ok", "err", "cancelled", "crashed")
        if prog is not None:
            prog.show(counts, final=ended)
        if ended:
            break
        if gone:
            _wait_for_daemon(path, batch_id, prog)
            next_check = time.monotonic() + BATCH_DAEMON_CHECK
            continue
        time.sleep(0.2)
    from flowmetal.daemon.views import batch_view
    v = batch_view(st, batch_id)
    failed = [i for i in v["items"] if i["state"] != "ok"]
    if as_json:
        _emit_json({"batch_id": batch_id, "state": v["state"], "counts": v["counts"],
                    "failed": failed})
    else:
        ok = v["counts"].get("ok", 0)
        click.echo(f"batch {batch_id}: {v['state']}: {ok} ok, {len(failed)} failed "
                   f"of {v['size']}")
        for i in failed[:20]:
            click.echo(f"  item {i['index']} ({i['state']}): {_oneline(i['result'], 90)}")
        if len(failed) > 20:
            click.echo(f"  ... and {len(failed) - 20} more "
                       f"(flowmetal batch status {batch_id})")
    return EXIT_ERR if failed else EXIT_OK


@batch_group.command("run")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--inputs", required=True, metavar="ITEMS.jsonl",
              help="One JSON object of flow arguments per line ('-' for stdin).")
@click.option("--flow", "flow_name", required=True, help="The flow run for each item.")
@click.option("--concurrency", type=click.IntRange(min=1), default=4, show_default=True,
              help="At most this many items run at a time.")
@click.option("--arg", "arg_pairs", multiple=True, metavar="NAME=VALUE",
              help="Default argument for every item (an item's own values win).")
@click.option("--detach", is_flag=True, help="Print the batch id and return at once.")
@home_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_guard("batch")
def batch_run_command(file: str, inputs: str, flow_name: str, concurrency: int,
                      arg_pairs: tuple[str, ...], detach: bool, home: str | None,
                      as_json: bool) -> None:
    """Run FILE's flow once per input line, supervised by the daemon.

    Shows progress until the batch ends (it goes on in the daemon if this command is
    interrupted); exits 1 if any item failed.
    """
    source = read_source(file)
    args = parse_arg_pairs(arg_pairs)
    items = _read_inputs(inputs)
    with _client(home) as c:
        warn_quota_file("batch", _home(home), _KEEPS_LIMITS)
        r = c.call("batch_create", file=os.path.abspath(file), source=source,
                   flow=flow_name, args=args, items=items, concurrency=concurrency)
    bid = r["batch_id"]
    if detach:
        _emit_json({"batch_id": bid}) if as_json else click.echo(bid)
        return
    if not as_json:
        click.echo(f"batch {bid}: {len(items)} items, concurrency {concurrency}", err=True)
    sys.exit(_watch_batch(home, bid, len(items), as_json))


@batch_group.command("status")
@id_argument("batch_id")
@home_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_guard("batch status")
def batch_status_command(batch_id: str, home: str | None, as_json: bool) -> None:
    """A batch's state, counts and items."""
    from flowmetal.daemon.views import batch_view
    st = existing_store(home, "batch status", f"no batch {batch_id!r}")
    v = batch_view(st, batch_id)
    if v is None:
        _fail(f"flowmetal batch status: no batch {batch_id!r}", EXIT_USAGE)
    if as_json:
        _emit_json(v)
        return
    click.echo(f"batch    {v['id']}")
    click.echo(f"state    {v['state']}")
    click.echo(f"flow     {v['flow']} in {v['file']}")
    click.echo(f"created  {_ts(v['created'])}   updated {_ts(v['updated'])}")
    click.echo("counts   " + ", ".join(f"{k} {n}" for k, n in sorted(v["counts"].items())))
    rows = [(i["index"], i["state"], i["run_id"] or "-", _oneline(json.dumps(i["args"]), 30),
             _oneline(i["result"], 50)) for i in v["items"]]
    _table(rows, ("ITEM", "STATE", "RUN", "ARGS", "RESULT"))


@batch_group.command("retry")
@id_argument("batch_id")
@click.option("--failed", is_flag=True, required=True,
              help="Re-run the failed items (required: finished items never re-run).")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Show progress until the batch ends again.")
@home_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_guard("batch retry")
def batch_retry_command(batch_id: str, failed: bool, wait: bool, home: str | None,
                        as_json: bool) -> None:
    """Re-run only the failed items of a batch."""
    st = existing_store(home, "batch retry", f"no batch {batch_id!r}")
    if st.get_batch(batch_id) is None:
        _fail(f"flowmetal batch retry: no batch {batch_id!r}", EXIT_USAGE)
    with _client(home) as c:
        r = c.call("batch_retry", batch=batch_id)
    n = r["retried"]
    if not wait or n == 0:
        if as_json:
            _emit_json({"batch_id": batch_id, "retried": n})
            return
        click.echo(f"batch {batch_id}: {n} failed item(s) queued again")
        b = st.get_batch(batch_id)
        if n == 0 and b is not None and b.state == "running":
            # Nothing failed yet: say so, rather than leave the user thinking it ended.
            click.echo(f"batch {batch_id} is still {b.state}; its items that fail can be "
                       f"retried once it ends (flowmetal batch status {batch_id})", err=True)
        return
    if not as_json:
        click.echo(f"batch {batch_id}: retrying {n} item(s)", err=True)
    total = st.get_batch(batch_id).size
    sys.exit(_watch_batch(home, batch_id, total, as_json))


@batch_group.command("cancel")
@id_argument("batch_id")
@home_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_guard("batch cancel")
def batch_cancel_command(batch_id: str, home: str | None, as_json: bool) -> None:
    """Cancel a batch: items not started never start, running ones are cancelled."""
    st = existing_store(home, "batch cancel", f"no batch {batch_id!r}")
    if st.get_batch(batch_id) is None:
        _fail(f"flowmetal batch cancel: no batch {batch_id!r}", EXIT_USAGE)
    with _client(home) as c:
        r = c.call("batch_cancel", batch=batch_id)
    if as_json:
        _emit_json({k: r[k] for k in ("batch_id", "cancelled", "state")})
    elif r["cancelled"]:
        click.echo(f"batch {batch_id}: cancelled {r['cancelled']} item(s)")
    else:
        click.echo(f"batch {batch_id}: nothing to cancel (state {r['state']})")


@batch_group.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@home_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_guard("batch list")
def batch_list_command(limit: int, home: str | None, as_json: bool) -> None:
    """Batches, newest first."""
    from flowmetal.daemon.views import batch_view
    st = open_store(home, create=False)
    views = [batch_view(st, b.id, items=False) for b in st.list_batches(limit=limit)] \
        if st is not None else []
    if as_json:
        _emit_json(views)
        return
    if not views:
        click.echo("no batches")
        return
    rows = []
    for v in views:
        c = v["counts"]
        rows.append((v["id"], v["state"], v["flow"], v["size"], c.get("ok", 0),
                     c.get("failed", 0), c.get("running", 0), _ts(v["created"])))
    _table(rows, ("ID", "STATE", "FLOW", "SIZE", "OK", "FAILED", "RUNNING", "CREATED"))


# ====================================================================== resume via daemon

def resume_via_daemon(home: str | None, run_id: str) -> int | None:
    """`flowmetal resume` when a daemon serves the home: the daemon resumes the run
    (two runtimes must never host the same flows) and this streams it. None if no
    daemon is running (the caller resumes in the foreground)."""
    from flowmetal.daemon.client import Client, DaemonError, DaemonNotRunning
    try:
        # (A home that does not exist has no daemon; `resume` then says there is no
        # such run, without making the home.)
        c = Client.connect(_home(home, create=False))
    except DaemonNotRunning:
        return None
    with c:
        warn_quota_file("resume", _home(home), _KEEPS_LIMITS)
        try:
            return follow_run(c, c.stream("resume", run=run_id, wait=True), False,
                              _home(home))
        except DaemonError as e:
            click.echo(f"flowmetal resume: {e}", err=True)
            return EXIT_USAGE if e.kind in ("usage", "syntax") else EXIT_ERR


def register(main_group: click.Group) -> None:
    """Add the daemon's commands to the `flowmetal` group."""
    for cmd in (daemon_command, submit_command, status_command, logs_command,
                history_command, inspect_command, cancel_command, prune_command,
                batch_group):
        main_group.add_command(cmd)
