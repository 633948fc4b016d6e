"""The runtime: runs, recovery, and the routing between flows and resources.

One `Runtime` serves the embedded runner (`flowmetal run` / `resume`) and, later,
the daemon. It owns the resource actors (timers, exec), the Supervisor, and the
placement of FlowActors: in this process (``workers=0``) or in worker processes
(``workers=N``, see `actors.workers`). It is the hub FlowRunners report to after
each commit; it never writes a flow's state itself except to mark a run crashed.

Bookkeeping kept here is a cache of the store: which flow waits on which children,
which flows are busy (running, or waiting on a command) — used for virtual time,
which only advances when nothing is busy — and which runs are being watched.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from flowmetal.loading import FileLoader, check_loads
from flowmetal.prelude import FlowDef, FlowFailed, packages, predeclared
from flowmetal.starlark import Done, Failed, Suspended, start
from store import NOTSET, LIVE_STATES, Batch, Store, code_hash

from .memory import release_free_memory
from .pool import stop_soon
from .codec import FlowImage, dumps_image, result_from_record
from .creation import OnCreated, PendingCreations
from .ownership import ClaimFailed, RunBusy, RunOwnership
from .flow import CommitGate, FlowActor, FlowRunner, new_flow_thread, run_of
from .resources import STOP_GRACE, ExecActor, TimerActor
from .services import SERVICE_KINDS, Services
from .supervisor import Supervisor

log = logging.getLogger(__name__)

# Terminal for good: a `crashed` flow can be resumed, these cannot.
ENDED_STATES = frozenset({"ok", "err", "cancelled"})


# How often `wait_run` looks in the store for a run ended by another process (s).
ELSEWHERE_CHECK = 0.5

# New flows running towards their first suspension at once (see `Runtime.starting`):
# enough to keep group commit busy, few enough to bound memory.
MAX_STARTING = 256


class RunError(Exception):
    """A run cannot be created or resumed (bad arguments, unknown flow, ...)."""


def check_arg_names(flow: str, declared: dict, names: Any) -> None:
    """RunError unless every name is a declared argument of flow `flow`."""
    for k in names:
        if k not in declared:
            raise RunError(f"flow {flow} has no argument {k!r} (declared: "
                           f"{', '.join(declared) or 'none'})")


class HomeUnusable(RunError):
    """The home cannot serve the run (its owners directory is a file, the disk is
    full): not a usage error; one line."""


class RunClaimed(RunError):
    """The run is being run by another process (see `actors.ownership`)."""


@dataclass
class RunWatch:
    """Completion of one run, as seen by this runtime."""
    run_id: str
    done: threading.Event = field(default_factory=threading.Event)
    state: str | None = None
    result: Any = None   # the root flow's result record (dict) or an error string


# Argument kinds whose value is text as it is (not converted from it).
_TEXT_KINDS = ("string", "any", "state")


def _refused_arg(name: str, text: str, kind: str, why: ValueError,
                 how: str = "--arg ") -> str:
    """One line for an argument NAME=TEXT (`--arg`, or a batch item's field) that is
    not a valid `kind`; a long TEXT is cut short, and then the reason is added (the
    reader cannot see the value)."""
    if len(text) <= 60 and "\n" not in text:
        return f"{how}{name}={text}: not a valid {kind}"
    shown = text.replace("\n", " ")[:57] + "..."
    reason = str(why).splitlines()[0][:100] if str(why) else ""
    return f"{how}{name}={shown}: not a valid {kind}" + (f" ({reason})" if reason else "")


def convert_arg(name: str, text: str, param: Any, how: str = "--arg ") -> Any:
    """Argument `name` given as `text` (`--arg`, or a batch item's field: `how`),
    converted by its declared parameter's type; RunError in one line if it is not
    a valid one."""
    try:
        return param.from_text(text)
    except ValueError as e:
        raise RunError(_refused_arg(name, text, param.kind, e, how)) from None


def _discard(text: str) -> None:
    pass


def new_run_id() -> str:
    """A new run id: the time, then 48 random bits (a daemon may create a thousand
    runs a second; with fewer bits two of them would share an id every few minutes)."""
    return "r" + time.strftime("%Y%m%d%H%M%S") + secrets.token_hex(6)


class Clock:
    """Wall time plus an offset that virtual time moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def advance_to(self, t: float) -> None:
        self.offset = max(self.offset, t - time.time())


class Runtime:
    """Runs flows durably. Thread-safe; create one per process."""

    def __init__(self, store: Store, *, workers: int = 0, virtual_time: bool = False,
                 max_steps: int | None = None, inline_calls: bool = True,
                 max_restarts: int = 3, restart_window: float = 10.0,
                 backoff: float = 0.05, backoff_max: float = 2.0):
        self.store = store
        self.commits = CommitGate(store, overlap=workers == 0)
        # The runs this runtime runs, claimed so that no other process runs them too.
        self.owners = RunOwnership(store.home)
        self.creations = PendingCreations(store)
        self.max_steps = max_steps
        self.inline_calls = inline_calls
        self.virtual = virtual_time
        self.clock = Clock()
        self.lock = threading.RLock()
        self.actors: dict[str, Any] = {}          # flow id -> ActorRef (in this process)
        self.waits: dict[str, list] = {}           # parent -> [seq, ids, single, remaining]
        self.waiters: dict[str, set[str]] = {}     # child -> parents waiting on it
        self.busy: set[str] = set()
        # Admission of new flows: at most `max_starting` run towards their first
        # suspension at once; later ones queue here (as ids: their start checkpoint is
        # in the store). A flow that spawns 10,000 children thus never has 10,000
        # Threads, runners and checkpoints in memory at the same moment.
        self.max_starting = MAX_STARTING
        self.starting: set[str] = set()
        self.start_queue: collections.deque = collections.deque()
        self.watches: dict[str, RunWatch] = {}
        self.closed = False
        self.timer = TimerActor.start(self._fire_timer, self.now, virtual=virtual_time,
                                      idle=self.idle, advance_to=self._advance_to)
        self.exec = ExecActor.start(self.deliver)
        self.supervisor = Supervisor.start(self.restart, self.give_up, self.escalate,
                                           max_restarts=max_restarts, window=restart_window,
                                           backoff=backoff, backoff_max=backoff_max)
        # Inboxes, HTTP, user resources, secrets and quotas (actors.services).
        self.services = Services(self)
        self.inbox = self.services.inbox
        self.max_steps = self.services.quota.steps_limit(self.max_steps)
        self.pool = None
        if workers:
            from .workers import WorkerPool
            self.pool = WorkerPool(self, workers)

    # ================================================================ clock
    def now(self) -> float:
        return self.clock.now()

    def _advance_to(self, t: float) -> None:
        self.clock.advance_to(t)
        if self.pool is not None:
            self.pool.set_offset(self.clock.offset)

    def idle(self) -> bool:
        with self.lock:
            return not self.busy

    def _maybe_idle(self) -> None:
        if not self.busy:
            if self.virtual:
                self.timer.tell(("advance",))
            # Flows just went to sleep in the store: hand their memory back.
            release_free_memory()

    # ================================================================ creating runs
    def create_run(self, file: str, source: str, *, flow: str | None = None,
                   args: dict[str, str] | None = None, run_id: str | None = None,
                   on_created: OnCreated | None = None,
                   values: dict[str, Any] | None = None, batch: str | None = None) -> str:
        """Create a run of FILE and start it. Without `flow` the file's main block is
        the root; with it, that flow with `args` (text, converted by declared type)
        and `values` (typed already, e.g. JSON: checked as they are; a string for a
        typed argument is converted like text). Syntax errors raise `StarlarkError`;
        bad flow names or arguments `RunError`.

        Without `on_created` the run is in the store when this returns. With it, the
        creation may be committed with the root flow's first commit instead (one
        fsync fewer per run; see `actors.creation`): ``on_created(None)`` is called
        once the run is durable (at once, if it is committed here), or with the
        error that kept it out of the store. Tell no one the run id before that.
        `batch`: the id of the batch the run is an item of (in its meta; `prune`
        leaves such a run alone until its batch has ended)."""
        run_id = run_id or new_run_id()
        if not self._claim(run_id):
            raise RunError(f"run {run_id} exists already (this runtime runs it)")
        if on_created is not None:
            on_created = self._forget_if_refused(run_id, on_created)
        try:
            return self._create_run(run_id, file, source, flow, args, on_created, values,
                                    batch)
        except BaseException:
            self.owners.release(run_id)
            raise

    def _claim(self, run_id: str) -> bool:
        """`RunOwnership.claim`, its refusals as RunErrors."""
        try:
            return self.owners.claim(run_id)
        except RunBusy as e:
            raise RunClaimed(str(e)) from None
        except ClaimFailed as e:
            raise HomeUnusable(str(e)) from None

    def _forget_if_refused(self, run_id: str, on_created: OnCreated) -> OnCreated:
        # A deferred creation that never reached the store: nothing of the run exists,
        # so no one may wait on it or hold it (a daemon on a full disk would otherwise
        # keep a claim and a watch per refused submission).
        def told(error: BaseException | None) -> None:
            if error is not None:
                self.owners.release(run_id)
                with self.lock:
                    self.watches.pop(run_id, None)
            on_created(error)
        return told

    def _create_run(self, run_id: str, file: str, source: str, flow: str | None,
                    args: dict[str, str] | None, on_created: OnCreated | None,
                    values: dict[str, Any] | None = None, batch: str | None = None) -> str:
        path = os.path.abspath(file)
        # The source goes in with the run (one commit, one fsync, per submitted run).
        code = code_hash(source.encode("utf-8"))
        if flow is None:
            pre = predeclared("__flow__")
            thread = start(source, file, predeclared=pre,
                           loader=FileLoader(file, pre, packages()), max_steps=self.max_steps)
            check_loads(source, file, pre, packages())
            b = Batch().put_code(source).create_run(
                run_id, file=path, root_flow=run_id,
                meta={"code": code, "mode": "main", "name": file})
            b.create_flow(run_id, run_id=run_id, name="__main__", state="running",
                          meta={"file": file})
            image = FlowImage(thread, None, 0, None, True)
            image_bytes = None
            first = ("go", ("new",), NOTSET)
            name = "__main__"
        else:
            printed: list[str] = []
            fdef = self._flow_def(file, source, flow, printed)
            kwargs = {}
            decl = dict(fdef.params)
            values = values or {}
            given = [(k, t, "--arg ") for k, t in (args or {}).items() if k not in values]
            given += [(k, v, "") for k, v in values.items()]
            check_arg_names(flow, decl, [k for k, _, _ in given])
            for k, x, how in given:
                if how == "" and not (isinstance(x, str) and decl[k].kind not in _TEXT_KINDS):
                    kwargs[k] = x    # typed already: the flow's own check (bind) judges it
                    continue
                kwargs[k] = convert_arg(k, x, decl[k], how)
            try:
                fdef.bind((), kwargs)
            except FlowFailed as e:
                raise RunError(e.msg) from None
            # A Thread stopped at its start point, not the (flow, args) spec children
            # get: a spec pickles the flow's module afresh for every run (~1.1 ms
            # against ~0.45 ms), where the children of one flow value share its bytes.
            image = FlowImage(new_flow_thread(fdef, (), kwargs, self.max_steps),
                              None, 0, None, False)
            b = Batch().put_code(source).create_run(
                run_id, file=path, root_flow=run_id,
                meta={"code": code, "mode": "flow", "flow": flow,
                      "args": {**(args or {}), **{k: v if isinstance(v, str) else
                                                  json.dumps(v) for k, v in values.items()}},
                      "name": file, **({"batch": batch} if batch else {})})
            b.create_flow(run_id, run_id=run_id, name=fdef.name, state="running",
                          meta={"file": file})
            for line in printed:   # the module's top level ran for this run
                b.append_output(run_id, line + "\n", flow_id=run_id)
            image_bytes = dumps_image(image)
            b.put_checkpoint(run_id, image_bytes)
            first = ("go", ("ok", None), NOTSET)
            name = fdef.name
        runner = FlowRunner(self, run_id, parent=None, name=name, image=image, fresh=True)
        over_quota = self.services.admit(run_id)
        # A worker loads a main block that has not started from the store (see
        # `_host`), and a refusal under a flow quota ends the root in the store: then
        # the run must be there first.
        if on_created is not None and (self.pool is None or flow is not None) \
                and over_quota is None:
            runner.creation = self.creations.add(run_id, b, on_created)
        else:
            self.store.commit(b)
            if on_created is not None:
                on_created(None)
        self.watch(run_id)
        if over_quota is not None:
            self.services.refuse(run_id, None, over_quota)
            return run_id
        with self.lock:
            self.busy.add(run_id)
            self._host(run_id, runner, first, image_bytes)
        return run_id

    def _flow_def(self, file: str, source: str, flow: str,
                  printed: list[str] | None = None) -> FlowDef:
        """Flow `flow` of the module, run (top level only) once; what its top level
        prints goes to `printed` (else nowhere: not this process's stdout)."""
        pre = predeclared("__main__")
        check_loads(source, file, pre, packages())
        thread = start(source, file, predeclared=pre, loader=FileLoader(file, pre, packages()),
                       max_steps=self.max_steps,
                       print=printed.append if printed is not None else _discard)
        r = thread.run()
        if isinstance(r, Failed):
            raise r.error
        if isinstance(r, Suspended):
            raise RunError(f"{file}: top-level code performed an action "
                           f"({type(r.request).__name__}); actions belong in flows")
        assert isinstance(r, Done)
        fdef = r.value.get(flow)
        if not isinstance(fdef, FlowDef):
            flows = sorted(k for k, v in r.value.items() if isinstance(v, FlowDef))
            raise RunError(f"{file} has no flow named {flow!r} (flows: "
                           f"{', '.join(flows) or 'none'})")
        return fdef.learn_name()

    # ================================================================ recovery
    def resume_run(self, run_id: str) -> None:
        """Continue a run from its checkpoints: every live flow of it is loaded again;
        pending actions with a journaled result resume with it, others are re-issued
        under the same id."""
        run = self.store.get_run(run_id)
        if run is None:
            raise RunError(f"no run {run_id!r}")
        if run.state in ("ok", "err", "cancelled"):
            self.watch(run_id)
            self._run_done(run_id, run.state, self._root_result(run_id))
            return
        claimed = self._claim(run_id)
        try:
            self._resume_claimed(run_id, run)
        except BaseException:
            # Failed before any flow of it was hosted here (its flows' own failures
            # go to the supervisor): if it was not ours before, leave it to others.
            if claimed:
                self.owners.release(run_id)
            raise

    def _resume_claimed(self, run_id: str, run: Any) -> None:
        with self.lock:
            old = self.watches.get(run_id)
            if old is not None and old.done.is_set():
                del self.watches[run_id]   # it crashed here before: watch it anew
            # Flows of it that still run here (a crashed run's other flows, or any
            # resumed twice) go on as they are: a second actor would act twice.
            here = set(self.actors) | self.busy | set(self.waits)
        self.watch(run_id)
        if run.state not in LIVE_STATES:
            self.store.commit(Batch().set_run_state(run_id, "running"))
        self.store.reader_check()
        # live_flows() is the live index (not the run's history, which may be long).
        live = [f for f in self.store.live_flows() if f.run_id == run_id]
        for f in live:
            if f.id not in here:
                self._recover_flow_or_report(f, run)

    def _recover_flow(self, f: Any, run: Any) -> None:
        store = self.store
        self.services.recovering(f.id)
        ck = store.get_checkpoint(f.id)
        if ck is None:
            # Only a main-block root before its first action: the actor rebuilds it.
            with self.lock:
                self.busy.add(f.id)
                self._host(f.id, None, ("load",))
            return
        k = ck.seq
        if k is not None and store.get_journal(f.id, k) is None:
            intent = store.get_intent(f.id, k)
            if intent is not None:
                req = intent.request
                # Sleeping and waiting flows stay in the store until they can go on.
                if req.get("kind") == "sleep":
                    self.timer.tell(("schedule", req["due"], f.id, k))
                    return
                if req.get("kind") == "wait":
                    with self.lock:
                        self._register_wait(f.id, k, req["children"], req["single"])
                    return
                if req.get("kind") == "receive":
                    self.services.receive(f.id, k, req)
                    return
        with self.lock:
            self.busy.add(f.id)
            self._host(f.id, None, ("load",))

    # ================================================================ placement
    def _host(self, flow_id: str, runner: FlowRunner | None, first: tuple,
              image: bytes | None = None) -> None:
        """Give the flow an actor (caller holds the lock, flow marked busy); `image`:
        the runner's image as `dumps_image` gives it, when the caller has it."""
        if self.closed:
            return
        if self.pool is not None:
            if runner is not None and not (runner.is_module and runner.thread.status == "new"):
                if image is None:
                    image = dumps_image(runner.image())
                self.pool.host(flow_id, first, image, runner.parent,
                               runner.name, fresh=not runner.replaying,
                               creation=runner.creation)
            else:
                # No image for a main block that has not started: the worker builds
                # it from the stored source, so its first message must be a load.
                self.pool.host(flow_id, first if runner is None else ("load",))
            return
        ref = FlowActor.start(self, flow_id, runner, first)
        self.actors[flow_id] = ref

    def _unhost(self, flow_id: str) -> None:
        if self.pool is not None:
            self.pool.unhost(flow_id)
            return
        ref = self.actors.pop(flow_id, None)
        if ref is not None:
            stop_soon(ref)

    def _send(self, flow_id: str, message: tuple) -> None:
        """Deliver a message to the flow's actor, starting one from its checkpoint."""
        if self.pool is not None:
            self.pool.send(flow_id, message)
            return
        ref = self.actors.get(flow_id)
        if ref is not None and ref.is_alive():
            ref.tell(message)
            return
        self._host(flow_id, None, ("load_then", message))

    # ================================================================ hub: from flows
    def committing_children(self, flow_id: str, ids: list) -> None:
        """Nothing to do here: a commit and the report that follows it happen in this
        process (see `WorkerPool`, where a worker may die between them)."""

    def recover_unreported(self, ids: list) -> None:
        """Flows whose creation a worker committed but died (or crashed) before
        reporting: those stored and live that nothing here runs are recovered as a
        resume would (a waiting parent would otherwise wait on them forever)."""
        for cid in ids:
            f = self.store.get_flow(cid)
            if f is None or f.state not in LIVE_STATES:
                continue   # the commit did not happen, or it has ended since
            with self.lock:
                if self.closed or cid in self._cancelled or cid in self.busy \
                        or cid in self.waits or cid in self.actors:
                    continue
            self._recover_flow_or_report(f, self.store.get_run(f.run_id))

    def suspended(self, flow_id: str, seq: int, kind: str, info: Any, children: list,
                  runner: Any = None) -> None:
        """A flow committed its suspension on action `seq` (called after the commit)."""
        with self.lock:
            self._started(flow_id)
            if flow_id in self._cancelled:
                # Committed just before a cancel (or its run's end) that ended it and
                # the children that commit made: its action must not leave.
                return
            for cid, name, thread in children:
                self._start_child(flow_id, cid, thread, name)
            if kind == "exec":
                if self.pool is None:  # workers run their flows' commands themselves
                    self.exec.tell(("exec", flow_id, seq, info.to_json()))
            elif kind == "sleep":
                self.busy.discard(flow_id)
                self._unhost(flow_id)
                self.timer.tell(("schedule", info, flow_id, seq))
                self._maybe_idle()
            elif kind == "wait":
                ids, single = info
                self._register_wait(flow_id, seq, ids, single)
            elif kind == "receive":
                # Waits in the inbox router, not in memory (as a sleeping flow does).
                self.busy.discard(flow_id)
                self._unhost(flow_id)
                self.services.receive(flow_id, seq, info)
                self._maybe_idle()
            elif kind in SERVICE_KINDS:
                self.services.perform(flow_id, seq, kind, info.to_json())

    def _start_child(self, parent: str, cid: str, start: Any, name: str) -> None:
        """Start a child the parent just committed; `start` is its (flow, args, kwargs)
        or None (then it loads from its start checkpoint)."""
        if self.services.refused(cid, parent):
            return
        self.busy.add(cid)
        if len(self.starting) >= self.max_starting:
            self.start_queue.append((parent, cid, start, name))
            return
        self._admit(parent, cid, start, name)

    def left_start(self, flow_id: str) -> None:
        """A loaded flow is issuing its pending action: it has left its start (as
        `suspended` says for a first issue). A flow handed over mid-call is started
        by such a load, and must not hold a place among the starting ones for as
        long as it waits."""
        with self.lock:
            self._started(flow_id)

    def _started(self, flow_id: str) -> None:
        """The flow left its start (suspended, ended, crashed): admit queued ones."""
        self.starting.discard(flow_id)
        q = self.start_queue
        while q and len(self.starting) < self.max_starting:
            self._admit(*q.popleft())

    def _admit(self, parent: str, cid: str, start: Any, name: str) -> None:
        if cid in self._cancelled:
            self.busy.discard(cid)
            return
        self.starting.add(cid)
        if self.pool is not None or start is None:
            self._host(cid, None, ("load",))
        else:
            runner = FlowRunner(self, cid, parent=parent, name=name,
                                image=FlowImage(None, None, 0, None, False, start), fresh=True)
            self._host(cid, runner, ("go", ("ok", None), NOTSET))

    def reissue(self, flow_id: str, seq: int, intent: dict, actor: Any = None) -> None:
        """A recovered flow's pending action has no result: issue it again, same id."""
        self.left_start(flow_id)
        if flow_id in self._cancelled:
            # Cancelled after its load read the checkpoint: its action must not leave
            # (a handed-over child's first action leaves here, not after a commit that
            # a cancel would make conflict).
            return
        kind = intent.get("kind")
        if kind == "exec":
            self.exec.tell(("exec", flow_id, seq, intent))
        elif kind == "sleep":
            with self.lock:
                self.busy.discard(flow_id)
                self._unhost(flow_id)
                self.timer.tell(("schedule", intent["due"], flow_id, seq))
                self._maybe_idle()
        elif kind == "wait":
            with self.lock:
                self._register_wait(flow_id, seq, intent["children"], intent["single"])
        elif kind == "receive":
            with self.lock:
                self.busy.discard(flow_id)
                self._unhost(flow_id)
                self.services.receive(flow_id, seq, intent)
                self._maybe_idle()
        elif kind in SERVICE_KINDS:
            self.services.perform(flow_id, seq, kind, intent)
        else:
            self.crashed(flow_id, f"unknown pending action {intent!r}")

    def _register_wait(self, parent: str, seq: int, ids: list, single: bool) -> None:
        remaining = set()
        for cid in ids:
            f = self.store.get_flow(cid)
            if f is None:
                remaining.add(cid)  # not created yet (cannot happen after its commit)
            elif f.state in LIVE_STATES:
                remaining.add(cid)
        for cid in remaining:
            self.waiters.setdefault(cid, set()).add(parent)
        self.waits[parent] = [seq, list(ids), single, remaining]
        if not remaining:
            self._wait_done(parent)
        else:
            self.busy.discard(parent)
            self._maybe_idle()

    def _wait_done(self, parent: str) -> None:
        seq, ids, single, _ = self.waits.pop(parent)
        results = [result_from_record(self.store.get_flow(c).result) for c in ids]
        value = results[0] if single else results
        self.busy.add(parent)
        self._send(parent, ("resume", seq, ("ok", value)))

    def finished(self, flow_id: str, parent: str | None, state: str, result: dict,
                 children: list) -> None:
        """A flow committed its end."""
        # A root that returned ended the run: its commit also cancelled every flow of
        # the run still live, children it made in that commit included
        # (FlowRunner._finish); what of them this runtime holds is dropped here.
        ends_run = flow_id == run_of(flow_id) and state in ("ok", "err")
        orphans: set = set()
        with self.lock:
            self._started(flow_id)
            if not ends_run:
                for cid, name, thread in children:
                    self._start_child(flow_id, cid, thread, name)
            self.busy.discard(flow_id)
            self._unhost(flow_id)
            self.services.ended(flow_id)
            for p in self.waiters.pop(flow_id, ()):
                w = self.waits.get(p)
                if w is not None:
                    w[3].discard(flow_id)
                    if not w[3]:
                        self._wait_done(p)
            if ends_run:
                orphans = self._flows_here(flow_id)
                self._drop_flows(orphans)
            if flow_id == run_of(flow_id):
                self._run_done(flow_id, state, result)
            self._maybe_idle()
        self._stop_actions(orphans)
        if ends_run:
            self.services.run_ended(flow_id)

    def created(self, run_id: str) -> None:
        """The root's first commit, which carried the run's creation, is durable."""
        self.creations.resolved(run_id)

    def deliver(self, flow_id: str, seq: int, outcome: tuple) -> None:
        """An action's outcome (exec reply, fired timer) for the flow's action `seq`."""
        if flow_id in self._cancelled:
            return  # a late reply for a cancelled flow (see cancel_run)
        with self.lock:
            self.busy.add(flow_id)
            self._send(flow_id, ("resume", seq, outcome))

    def _fire_timer(self, flow_id: str, seq: int) -> None:
        try:
            f = self.store.get_flow(flow_id)
        except Exception:  # noqa: BLE001 - the timer thread serves every flow: keep it
            log.exception("flow %s: cannot read it to fire its timer", flow_id)
            f = None   # fire regardless: a resume of an ended flow is dropped
        if f is not None and f.state in ENDED_STATES:
            return  # ended while it slept (cancelled, or its run ended): its timer went too
        if self.services.timer_fired(flow_id, seq):
            return  # a receive's timeout: the inbox router decided (message or None)
        self.deliver(flow_id, seq, ("ok", None))

    # Quota hooks the FlowRunners call (see actors.services.QuotaHooks).
    def count_output(self, run_id: str, text: str) -> None:
        self.services.quota.count_output(run_id, text)

    def quota_error(self, err: Any) -> str | None:
        return self.services.quota.quota_error(err)

    # ================================================================ supervision
    def crashed(self, flow_id: str, error: str) -> None:
        """A flow's infrastructure failed (actor died, worker died, commit failed)."""
        if flow_id in self._cancelled:
            return  # its actor lost the race with cancel_run: not a crash
        if self._ended_in_store(flow_id):
            # Ended without this runtime's actor (its run's end cancelled it, in a
            # worker mid-step): its commit conflicted or its load found no
            # checkpoint. Nothing to restart, and no crash to count against others.
            with self.lock:
                self.actors.pop(flow_id, None)
                self._started(flow_id)
                self.busy.discard(flow_id)
                self._maybe_idle()
            return
        if flow_id in self.creations:
            # Before its first commit, or that commit failed: the run goes in alone,
            # so that the restart finds the root's start.
            self.creations.commit_now([flow_id])
        with self.lock:
            self.actors.pop(flow_id, None)
            self._started(flow_id)
        if not self.closed:
            self.supervisor.tell(("crashed", flow_id, error))

    def _ended_in_store(self, flow_id: str) -> bool:
        try:
            f = self.store.get_flow(flow_id)
        except Exception:  # noqa: BLE001 - when in doubt, a crash as before
            return False
        return f is not None and f.state in ENDED_STATES

    def restart(self, flow_id: str) -> None:
        with self.lock:
            if self.closed:
                return
            f = self.store.get_flow(flow_id)
            if f is None or f.state not in LIVE_STATES:
                self.busy.discard(flow_id)
                return
            run = self.store.get_run(f.run_id)
            self._unhost(flow_id)
            self.waits.pop(flow_id, None)
        self._recover_flow_or_report(f, run)

    def _recover_flow_or_report(self, f: Any, run: Any) -> None:
        # A flow that cannot even be loaded (a damaged checkpoint) is one more crash
        # for the supervisor to count, not an exception in whoever called this.
        try:
            self._recover_flow(f, run)
        except Exception as e:  # noqa: BLE001
            self.crashed(f.id, f"{type(e).__name__}: {e}")

    def give_up(self, flow_id: str, error: str) -> None:
        """Past the restart intensity: the run is `crashed` (its flows stay live in the
        store with their checkpoints, so `flowmetal resume` can continue it)."""
        run_id = run_of(flow_id)
        try:
            self.store.commit(Batch().set_run_state(
                run_id, "crashed", meta={"crashed_flow": flow_id, "error": error}))
        except Exception:  # noqa: BLE001 - nothing more to do; the watcher still hears
            pass
        with self.lock:
            self.busy.discard(flow_id)
            self._run_done(run_id, "crashed", f"flow {flow_id} crashed: {error}")

    def escalate(self, error: str) -> None:
        with self.lock:
            runs = [w.run_id for w in self.watches.values() if not w.done.is_set()]
        for run_id in runs:
            self.give_up(run_id, error)

    # ================================================================ watching runs
    def watch(self, run_id: str) -> RunWatch:
        with self.lock:
            w = self.watches.get(run_id)
            if w is None:
                w = self.watches[run_id] = RunWatch(run_id)
            return w

    def _root_result(self, run_id: str) -> Any:
        f = self.store.get_flow(run_id)
        return f.result if f is not None else None

    def _run_done(self, run_id: str, state: str, result: Any) -> None:
        if state != "crashed":
            self.owners.release(run_id)
        # A crashed run stays claimed: other flows of it may still run here (one flow
        # past its restart intensity stops only itself). It is resumed through this
        # runtime (a daemon), or by anyone once this one closes.
        w = self.watch(run_id)
        if not w.done.is_set():
            w.state = state
            w.result = result
            w.done.set()
            self._notify_run_done(w)

    def wait_run(self, run_id: str, timeout: float | None = None) -> RunWatch:
        """Wait (up to `timeout` s) for the run to end. A run that another process ends
        meanwhile (`flowmetal cancel` through a daemon, while this runtime runs it) is
        noticed in the store within `ELSEWHERE_CHECK` s: its flows here are stopped."""
        w = self.watch(run_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not w.done.is_set():
            left = ELSEWHERE_CHECK if deadline is None else \
                min(ELSEWHERE_CHECK, deadline - time.monotonic())
            if left <= 0 or w.done.wait(left):
                break
            self._ended_elsewhere(run_id)
        return w

    def _ended_elsewhere(self, run_id: str) -> None:
        # Only a cancel can end a run from elsewhere while this runtime holds it: an
        # `ok`/`err` in the store is this runtime's own end, about to be reported.
        run = self.store.get_run(run_id)
        if run is None or run.state != "cancelled":
            return
        with self.lock:
            if self.watch(run_id).done.is_set():
                return
            ids = self._flows_here(run_id)
            self._drop_flows(ids)
            self._run_done(run_id, run.state, self._root_result(run_id))
            self._maybe_idle()
        self._stop_actions(ids)
        self.services.run_ended(run_id)

    def _flows_here(self, run_id: str) -> set:
        # The run's flows this runtime has in hand (hosted, busy, waiting on others);
        # sleeping and receiving ones are not held, and `_fire_timer` skips them once
        # they have ended.
        return {fid for fid in (*self.actors, *self.busy, *self.waits)
                if run_of(fid) == run_id}

    def _drop_flows(self, ids: Any) -> None:
        # Flows that ended in the store without this runtime (cancelled): forget them
        # here; an actor caught mid-step is not a crash (its commit conflicts).
        if not ids:
            return
        self._cancelled = self._cancelled | frozenset(ids)
        for fid in ids:
            self._unhost(fid)
            self.busy.discard(fid)
            self._started(fid)   # its place among the starting ones goes to the queue
            self.waits.pop(fid, None)
            self.waiters.pop(fid, None)

    def _stop_actions(self, ids: Any) -> None:
        for fid in ids:
            self.services.ended(fid)
            # A command it is waiting on is stopped, not left to run to its end.
            if self.pool is not None:
                self.pool.cancel_actions(fid)
            else:
                self.exec.tell(("cancel", fid))

    # ================================================================ shutdown
    def close(self) -> None:
        with self.lock:
            self.closed = True
            refs = list(self.actors.values())
            self.actors.clear()
        # Running commands stop with this process: their actions stay pending and are
        # issued again by whoever resumes the run, never alongside a first copy.
        try:
            self.exec.ask(("shutdown", STOP_GRACE), timeout=STOP_GRACE + 5)
        except Exception:  # noqa: BLE001 - closing goes on regardless
            pass
        for ref in refs:
            try:
                stop_soon(ref)
            except Exception:  # noqa: BLE001
                pass
        if self.pool is not None:
            self.pool.close()
        # Roots stopped before their first commit: their runs go in now, to be
        # recovered at the next start (a failure is reported to their callers).
        self.creations.close()
        self.services.close()
        for a in (self.timer, self.exec, self.supervisor):
            try:
                a.stop(block=True, timeout=2)
            except Exception:  # noqa: BLE001
                pass
        try:
            self.store.settle()   # a quiet commit its flows went on from (see CommitGate)
        except Exception:  # noqa: BLE001 - a closed or broken store has nothing in flight
            pass
        # Last: its runs are anyone's to resume once nothing here acts for them.
        self.owners.release_all()

    def __enter__(self) -> "Runtime":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ================================================================ daemon hooks
    # Added for the daemon (flowmetal/daemon): completion listeners, forgetting
    # finished runs, cancellation. Nothing above depends on them except the two
    # one-line guards on `_cancelled` (deliver, crashed) and `_notify_run_done`.
    _cancelled: frozenset = frozenset()   # flow ids cancelled by this runtime

    def add_run_listener(self, fn: Any) -> None:
        """Call ``fn(watch)`` once for every run this runtime sees end, on the thread
        that ended it (often holding the runtime lock): keep it short, never block."""
        with self.lock:
            self.__dict__.setdefault("_run_listeners", []).append(fn)

    def _notify_run_done(self, w: RunWatch) -> None:
        for fn in self.__dict__.get("_run_listeners", ()):
            try:
                fn(w)
            except Exception:  # noqa: BLE001 - a listener's bug must not stop flows
                pass

    def forget_run(self, run_id: str) -> None:
        """Drop the watch of a finished run (a long-lived daemon would otherwise keep
        one per run forever); the store still has everything."""
        with self.lock:
            w = self.watches.get(run_id)
            if w is not None and w.done.is_set():
                del self.watches[run_id]

    def cancel_run(self, run_id: str, reason: str = "cancelled") -> list[str]:
        """Cancel every live flow of the run: each ends ``cancelled`` with the result
        ``Err(reason)`` where it is suspended, children before their parents (in the
        order of one transaction, so no parent is woken by a cancelled child). A flow
        caught mid-step loses the race: its next commit conflicts and is dropped.
        Returns the ids of the flows cancelled (empty if nothing was live)."""
        from flowmetal.prelude import Err
        from store import ConflictError
        from .codec import result_record
        rec = result_record(Err(reason))
        for _ in range(10):
            # (A flow called within its caller's step has ended, and calls nothing.)
            flows = {f.id: f for f in self.store.run_flows(run_id, called=False)}
            live = [f for f in flows.values() if f.state in LIVE_STATES]
            if not live:
                return []

            def depth(f: Any) -> int:
                d = 0
                while f.parent is not None and f.parent in flows and d < 10_000:
                    f = flows[f.parent]
                    d += 1
                return d
            ids = [f.id for f in sorted(live, key=depth, reverse=True)]
            with self.lock:
                self._drop_flows(ids)
                b = Batch()
                for fid in ids:
                    b.flow_finished(fid, "cancelled", result=rec, error=reason)
                try:
                    self.store.commit(b)
                except ConflictError:
                    continue  # one of them ended meanwhile: read again
                self._run_done(run_id, "cancelled", rec)
                self._maybe_idle()
            self._stop_actions(ids)
            return ids
        raise RunError(f"run {run_id}: could not cancel (its flows kept changing)")


def result_of(watch: RunWatch) -> Any:
    """The root Result of a finished run (an `Err` for a crashed one)."""
    from flowmetal.prelude import Err
    if watch.state == "crashed":
        return Err(watch.result if isinstance(watch.result, str) else "crashed")
    return result_from_record(watch.result)
