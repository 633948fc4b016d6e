"""`flowmetal send RUN_OR_FLOW_ID JSON`: deliver a message into a flow's inbox.

The way outside systems signal a running flow. The target is a flow id
(``r2026….3``) or a run id, which means the run's root flow. The message is JSON
(an object, array, string, number, true/false/null) and arrives as the equivalent
Starlark value — what `fctx.actions.receive()` returns, or an event flow's
`fctx.args.event`.

With a daemon serving the home, the daemon delivers it (and wakes the flow at once).
Without one, the message is appended to the store directly; a `flowmetal run`
hosting the flow in another process notices it within a fraction of a second.
``--id`` makes delivery idempotent: a second send with the same id is a no-op, so a
script may retry safely.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from ..jsondepth import MAX_JSON_DEPTH, loads_strict, nesting_exceeds
from .common import (EXIT_ERR, EXIT_OK, EXIT_USAGE, check_id,  # noqa: F401
                     home_option, home_path, id_argument, is_utf8,
                     shown_path)


class SendError(Exception):
    """The message could not be delivered: one line, and the exit status (1, or 2
    when the target names no run or flow — as every command taking an id does)."""

    def __init__(self, message: str, status: int = EXIT_ERR):
        super().__init__(message)
        self.status = status


def _home(home: str | None) -> Path:
    # Not made if missing: there is nothing to send to there.
    return home_path(home, create=False)


def parse_message(text: str) -> Any:
    """The JSON text as a message body (plain data), or a usage error."""
    if not is_utf8(text):
        raise click.UsageError("the message is not valid UTF-8")
    if nesting_exceeds(text, MAX_JSON_DEPTH):
        raise click.UsageError(f"the message is nested more than {MAX_JSON_DEPTH} "
                               "levels deep") from None
    try:
        value = loads_strict(text)
    except ValueError as e:
        raise click.UsageError(f"the message is not valid JSON: {e}") from None
    except RecursionError:  # belt and braces: the depth check comes first
        raise click.UsageError("the message is nested too deeply") from None
    try:
        # A lone surrogate (JSON's "\ud800") is no text: the daemon's protocol and
        # the flows' output could not carry it.
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise click.UsageError("the message holds a lone surrogate (\\ud800-\\udfff), "
                               "which is not text") from None
    return value


def resolve_target(store: Any, target: str) -> str:
    """A flow id from a flow id or a run id (its root flow)."""
    if store.get_flow(target) is not None:
        return target
    run = store.get_run(target)
    if run is not None and run.root_flow:
        return run.root_flow
    raise SendError(f"no run or flow {target!r} in {store.home}", EXIT_USAGE)


def deliver_to_store(home: Path, target: str, body: Any, msg_id: str | None) -> dict:
    """Deliver without a daemon: append to the store (see the module docstring)."""
    from actors.inbox import InboxError, append_external, check_size
    from store import Store, StoreError
    err = check_size(body)   # before opening anything
    if err is not None:
        raise SendError(err)
    sync = os.environ.get("FLOWMETAL_SYNC", "1") not in ("0", "false", "no")
    try:
        store = Store.open(home, sync=sync, create=False)
    except StoreError as e:
        raise SendError(f"cannot open the store: {e}") from None
    except OSError as e:   # (under a file, say)
        raise SendError(f"cannot open the store in {shown_path(home)}: "
                        f"{e.strerror or e}") from None
    try:
        flow_id = resolve_target(store, target)
        try:
            seq = append_external(store, flow_id, body, msg_id)
        except InboxError as e:
            raise SendError(str(e)) from None
        return {"flow": flow_id, "seq": seq, "duplicate": seq is None}
    finally:
        store.close()


def deliver(home: Path, target: str, body: Any, msg_id: str | None) -> dict:
    """Deliver through the daemon if one serves the home, else into the store."""
    from flowmetal.daemon.client import Client, DaemonError, DaemonNotRunning
    try:
        c = Client.connect(home)
    except DaemonNotRunning:
        return deliver_to_store(home, target, body, msg_id)
    with c:
        try:
            r = c.call("send", target=target, body=body, msg_id=msg_id)
        except DaemonError as e:
            if e.kind == "protocol" and "unknown op" in str(e):
                # An older daemon without the op: the store path is equally durable.
                return deliver_to_store(home, target, body, msg_id)
            raise SendError(str(e), EXIT_USAGE if e.kind == "usage" else EXIT_ERR) from None
    return {"flow": r.get("flow"), "seq": r.get("seq"), "duplicate": bool(r.get("duplicate"))}


@click.command("send")
@id_argument("target", metavar="RUN_OR_FLOW_ID")
@click.argument("message", metavar="JSON")
@click.option("--id", "msg_id", default=None, metavar="ID",
              help="Message id: sending the same id again delivers nothing twice.")
@home_option
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
def send_command(target: str, message: str, msg_id: str | None, home: str | None,
                 as_json: bool) -> None:
    """Deliver the JSON MESSAGE into the inbox of a flow (a run id means its root flow).

    Exits 0 once the message is stored durably, 1 if it cannot be delivered (the
    flow has ended, its inbox is closed), 2 for usage errors such as invalid JSON or
    an id that names no run or flow.
    """
    body = parse_message(message)
    if msg_id is not None and not msg_id.strip():
        raise click.UsageError("--id must not be empty")
    if msg_id is not None:
        check_id(msg_id, "--id")
    try:
        r = deliver(_home(home), target, body, msg_id)
    except SendError as e:
        click.echo(f"flowmetal send: {e}", err=True)
        sys.exit(e.status)
    except (click.ClickException, SystemExit):
        raise
    except KeyboardInterrupt:
        click.echo("flowmetal send: interrupted", err=True)
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - a traceback is never the answer
        click.echo(f"flowmetal send: {type(e).__name__}: {e}", err=True)
        sys.exit(EXIT_ERR)
    if as_json:
        click.echo(json.dumps(r))
    elif r["duplicate"]:
        click.echo(f"flow {r['flow']}: message {msg_id} was delivered before")
    else:
        click.echo(f"sent to flow {r['flow']} (message {r['seq']})")
    note = _waiting_main_block_note(_home(home), r["flow"])
    if note is not None:
        click.echo(note, err=True)


def _waiting_main_block_note(home: Path, flow_id: str) -> str | None:
    """A word when the message went to a file's `__main__` block that waits on other
    flows: it holds the message until it calls receive(), which is rarely what was
    meant (the flow it called, an event flow, say, has an inbox of its own)."""
    from store import Store, StoreError
    try:
        store = Store.open(home, sync=False, create=False)
    except StoreError:
        return None
    try:
        f = store.get_flow(flow_id)
        if f is None or f.name != "__main__" or f.state != "waiting":
            return None
        kids: list[str] = []
        for it in store.intents(flow_id):
            req = it.request if isinstance(it.request, dict) else {}
            if req.get("kind") in ("call", "wait"):
                kids += [k for k in req.get("children", []) if isinstance(k, str)]
        live = [(k, c.name) for k in kids
                for c in [store.get_flow(k)] if c is not None and c.state == "waiting"]
        if not live:
            return None
        named = ", ".join(f"{k} ({name})" for k, name in live[:3])
        return (f"note: flow {flow_id} is the file's __main__ block, waiting on {named}; "
                f"it gets this message only if it calls receive(). To message "
                f"{'that flow' if len(live) == 1 else 'one of those'}, send to its id.")
    finally:
        store.close()


def register(main_group: click.Group) -> None:
    """Add `flowmetal send` to the `flowmetal` group."""
    main_group.add_command(send_command)
