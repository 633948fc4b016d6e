"""`flowmetal run`, `resume` and `list`: the embedded runtime from the command line.

`run` and `resume` host the same actor runtime as the daemon, in this process: by
default FlowActors run in-process (``--workers 0``), which starts fastest and is
what short scripts want; ``--workers N`` hosts them in N worker processes instead.
Output is read back from the store — the durable record of what the run printed —
so a resumed run shows exactly what was acknowledged, never a line twice.
"""

from __future__ import annotations

import datetime as _dt
import sys
import threading
from typing import Any

import click

from .common import (EXIT_ERR, EXIT_OK, EXIT_USAGE, existing_store, home_option,
                     open_store, parse_arg_pairs,
                     read_source, report_error, root_flow_options, run_id_argument,
                     json_text, warn_quota_file, workers_option)

# What a broken quotas file means for a run hosted by this process.
_NO_LIMITS = "no quotas are enforced for this run"


class _Follower:
    """Copies a run's committed output from the store to stdout as it appears."""

    def __init__(self, store: Any, run_id: str):
        self.store = store
        self.run_id = run_id
        self.offset = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> "_Follower":
        self.thread.start()
        return self

    def _loop(self) -> None:
        while not self.stop.is_set():
            self.drain()
            self.stop.wait(0.02)

    def drain(self) -> None:
        while True:
            chunks = self.store.read_output(self.run_id, self.offset, limit=500)
            chunks = [c for c in chunks if c.offset >= self.offset]
            if not chunks:
                return
            for c in chunks:
                if c.stream == "stdout":
                    sys.stdout.write(c.text)
                else:
                    sys.stderr.write(c.text)
                self.offset = c.end
            sys.stdout.flush()

    def finish(self) -> None:
        self.stop.set()
        self.thread.join()
        self.drain()


def _show_result(result: Any) -> None:
    from ..prelude import Err
    from ..starlark.values import to_repr
    if isinstance(result, Err) and isinstance(result.error, str) and "\n" in result.error:
        # A Starlark traceback reads better as text than as a quoted string.
        sys.stdout.write("Err:\n" + result.error.rstrip("\n") + "\n")
    else:
        sys.stdout.write(to_repr(result) + "\n")
    sys.stdout.flush()


def _finish_run(rt: Any, store: Any, run_id: str) -> int:
    from actors import result_of
    follower = _Follower(store, run_id).start()
    try:
        w = rt.wait_run(run_id)
        # wait_run returns once the end is committed; join the follower after it.
    except KeyboardInterrupt:
        follower.finish()
        click.echo(f"interrupted; continue with: flowmetal resume {run_id}", err=True)
        rt.close()
        return 130
    follower.finish()
    result = result_of(w)
    _show_result(result)
    if rt.virtual and rt.clock.offset > 0:
        click.echo(f"virtual time advanced {rt.clock.offset:.3f} s", err=True)
    rt.close()
    if w.state == "crashed":
        return EXIT_ERR
    return EXIT_OK if result.ok else EXIT_ERR


@click.command("run")
@click.argument("file", type=click.Path(dir_okay=False))
@root_flow_options
@home_option
@click.option("--virtual-time", is_flag=True, help="Fire timers as soon as nothing "
              "else can run, advancing a virtual clock (long sleeps cost nothing).")
@workers_option(0, "this process")
@click.option("--max-steps", type=click.IntRange(min=1), default=None,
              help="Step budget of each flow (loop iterations).")
def run_command(file: str, flow_name: str | None, arg_pairs: tuple[str, ...],
                home: str | None, virtual_time: bool, workers: int,
                max_steps: int | None) -> None:
    """Run FILE durably: print its output and its root Result.

    Exits 0 for Ok, 1 for Err, 2 for usage or syntax errors.
    """
    from actors import HomeUnusable, RunError, Runtime, new_run_id
    from actors.memory import freeze_startup_objects
    from ..starlark import StarlarkError, StarlarkSyntaxError
    source = read_source(file)
    args = parse_arg_pairs(arg_pairs)
    if args and flow_name is None:
        raise click.UsageError("--arg needs --flow (the main block takes no arguments)")
    store = open_store(home)
    warn_quota_file("run", store.home, _NO_LIMITS)
    rt = Runtime(store, workers=workers, virtual_time=virtual_time, max_steps=max_steps)
    freeze_startup_objects()
    run_id = new_run_id()
    try:
        rt.create_run(file, source, flow=flow_name, args=args, run_id=run_id)
    except StarlarkSyntaxError as e:
        rt.close()
        sys.exit(report_error(e))
    except StarlarkError as e:
        rt.close()
        sys.exit(report_error(e))
    except HomeUnusable as e:
        rt.close()
        raise click.ClickException(str(e)) from None
    except RunError as e:
        rt.close()
        raise click.UsageError(str(e)) from None
    click.echo(f"run {run_id}", err=True)
    sys.exit(_finish_run(rt, store, run_id))


