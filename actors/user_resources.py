"""User resources: things a flow holds for its whole life — a scratch directory, a
local server — opened before its implementation runs and closed when it ends.

    flow(implementation = _impl,
         resources = {"work": lambda fctx: tempdir(),
                      "db": lambda fctx: process(["redis-server", "--port", "7001"],
                                                 port = 7001)})

The protocol
------------
A resource *kind* is an object with a ``kind`` name and three methods (see
`ResourceKind`), each given a `ResourceContext` (flow id, resource name, home, a
unique token, the secrets source) and the spec's ``params`` (plain data):

``open(ctx, params) -> state``
    Acquire the resource; return its *state*: JSON-able data saying how to find it
    again (a path, a pid). Raise `ResourceError` with a one-line reason on failure.
``reopen(ctx, params, state) -> state``
    After a crash: make the resource usable again from its recorded state —
    reattach to what survived, re-acquire what did not. Idempotent.
``close(ctx, params, state) -> None``
    Release it. Idempotent, and must tolerate a resource that is already gone.
``handle(ctx, params, state) -> value``
    The Starlark value the flow sees as ``fctx.resources.NAME``. It must not depend
    on anything `reopen` may change (a process handle shows its argv, not its pid),
    because the flow's checkpoint keeps the handle it was given first.

Durability
----------
What a flow holds is recorded in a *manifest*, ``HOME/resources/<flow>.json``,
written (atomically: temp file + rename) before and after every open, so that a
`kill -9` at any moment leaves enough to find and close everything:

* the runtime opens a flow's resources as an action (`ResourceManager.open_all`):
  its outcome, the handles, is journaled like any result; re-issuing the action
  after a crash reopens what the manifest already lists instead of opening twice;
* when a flow is recovered from its checkpoint, `reopen_all` runs first;
* when a flow ends — Ok, Err, cancelled — `close_all` closes everything and removes
  the manifest; `sweep` (at runtime start-up) closes the resources of flows that
  ended while no runtime was there to close them (e.g. cancelled from another
  process, or killed between their end and the close).

Built-in kinds: ``tempdir`` (`TempDirKind`) and ``process`` (`ProcessKind`). More can
be added with `register_kind`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets as _random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

from flowmetal.secrets import SecretError, SecretSource, environ_without_secrets, reveal

log = logging.getLogger("flowmetal.resources")

__all__ = ["ResourceError", "ResourceContext", "ResourceKind", "TempDirKind", "ProcessKind",
           "ResourceManager", "register_kind", "KINDS", "RESOURCES_DIR", "TOKEN_ENV"]

RESOURCES_DIR = "resources"
TOKEN_ENV = "FLOWMETAL_RESOURCE_TOKEN"   # marks a process as ours (see _owned)
STOP_GRACE = 5.0                         # seconds between SIGTERM and SIGKILL


class ResourceError(Exception):
    """A resource could not be opened (one-line reason; the caller names it)."""


@dataclass
class ResourceContext:
    flow_id: str
    name: str
    home: Path
    token: str
    secrets: SecretSource


class ResourceKind(Protocol):
    kind: str

    def open(self, ctx: ResourceContext, params: dict) -> dict: ...

    def reopen(self, ctx: ResourceContext, params: dict, state: dict) -> dict: ...

    def close(self, ctx: ResourceContext, params: dict, state: dict) -> None: ...

    def handle(self, ctx: ResourceContext, params: dict, state: dict) -> Any: ...


# ---------------------------------------------------------------- tempdir

class TempDirKind:
    """A private directory (0700) in the system's temp dir, removed at close."""

    kind = "tempdir"

    def open(self, ctx: ResourceContext, params: dict) -> dict:
        prefix = "flowmetal-" + re.sub(r"[^A-Za-z0-9_-]", "_", ctx.name)[:40] + "-"
        try:
            path = tempfile.mkdtemp(prefix=prefix)   # mkdtemp makes it 0700
        except OSError as e:
            raise ResourceError(f"cannot create a temporary directory: {e.strerror or e}") \
                from None
        return {"path": path}

    def reopen(self, ctx: ResourceContext, params: dict, state: dict) -> dict:
        path = Path(state["path"])
        if not path.is_dir():
            # Gone (a reboot cleaned /tmp): the same path again, empty — the handle
            # in the flow's checkpoint names it. mkdir fails if someone else took it.
            try:
                path.mkdir(mode=0o700, parents=False)
            except OSError as e:
                raise ResourceError(f"cannot recreate {path}: {e.strerror or e}") from None
        return state

    def close(self, ctx: ResourceContext, params: dict, state: dict) -> None:
        path = state.get("path")
        if path:
            shutil.rmtree(path, ignore_errors=True)

    def handle(self, ctx: ResourceContext, params: dict, state: dict) -> Any:
        from flowmetal.actor_prelude import TempDirHandle
        return TempDirHandle(ctx.name, state["path"])


