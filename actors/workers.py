"""Worker processes hosting FlowActors (multiprocessing, ``spawn``).

The parent's `Runtime` keeps routing, waits, timers and supervision; each worker
opens the store itself, hosts FlowActors and its own ExecActor, and commits its
flows' checkpoints directly (LMDB serves several processes). Parent and worker talk
over one duplex pipe with small tuples — flow ids, intents, result records; a flow's
state never travels, it is in the store.

A worker that dies (a crash, `kill -9`) is noticed through its process sentinel: the
flows it hosted are reported crashed to the Supervisor, which restarts each from its
last checkpoint on a live worker (a fresh one replaces the dead). A worker exits by
itself when its parent dies: the pipe reaches EOF, and a watchdog thread also notices
``os.getppid()`` changing — no orphans after a `kill -9` of the parent.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
import traceback
from multiprocessing.connection import wait as mp_wait
from typing import Any

from store import NOTSET

from .memory import freeze_startup_objects
from .pool import default_dispatcher, stop_soon
from .resources import STOP_GRACE

_NOTSET = "\x00NOTSET"  # NOTSET is compared by identity; pickle would copy it

# A worker's turns (see `actors.pool.Turn`) are longer than the in-process runtime's:
# the store has one writer for all processes, so a worker's commit waits for the
# others' and holds the writer through its own fsync — fewer, larger commits get
# more through (bench/runtime.py (b) with 2 workers: ~4,400 -> ~4,900 steps/s). A
# turn still ends as soon as nothing is ready, so a lone flow waits no longer.
TURN_SECONDS = 0.025
TURN_MAX = 512


def _enc(x: Any) -> Any:
    if x is NOTSET:
        return _NOTSET
    if isinstance(x, tuple):
        return tuple(_enc(e) for e in x)
    return x


def _dec(x: Any) -> Any:
    if isinstance(x, str) and x == _NOTSET:
        return NOTSET
    if isinstance(x, tuple):
        return tuple(_dec(e) for e in x)
    return x


# ====================================================================== parent side

class _Worker:
    def __init__(self, index: int, proc: Any, conn: Any):
        self.index = index
        self.proc = proc
        self.conn = conn
        self.lock = threading.Lock()
        self.flows: set[str] = set()
        # flow id -> children its commit in flight creates, until it reports that
        # commit (see `WorkerHub.committing_children`)
        self.unreported: dict[str, list] = {}
        self.alive = True

    def send(self, msg: tuple) -> bool:
        with self.lock:
            if not self.alive:
                return False
            try:
                self.conn.send(msg)
                return True
            except (OSError, EOFError, BrokenPipeError):
                return False


class WorkerPool:
    """N worker processes; flows are placed on the least loaded live one."""

    def __init__(self, runtime: Any, n: int):
        self.rt = runtime
        self.n = n
        self.ctx = multiprocessing.get_context("spawn")
        self.lock = threading.RLock()
        self.workers: list[_Worker] = []
        self.placement: dict[str, _Worker] = {}
        self.count = 0
        self.closed = False
        for _ in range(n):
            self._spawn()

    def _spawn(self) -> _Worker:
        parent_conn, child_conn = self.ctx.Pipe(duplex=True)
        st = self.rt.store
        proc = self.ctx.Process(
            target=worker_main, name=f"flowmetal-worker-{self.count}",
            args=(str(st.home), st.sync, child_conn, os.getpid(),
                  {"max_steps": self.rt.max_steps, "inline_calls": self.rt.inline_calls,
                   "offset": self.rt.clock.offset}),
            daemon=True)
        proc.start()
        child_conn.close()
        w = _Worker(self.count, proc, parent_conn)
        self.count += 1
        self.workers.append(w)
        threading.Thread(target=self._reader, args=(w,), daemon=True,
                         name=f"worker-reader-{w.index}").start()
        return w

    def pids(self) -> list[int]:
        with self.lock:
            return [w.proc.pid for w in self.workers if w.alive]

    def _pick(self) -> _Worker:
        live = [w for w in self.workers if w.alive]
        while len(live) < self.n and not self.closed:
            live.append(self._spawn())
        return min(live, key=lambda w: len(w.flows))

    # ---------------------------------------------------------------- routing
    def host(self, flow_id: str, first: tuple, image: bytes | None = None,
             parent: str | None = None, name: str = "", fresh: bool = False,
             creation: Any = None) -> None:
        """Place the flow on a worker; `creation` is a new run's creation batch for
        the root's first commit (see `actors.creation`)."""
        with self.lock:
            if self.closed:
                return
            old = self.placement.get(flow_id)
            if old is not None and old.alive:
                old.send(("unhost", flow_id))
                old.flows.discard(flow_id)
            w = self._pick()
            self.placement[flow_id] = w
            w.flows.add(flow_id)
        if not w.send(("host", flow_id, _enc(first), image, parent, name, fresh, creation)):
            self._died(w)

    def send(self, flow_id: str, message: tuple) -> None:
        with self.lock:
            w = self.placement.get(flow_id)
        if w is None or not w.alive:
            self.host(flow_id, ("load_then", message))
            return
        if not w.send(("msg", flow_id, _enc(message))):
            self._died(w)

    def unhost(self, flow_id: str) -> None:
        with self.lock:
            w = self.placement.pop(flow_id, None)
            if w is not None:
                w.flows.discard(flow_id)
        if w is not None:
            w.send(("unhost", flow_id))

    def cancel_actions(self, flow_id: str) -> None:
        """Stop the commands the (cancelled) flow runs, on whichever worker runs them."""
        for w in list(self.workers):
            w.send(("cancel", flow_id))

    def set_offset(self, offset: float) -> None:
        for w in list(self.workers):
            w.send(("offset", offset))

    # ---------------------------------------------------------------- events
    def _reader(self, w: _Worker) -> None:
        while True:
            ready = mp_wait([w.conn, w.proc.sentinel])
            if w.conn in ready:
                try:
                    msg = w.conn.recv()
                except (EOFError, OSError):
                    break
                try:
                    self._event(w, msg)
                except Exception:  # noqa: BLE001 - keep serving the other flows
                    traceback.print_exc()
                continue
            break
        self._died(w)

    def _event(self, w: _Worker, msg: tuple) -> None:
        rt = self.rt
        kind = msg[0]
        if kind == "suspended":
            _, flow_id, seq, k, info, children = msg
            w.unreported.pop(flow_id, None)
            rt.suspended(flow_id, seq, k, info, [(c, n, None) for c, n in children])
        elif kind == "finished":
            _, flow_id, parent, state, result, children = msg
            w.unreported.pop(flow_id, None)
            rt.finished(flow_id, parent, state, result, [(c, n, None) for c, n in children])
        elif kind == "committing":
            w.unreported[msg[1]] = msg[2]
        elif kind == "left_start":
            rt.left_start(msg[1])
        elif kind == "crashed":
            _, flow_id, error = msg
            with self.lock:
                if self.placement.get(flow_id) is w:
                    del self.placement[flow_id]
                w.flows.discard(flow_id)
            rt.crashed(flow_id, error)
            # Its commit may have stored children before the crash (a failure after
            # it): they start here; its restart then finds them running.
            rt.recover_unreported(w.unreported.pop(flow_id, ()))
        elif kind == "reissue":
            _, flow_id, seq, intent = msg
            rt.reissue(flow_id, seq, intent)
        elif kind == "created":
            rt.created(msg[1])

    def _died(self, w: _Worker) -> None:
        with self.lock:
            if not w.alive:
                return
            w.alive = False
            lost = [f for f, x in self.placement.items() if x is w]
            for f in lost:
                del self.placement[f]
            closed = self.closed
        try:
            w.conn.close()
        except OSError:
            pass
        if closed:
            return
        try:
            self.rt.store.reader_check()  # its read slots are stale now
        except Exception:  # noqa: BLE001
            pass
        code = w.proc.exitcode
        for f in lost:
            self.rt.crashed(f, f"worker process {w.proc.pid} died (exit code {code})")
        # Children a commit of its stored that it never reported: nothing else would
        # start them (their parents, restarted, wait on them).
        self.rt.recover_unreported([c for ids in w.unreported.values() for c in ids])
        w.unreported.clear()

    def close(self) -> None:
        with self.lock:
            self.closed = True
            workers = list(self.workers)
        for w in workers:
            w.send(("stop",))
        # Each stops its commands first (up to STOP_GRACE), then exits.
        deadline = time.monotonic() + STOP_GRACE + 3
        for w in workers:
            w.proc.join(max(0.0, deadline - time.monotonic()))
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join(1)