@click.command("resume")
@run_id_argument
@home_option
@click.option("--virtual-time", is_flag=True, help="As for `run`.")
@workers_option(0, "this process")
def resume_command(run_id: str, home: str | None, virtual_time: bool, workers: int) -> None:
    """Continue an interrupted (or crashed) run from its checkpoints, in the foreground.

    Prints the run's whole output and its root Result; exit codes as for `run`.
    """
    from actors import RunError, Runtime
    from actors.memory import freeze_startup_objects
    from store import StoreError
    from ..starlark import StarlarkError
    # A daemon serving this home owns its runs: it resumes them, this only watches.
    from .daemon_cmds import resume_via_daemon
    code = resume_via_daemon(home, run_id)
    if code is not None:
        sys.exit(code)
    store = existing_store(home, "resume", f"no run {run_id!r}")
    if store.get_run(run_id) is None:
        store.close()
        click.echo(f"flowmetal resume: no run {run_id!r} in {store.home}", err=True)
        sys.exit(EXIT_USAGE)
    warn_quota_file("resume", store.home, _NO_LIMITS)
    rt = Runtime(store, workers=workers, virtual_time=virtual_time)
    freeze_startup_objects()
    try:
        rt.resume_run(run_id)
    except (RunError, StoreError) as e:
        rt.close()
        click.echo(f"flowmetal resume: {e}", err=True)
        sys.exit(EXIT_ERR)
    except StarlarkError as e:
        rt.close()
        sys.exit(report_error(e))
    click.echo(f"run {run_id} resumed", err=True)
    sys.exit(_finish_run(rt, store, run_id))


def _ts(t: float | None) -> str:
    if t is None:
        return "-"
    return _dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


_LIST_STATES = ("running", "waiting", "live", "ok", "err", "cancelled", "crashed")


def _runs_in_states(store: Any, states: tuple[str, ...], limit: int) -> list:
    """Up to ``limit`` (run, shown state) pairs, newest first, in one of ``states``.
    Stored states are read from the store's state index; `running` and `waiting` are
    told apart by the run's flows, so they are read from the live states."""
    from flowmetal.daemon.views import run_state as _run_state
    wanted = set(states)
    if "live" in wanted:
        wanted |= {"running", "waiting"}
    if not wanted:
        return [(r, _run_state(store, r)) for r in store.list_runs(limit=limit)]
    stored = {s for s in wanted if s not in ("running", "waiting", "live")}
    if wanted & {"running", "waiting"}:
        stored |= {"pending", "running", "waiting"}
    runs = []
    for s in stored:
        runs += store.list_runs(s, limit=limit if s in wanted else 1 << 30)
    runs.sort(key=lambda r: r.created, reverse=True)
    out = []
    for r in runs:
        shown = _run_state(store, r)
        if shown in wanted:
            out.append((r, shown))
            if len(out) >= limit:
                break
    return out


@click.command("list")
@home_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--state", "states", multiple=True, metavar="STATE",
              type=click.Choice(_LIST_STATES),
              help="Only runs in this state (repeatable; `live` = running or waiting).")
def list_command(home: str | None, as_json: bool, limit: int, states: tuple[str, ...]) -> None:
    """List runs, newest first: id, state, root flow, started, ended, result."""
    store = open_store(home, create=False)   # none yet: no runs, and no home made
    rows = []
    for run, state in (_runs_in_states(store, states, limit) if store is not None else ()):
        root = store.get_flow(run.root_flow) if run.root_flow else None
        result = None
        if state == "crashed":
            result = f"crashed: {run.meta.get('error', '')}"
        elif root is not None and isinstance(root.result, dict):
            result = root.result.get("repr")
        rows.append({"id": run.id, "state": state, "file": run.file,
                     "root_flow": run.meta.get("flow") or (root.name if root else None),
                     "started": run.created, "ended": run.finished, "result": result})
    if as_json:
        click.echo(json_text(rows))
        return
    if not rows:
        click.echo("no runs")
        return
    header = ("ID", "STATE", "ROOT", "STARTED", "ENDED", "RESULT")
    table = [header] + [(r["id"], r["state"], r["root_flow"] or "-", _ts(r["started"]),
                         _ts(r["ended"]), _oneline(r["result"])) for r in rows]
    widths = [max(len(str(row[i])) for row in table) for i in range(5)]
    for row in table:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths)) + "  " + row[5])


def _oneline(text: str | None, width: int = 60) -> str:
    if text is None:
        return "-"
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[:width - 3] + "..."


def register(main_group: click.Group) -> None:
    """Add the runtime's commands to the `flowmetal` group."""
    main_group.add_command(run_command)
    main_group.add_command(resume_command)
    main_group.add_command(list_command)