# ---------------------------------------------------------------- process

def _owned(pid: int, token: str) -> bool:
    """Whether process `pid` is alive and is the one we started (its environment
    carries our token): never signal a recycled pid."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    except PermissionError:
        return False   # another user's process: certainly not ours
    except OSError:
        return False
    if f"{TOKEN_ENV}={token}".encode() not in env.split(b"\0"):
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state != b"Z"
    except (OSError, IndexError):
        return False


def _find_by_token(token: str) -> list[int]:
    """Pids of live processes carrying the token (a crash between starting a process
    and recording its pid leaves only this to find it by)."""
    out = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return out
    for e in entries:
        if e.isdigit() and _owned(int(e), token):
            out.append(int(e))
    return out


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class ProcessKind:
    """A long-running subprocess in its own session, stopped (SIGTERM, then SIGKILL
    after `STOP_GRACE` s, to its whole process group) at close. Its output goes to
    /dev/null: a server's log could hold the secrets it was given."""

    kind = "process"

    def _start(self, ctx: ResourceContext, params: dict) -> int:
        env = environ_without_secrets()
        try:
            env.update(reveal(params.get("env") or {}, ctx.secrets))
        except SecretError as e:
            raise ResourceError(str(e)) from None
        env[TOKEN_ENV] = ctx.token
        argv = params["argv"]
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, env=env, cwd=params.get("cwd"),
                                    start_new_session=True)
        except FileNotFoundError:
            raise ResourceError(f"command not found: {argv[0]}") from None
        except PermissionError:
            raise ResourceError(f"permission denied: {argv[0]}") from None
        except OSError as e:
            raise ResourceError(f"cannot run {argv[0]}: {e.strerror or e}") from None
        # Reap it in the background if it exits while we live, so it never lingers as
        # a zombie (after a restart it is not our child and init reaps it).
        threading.Thread(target=proc.wait, daemon=True,
                         name=f"reap-{proc.pid}").start()
        port = params.get("port")
        if port:
            deadline = time.monotonic() + (params.get("ready_timeout") or 10.0)
            while not _port_open(port):
                if proc.poll() is not None:
                    raise ResourceError(f"{argv[0]} exited with status {proc.returncode} "
                                        f"before listening on port {port}")
                if time.monotonic() > deadline:
                    self._stop(proc.pid, ctx.token)
                    raise ResourceError(f"{argv[0]} did not listen on port {port} within "
                                        f"{params.get('ready_timeout') or 10.0:g} s")
                time.sleep(0.05)
        elif proc.poll() is not None:
            raise ResourceError(f"{argv[0]} exited at once with status {proc.returncode}")
        return proc.pid

    def open(self, ctx: ResourceContext, params: dict) -> dict:
        return {"pid": self._start(ctx, params), "token": ctx.token}

    def reopen(self, ctx: ResourceContext, params: dict, state: dict) -> dict:
        token = state.get("token") or ctx.token
        pid = state.get("pid")
        if pid is not None and _owned(pid, token):
            return state   # it survived the crash: reattach
        live = _find_by_token(token)
        if live:
            return {"pid": live[0], "token": token}
        ctx.token = token
        return {"pid": self._start(ctx, params), "token": token}

    @staticmethod
    def _stop(pid: int, token: str) -> None:
        if not _owned(pid, token):
            return
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        except OSError:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                return
        deadline = time.monotonic() + STOP_GRACE
        while time.monotonic() < deadline:
            if not _owned(pid, token):
                return
            time.sleep(0.02)
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def close(self, ctx: ResourceContext, params: dict, state: dict) -> None:
        token = state.get("token") or ctx.token
        pids = [state["pid"]] if state.get("pid") is not None else []
        pids += [p for p in _find_by_token(token) if p not in pids]
        for pid in pids:
            self._stop(pid, token)

    def handle(self, ctx: ResourceContext, params: dict, state: dict) -> Any:
        from flowmetal.actor_prelude import ProcessHandle
        return ProcessHandle(ctx.name, tuple(params["argv"]), params.get("port"))