# ====================================================================== worker side

class WorkerHub:
    """The hub FlowActors in a worker report to: exec runs here, the rest goes to
    the parent."""

    def __init__(self, store: Any, conn: Any, options: dict):
        from .flow import CommitGate
        from .resources import ExecActor
        self.store = store
        self.commits = CommitGate(store, overlap=False)
        self.conn = conn
        self.send_lock = threading.Lock()
        self.max_steps = options.get("max_steps")
        self.inline_calls = options.get("inline_calls", True)
        self.offset = options.get("offset", 0.0)
        self.actors: dict[str, Any] = {}
        self.lock = threading.Lock()
        self.exec = ExecActor.start(self.deliver)
        # Secrets for exec, fctx.quota, output and step quotas (actors.services).
        from .services import QuotaHooks, process_setup
        self.quota = QuotaHooks(store, process_setup(store.home))

    def count_output(self, run_id: str, text: str) -> None:
        self.quota.count_output(run_id, text)

    def quota_error(self, err: Any) -> str | None:
        return self.quota.quota_error(err)

    def now(self) -> float:
        return time.time() + self.offset

    def _send(self, msg: tuple) -> None:
        with self.send_lock:
            try:
                self.conn.send(msg)
            except (OSError, EOFError, BrokenPipeError):
                os._exit(0)  # the parent is gone

    def suspended(self, flow_id: str, seq: int, kind: str, info: Any, children: list,
                  runner: Any = None) -> None:
        if kind == "exec":
            self.exec.tell(("exec", flow_id, seq, info.to_json()))
            info = None
        elif kind == "sleep":
            self._stop(flow_id)
        self._send(("suspended", flow_id, seq, kind, info, [(c, n) for c, n, _ in children]))

    def committing_children(self, flow_id: str, ids: list) -> None:
        # Told before the commit, so that if this process dies between the commit
        # and its report the parent recovers the children it stored.
        self._send(("committing", flow_id, ids))

    def finished(self, flow_id: str, parent: str | None, state: str, result: dict,
                 children: list) -> None:
        self._stop(flow_id)
        self._send(("finished", flow_id, parent, state, result,
                    [(c, n) for c, n, _ in children]))

    def crashed(self, flow_id: str, error: str) -> None:
        with self.lock:
            self.actors.pop(flow_id, None)
        self._send(("crashed", flow_id, error))

    def created(self, run_id: str) -> None:
        self._send(("created", run_id))

    def reissue(self, flow_id: str, seq: int, intent: dict, actor: Any = None) -> None:
        if intent.get("kind") == "exec":
            # Run here, as a first issue is; the parent still hears that the flow has
            # left its start (a child handed over mid-call is started by this load).
            self._send(("left_start", flow_id))
            self.exec.tell(("exec", flow_id, seq, intent))
            return
        if intent.get("kind") == "sleep":
            self._stop(flow_id)
        self._send(("reissue", flow_id, seq, intent))

    def deliver(self, flow_id: str, seq: int, outcome: tuple) -> None:
        self.tell(flow_id, ("resume", seq, outcome))

    def tell(self, flow_id: str, message: tuple) -> None:
        from .flow import FlowActor
        with self.lock:
            ref = self.actors.get(flow_id)
            if ref is not None and ref.is_alive():
                ref.tell(message)
                return
            self.actors[flow_id] = FlowActor.start(self, flow_id, None, ("load_then", message))

    def host(self, flow_id: str, first: tuple, image: bytes | None, parent: str | None,
             name: str, fresh: bool = False, creation: Any = None) -> None:
        from .codec import loads_image
        from .flow import FlowActor, FlowRunner
        runner = None
        if image is not None:
            runner = FlowRunner(self, flow_id, parent=parent, name=name,
                                image=loads_image(image, self.store.get_code), fresh=fresh)
            runner.creation = creation
        with self.lock:
            old = self.actors.pop(flow_id, None)
            if old is not None:
                stop_soon(old)
            self.actors[flow_id] = FlowActor.start(self, flow_id, runner, first)

    def _stop(self, flow_id: str) -> None:
        with self.lock:
            ref = self.actors.pop(flow_id, None)
        if ref is not None:
            stop_soon(ref)