KINDS: dict[str, ResourceKind] = {"tempdir": TempDirKind(), "process": ProcessKind()}


def register_kind(kind: ResourceKind) -> None:
    """Add a resource kind (its `kind` name must be new)."""
    if kind.kind in KINDS:
        raise ValueError(f"resource kind {kind.kind!r} exists already")
    KINDS[kind.kind] = kind


# ---------------------------------------------------------------- the manager

def _flow_key(flow_id: str) -> str:
    # Flow ids are [A-Za-z0-9.]; anything else is mapped away so that a manifest
    # name can never leave the resources directory.
    return re.sub(r"[^A-Za-z0-9._-]", "_", flow_id).lstrip(".") or "_"


class ResourceManager:
    """Opens, reopens and closes the resources of flows; one per runtime process.
    Thread-safe per flow (a lock per flow id)."""

    def __init__(self, home: str | os.PathLike, secrets: SecretSource | None = None):
        self.home = Path(home)
        self.dir = self.home / RESOURCES_DIR
        self.secrets = secrets or SecretSource(self.home)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def _lock(self, flow_id: str) -> threading.Lock:
        with self._locks_lock:
            lk = self._locks.get(flow_id)
            if lk is None:
                lk = self._locks[flow_id] = threading.Lock()
            return lk

    # ---------------------------------------------------------------- manifests
    def manifest_path(self, flow_id: str) -> Path:
        return self.dir / (_flow_key(flow_id) + ".json")

    def read_manifest(self, flow_id: str) -> dict | None:
        try:
            data = json.loads(self.manifest_path(flow_id).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            log.warning("flow %s: unreadable resource manifest (%s)", flow_id, e)
            return None
        return data if isinstance(data, dict) else None

    def _write_manifest(self, flow_id: str, data: dict) -> None:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.manifest_path(flow_id)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def flows_with_resources(self, prefix: str = "") -> list[str]:
        """The flows that hold resources (whose ids start with `prefix`, if given)."""
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        out = []
        start = _flow_key(prefix) if prefix else ""
        for n in names:
            if n.endswith(".json") and n.startswith(start):
                m = self.read_manifest_file(self.dir / n)
                if m is not None and isinstance(m.get("flow"), str):
                    out.append(m["flow"])
        return out

    @staticmethod
    def read_manifest_file(path: Path) -> dict | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _ctx(self, flow_id: str, name: str, entry: dict | None = None) -> ResourceContext:
        token = (entry or {}).get("token") or _random.token_hex(12)
        return ResourceContext(flow_id, name, self.home, token, self.secrets)

    # ---------------------------------------------------------------- operations
    def open_all(self, flow_id: str, specs: dict[str, dict]) -> tuple[dict | None, str | None]:
        """Open the flow's resources (``specs``: name -> {"kind", "params"}), in order.
        Returns (handles, None), or (None, error) after closing what was opened — the
        error names the resource. Resources the manifest lists already (a re-issued
        open) are reopened, not opened twice."""
        with self._lock(flow_id):
            man = self.read_manifest(flow_id) or {"flow": flow_id, "resources": {}}
            entries: dict = man.setdefault("resources", {})
            handles: dict[str, Any] = {}
            for name, spec in specs.items():
                kind = KINDS.get(spec.get("kind"))
                params = spec.get("params") or {}
                if kind is None:
                    err = f"resource {name}: unknown kind {spec.get('kind')!r}"
                    self._close_entries(flow_id, entries)
                    self._remove_manifest(flow_id)
                    return None, err
                entry = entries.get(name)
                try:
                    if entry is not None and entry.get("kind") == kind.kind and \
                            entry.get("state") is not None:
                        ctx = self._ctx(flow_id, name, entry)
                        state = kind.reopen(ctx, params, entry["state"])
                    else:
                        ctx = self._ctx(flow_id, name)
                        # Recorded before it exists: a crash in open leaves the token,
                        # by which close finds what open started.
                        entries[name] = {"kind": kind.kind, "params": params,
                                         "token": ctx.token, "state": None}
                        self._write_manifest(flow_id, man)
                        state = kind.open(ctx, params)
                    entries[name] = {"kind": kind.kind, "params": params,
                                     "token": ctx.token, "state": state}
                    self._write_manifest(flow_id, man)
                    handles[name] = kind.handle(ctx, params, state)
                except ResourceError as e:
                    err = f"resource {name}: cannot open {kind.kind}: {e}"
                except Exception as e:  # noqa: BLE001 - a kind's bug is the flow's error
                    log.exception("flow %s: resource %s failed to open", flow_id, name)
                    err = f"resource {name}: cannot open {kind.kind}: {type(e).__name__}: {e}"
                else:
                    continue
                self._close_entries(flow_id, entries)
                self._remove_manifest(flow_id)
                return None, err
            return handles, None

    def reopen_all(self, flow_id: str) -> str | None:
        """Reopen whatever the flow holds (after a crash). None, or an error naming the
        resource that could not be reopened."""
        with self._lock(flow_id):
            man = self.read_manifest(flow_id)
            if not man:
                return None
            entries = man.get("resources") or {}
            for name, entry in entries.items():
                kind = KINDS.get(entry.get("kind"))
                if kind is None:
                    continue
                ctx = self._ctx(flow_id, name, entry)
                params = entry.get("params") or {}
                try:
                    if entry.get("state") is None:
                        # Crashed inside open: close whatever it started, open anew.
                        kind.close(ctx, params, {"token": ctx.token})
                        entry["state"] = kind.open(ctx, params)
                    else:
                        entry["state"] = kind.reopen(ctx, params, entry["state"])
                except ResourceError as e:
                    return f"resource {name}: cannot reopen {kind.kind}: {e}"
                except Exception as e:  # noqa: BLE001
                    log.exception("flow %s: resource %s failed to reopen", flow_id, name)
                    return f"resource {name}: cannot reopen {kind.kind}: {type(e).__name__}: {e}"
                self._write_manifest(flow_id, man)
            return None

    def close_all(self, flow_id: str) -> None:
        """Close everything the flow holds (reverse order of opening) and forget it.
        Never raises: a resource that fails to close is logged."""
        with self._lock(flow_id):
            man = self.read_manifest(flow_id)
            if man:
                self._close_entries(flow_id, man.get("resources") or {})
            self._remove_manifest(flow_id)
        with self._locks_lock:
            self._locks.pop(flow_id, None)

    def _close_entries(self, flow_id: str, entries: dict) -> None:
        for name in reversed(list(entries)):
            entry = entries[name]
            kind = KINDS.get(entry.get("kind"))
            if kind is None:
                continue
            ctx = self._ctx(flow_id, name, entry)
            try:
                kind.close(ctx, entry.get("params") or {}, entry.get("state") or
                           {"token": ctx.token})
            except Exception:  # noqa: BLE001 - close the others regardless
                log.exception("flow %s: resource %s failed to close", flow_id, name)

    def _remove_manifest(self, flow_id: str) -> None:
        try:
            self.manifest_path(flow_id).unlink()
        except FileNotFoundError:
            pass
        except OSError as e:
            log.warning("flow %s: cannot remove its resource manifest (%s)", flow_id, e)

    def sweep(self, is_live: Callable[[str], bool]) -> list[str]:
        """Close the resources of every flow that is no longer live; their ids."""
        closed = []
        for flow_id in self.flows_with_resources():
            try:
                live = is_live(flow_id)
            except Exception:  # noqa: BLE001 - when in doubt, keep the resource
                live = True
            if not live:
                self.close_all(flow_id)
                closed.append(flow_id)
        return closed