def _watch_parent(parent_pid: int, on_orphaned: list) -> None:
    while True:
        if os.getppid() != parent_pid:
            # The parent died (kill -9 included): stop our commands, so that their
            # actions, issued again by the next runtime, never run twice at once.
            for fn in on_orphaned:
                try:
                    fn()
                except Exception:  # noqa: BLE001 - exiting regardless
                    pass
            os._exit(0)
        time.sleep(0.2)


def _stop_commands(hub: "WorkerHub") -> None:
    hub.exec.ask(("shutdown", STOP_GRACE), timeout=STOP_GRACE + 2)


def worker_main(home: str, sync: bool, conn: Any, parent_pid: int, options: dict) -> None:
    """Entry point of a worker process."""
    on_orphaned: list = []   # filled once the hub exists
    threading.Thread(target=_watch_parent, args=(parent_pid, on_orphaned), daemon=True).start()
    pool = default_dispatcher()
    pool.turn_seconds, pool.turn_max = TURN_SECONDS, TURN_MAX
    from store import Store
    store = Store.open(home, sync=sync)
    hub = WorkerHub(store, conn, options)
    on_orphaned.append(lambda: _stop_commands(hub))
    freeze_startup_objects()
    try:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                break
            kind = msg[0]
            if kind == "host":
                _, flow_id, first, image, parent, name, fresh, creation = msg
                hub.host(flow_id, _dec(first), image, parent, name, fresh, creation)
            elif kind == "msg":
                hub.tell(msg[1], _dec(msg[2]))
            elif kind == "unhost":
                hub._stop(msg[1])
            elif kind == "cancel":
                hub.exec.tell(("cancel", msg[1]))
            elif kind == "offset":
                hub.offset = msg[1]
            elif kind == "stop":
                break
    finally:
        try:
            _stop_commands(hub)   # its commands stop with it (see ExecActor.shutdown)
        except Exception:  # noqa: BLE001
            pass
        try:
            store.close()
        finally:
            os._exit(0)
