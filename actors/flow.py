"""FlowActor: one pykka actor per live flow instance, and the step logic it runs.

`FlowRunner` owns one flow's live Thread and applies the durability protocol:

1. run the Thread to its next suspension;
2. commit checkpoint + intent (+ the journaled result of the action just consumed,
   + output printed since the last commit, + new child flows, + a timer) in ONE
   store transaction;
3. only then hand the request to the hub (the runtime), which sends it to the
   resource that performs it.

A flow value called from a flow (`check(x)`) runs the child *inline* in the caller's
actor, from its start (without stopping at its start point: the prelude's
`_flow_start` lets an inline child through) to its first suspension. A child that
ends without suspending did nothing to the world, so its whole life commits as one
transaction (its flow record with its Result, the caller's journal entry — and the
result of the action the caller last resumed from, so that a crash after this commit
never performs that action again — the output of both in order) before the caller
goes on. One that acts is *handed over*: its checkpoint and intent at that first
action commit together with its caller's (waiting on it), and it goes on in its own
FlowActor from there, loaded as a recovered flow is — its first run is never
repeated, so what it did before acting (to values it shares with its caller, to the
output) happened once. Nothing is lost either way: child ids are deterministic,
(caller id, action seq), and a re-executed call finds the child's record and takes
its Result (a flow that never ran before skips that look-up).

The step methods (`_handle`, `_call`, `_suspend`, `_suspend_on`, `_finish`) return
the Thread's next result to act on, or None once the runner is parked on a commit,
waits for an action or has ended: a new kind of action must ``return
self._suspend_on(...)``.

Commits do not block the actor: a runner hands each batch to its `committer`; the
FlowActor's (`CommitGate`) parks the actor until the end of its pool thread's turn,
which commits every parked actor's batch in one transaction, and the runner's
continuation (``self.cont``) runs once its batch is on disk — only then does it go
on (send the request, resume after an inline call, report its end). So step 3 of
the protocol still follows step 2, and many flows' checkpoints share one fsync.

`FlowActor` wraps a runner in a pykka actor (`PooledActor`: its mailbox runs on a
small shared thread pool, see `actors.pool`) whose mailbox takes
``("go", outcome, journal)`` (start) and ``("resume", seq, outcome)``. An exception in a
`tell` stops the actor; `on_failure` reports the crash to the hub, whose supervisor
restarts the flow from its last checkpoint — the store, not the mailbox, is the truth.
"""

from __future__ import annotations

import hashlib
import pickle
import threading
import time
import traceback
from typing import Any, Protocol

from flowmetal.prelude import (CallRequest, Err, ExecRequest, FlowContext, FlowDef,
                               FlowFailed, Handle, Ok, Result, SleepRequest, StartRequest,
                               WaitRequest, as_result, flow_main, NO_ARGS, pop_host,
                               push_host)
from flowmetal.actor_prelude import ReceiveRequest
from flowmetal.starlark import Done, Suspended, Thread, start_call
from store import NOTSET, Batch, Pending

from .codec import (UNAVAILABLE, FlowImage, dumps_image, dumps_value, loads_image, outcome_record,
                    put_sources, result_from_record, result_record)
from .pool import PooledActor, RunnerLoan, current_turn, others_ready

MAX_ID = 150



# The end of every flow a run still has running when its root flow ends.
ORPHAN_REASON = "cancelled: its run's root flow ended without waiting for it"


class ActionUnavailable(Exception):
    """An action could not be performed for a reason outside the flow."""


def child_id(parent: str, seq: int) -> str:
    """The deterministic id of the child a flow starts with action ``seq``."""
    cid = f"{parent}.{seq}"
    if len(cid) <= MAX_ID:
        return cid
    run = parent.split(".", 1)[0]
    return f"{run}.h{hashlib.sha1(cid.encode()).hexdigest()[:20]}"


def run_of(flow_id: str) -> str:
    """Flow ids start with their run's id: ``RUN`` (root), ``RUN.3.1``, ..."""
    return flow_id.split(".", 1)[0]


class Hub(Protocol):
    """What a FlowRunner needs from the runtime around it."""

    store: Any
    commits: "CommitGate"   # how this process's FlowActors commit
    max_steps: int | None
    inline_calls: bool

    def now(self) -> float: ...

    def suspended(self, flow_id: str, seq: int, kind: str, info: Any,
                  children: list, actor: Any) -> None: ...

    def finished(self, flow_id: str, parent: str | None, state: str, result: dict,
                 children: list) -> None: ...

    def created(self, run_id: str) -> None: ...

    def committing_children(self, flow_id: str, ids: list) -> None:
        """The flow's next commit stores these children (before it is made; the
        `suspended`/`finished` that starts them follows once it is durable)."""


def new_flow_thread(fdef: FlowDef, args: tuple, kwargs: dict, max_steps: int | None) -> Thread:
    """A flow's Thread, run to its durable start point (nothing of it ran yet)."""
    t = start_call(flow_main(), fdef, tuple(args), dict(kwargs), max_steps=max_steps)
    r = t.run()
    if not isinstance(r, Suspended) or not isinstance(r.request, StartRequest):
        raise RuntimeError(f"flow {fdef.name}: did not stop at its start point ({r!r})")
    return t


def error_text(err: Any) -> str:
    """The message of a failed flow: `fail(x)` gives x, others the Starlark traceback."""
    return str(err)


class _Host:
    """The FlowHost the prelude sees while this runner's Thread runs."""

    __slots__ = ("runner", "fctx", "inline_start")

    def __init__(self, runner: "FlowRunner", inline_start: bool = False):
        self.runner = runner
        self.fctx = runner.fctx
        # A child run inline has no durable start point to stop at (see `_inline`).
        self.inline_start = inline_start

    def spawn(self, fdef: FlowDef, args: tuple, kwargs: dict) -> Handle:
        r = self.runner
        r.seq += 1
        cid = child_id(r.flow_id, r.seq)
        r.children.append((cid, fdef.name, (fdef, args, kwargs)))
        return Handle(cid, fdef.name)

    def write(self, text: str) -> None:
        self.runner._count_output(text)
        self.runner.out.append(text)


class _Grab:
    """A committer that keeps the one batch it is given, uncommitted (the caller
    commits it with its own): see `FlowRunner._hand_over`."""

    __slots__ = ("batch",)

    def __init__(self) -> None:
        self.batch: Batch | None = None

    def commit(self, batch: Batch, quiet: bool = False) -> bool:
        if self.batch is not None:
            raise RuntimeError("a handed-over flow committed twice")
        self.batch = batch
        return False


class BlockingCommitter:
    """Commits on the caller's thread (a runner outside any actor: tests, tools)."""

    __slots__ = ("store",)

    def __init__(self, store: Any):
        self.store = store

    def commit(self, batch: Batch, quiet: bool = False) -> bool:
        self.store.commit(batch)
        return True


class FlowRunner:
    """One flow's live state and its protocol steps (not thread-safe: one actor owns it).

    Every store write goes through ``self.committer.commit(batch, quiet)``: True means the
    batch is durable now; False means it was queued and the owner will call
    `durable` when it is, and until then the runner is parked (``self.cont`` holds
    what to do next; nothing of the flow is visible to the world before that)."""

    def __init__(self, hub: Hub, flow_id: str, *, parent: str | None, name: str,
                 image: FlowImage, fresh: bool = False):
        """`fresh`: the flow was created just now and never ran (no earlier incarnation
        can have started children); a runner loaded from the store is not."""
        self.hub = hub
        self.flow_id = flow_id
        self.run_id = run_of(flow_id)
        self.parent = parent
        self.name = name
        self.thread = image.thread
        # A flow that has not started: its (flow, args, kwargs), until its first step.
        self.start: tuple | None = None
        if self.thread is None and image.start is not None:
            self.start = image.start
            fdef, args, kwargs = image.start
            self.thread = start_call(flow_main(), fdef, tuple(args), dict(kwargs),
                                     max_steps=hub.max_steps)
        # (Until its arguments are bound: no arguments. One shared, immutable struct.)
        self.fctx = image.fctx or FlowContext(flow_id, name, NO_ARGS)
        self.seq = image.seq
        self.last_result = image.last_result
        self.is_module = image.is_module
        self.out: list[str] = []
        self.children: list[tuple[str, str, tuple]] = []  # (id, name, start spec)
        self.made: list = []   # the children its last commit created
        self.pending: int | None = None   # seq of the action it waits on
        self.journal: Any = NOTSET        # (seq, record) of a consumed, unjournaled result
        self.done = False
        self.committer: Any = BlockingCommitter(hub.store)
        self.cont: Any = None             # parked: what to do once the commit is durable
        # A new run's root: the run's creation, not committed yet, to go in front of
        # the first commit (see `actors.creation`).
        self.creation: Batch | None = None
        # Whether a child this flow starts from now on can exist already (from an
        # earlier incarnation that got further than the checkpoint we resumed from).
        # A flow's actions commit in seq order, so once one child id is found free,
        # every later one is too: after that, no store read per call.
        self.replaying = not fresh
        # Whether a flow it calls runs inline, in its step (see `_inline`).
        self.inline = hub.inline_calls

    # -------------------------------------------------------------- running the Thread
    def _print(self, line: str) -> None:
        self._count_output(line + "\n")
        self.out.append(line + "\n")

    def _count_output(self, text: str) -> None:
        # The run's output quota: past it, the print fails the flow (FlowFailed ends
        # it with Err("quota exceeded: ...")) and the text is not kept.
        count = getattr(self.hub, "count_output", None)
        if count is not None:
            count(self.run_id, text)

    def _run(self, outcome: tuple, inline_start: bool = False, parkable: bool = True) -> Any:
        t = self.thread
        t.print = self._print
        t.parkable = parkable and self.hub.inline_calls   # parking serves inline child calls
        host = _Host(self, inline_start)
        push_host(host)
        try:
            if outcome[0] == "new":
                r = t.run()
            elif outcome[0] == "ok":
                r = t.resume(outcome[1])
            else:
                r = t.resume_error(outcome[1])
        finally:
            pop_host()
        self.fctx = host.fctx  # _flow_bind replaces it with the bound one
        return r

    def image(self) -> FlowImage:
        """The flow's state to checkpoint (a parked Thread is captured first)."""
        if self.start is not None:
            return FlowImage(None, None, 0, None, False, self.start)
        if self.thread is not None:
            self.thread.capture()
        return FlowImage(self.thread, self.fctx, self.seq, self.last_result, self.is_module)

    # -------------------------------------------------------------- one step
    def step(self, outcome: tuple, journal: Any = NOTSET) -> None:
        """Run from `outcome` (("new",), ("ok", v), ("err", msg)) to the next durable
        point, committing as the protocol says. `journal` = (seq, record) of the
        action whose outcome this is, when it still has to be journaled."""
        if self.cont is not None:
            raise RuntimeError(f"flow {self.flow_id}: stepped while a commit is in flight")
        self.pending = None
        self.journal = journal
        if self.is_module and outcome[0] == "ok" and isinstance(outcome[1], Result):
            self.last_result = outcome[1]  # the main block's last flow call
        if self.start is not None:
            # Its start is durable (the spec is its checkpoint): it runs from its first
            # line, through the prelude's start point, with no capture and resume there.
            self.start = None
            self._drive(self._run(("new",), inline_start=True))
            return
        self._drive(self._run(outcome))

    def durable(self, error: BaseException | None = None) -> None:
        """The batch the runner is parked on is durable — a quiet one: on its way, see
        `CommitGate._flush_quiet` — or failed: then raise, so that the actor crashes
        and the flow restarts from its last checkpoint."""
        then, self.cont = self.cont, None
        if then is None:
            raise RuntimeError(f"flow {self.flow_id}: no commit was in flight")
        if error is not None:
            raise error
        self._drive(then())

    def _drive(self, r: Any) -> None:
        # A loop, not recursion: a flow may make millions of inline calls in one step.
        while r is not None:
            r = self._handle(r)

    def _handle(self, r: Any) -> Any:
        """Act on one result of the Thread: the next result to act on, or None when the
        runner is parked on a commit, waits for an action, or has ended."""
        if isinstance(r, Suspended):
            req = r.request
            if isinstance(req, StartRequest):
                # A Thread stopped at its start point (a `--flow` root; children's
                # checkpoints of earlier versions).
                return self._run(("ok", None))
            if isinstance(req, CallRequest):
                return self._call(req)
            return self._suspend(req)
        return self._finish(r)

    def _commit(self, b: Batch, then: Any, quiet: bool = False) -> Any:
        """Make `b` durable, then `then()` (returns its result, or None if parked).

        `quiet`: `then` tells nothing to anyone outside the store — it only runs the
        flow on, and whatever the flow does next to the world goes through a later,
        durable commit, which makes this one durable too. So the batch may commit
        quietly (`store.Store.commit_group`): without waiting for the sync of LMDB's
        meta page, about a third of a lone commit's time. A power loss may then take
        back this commit along with the flow's progress since, which no one has seen
        (output is synced by whoever reads it to show it)."""
        if self.creation is not None:
            # The run's creation goes in with this first commit; once that is durable,
            # the hub hears that the run is stored before anything else of it. (A new
            # batch: the fallback may commit the creation's own, which must stay as is.)
            b, self.creation = Batch().extend(self.creation).extend(b), None
            then = self._announced(then)
            quiet = False
        if self.committer.commit(b, quiet):
            return then()
        self.cont = then
        return None

    def _announced(self, then: Any) -> Any:
        def announce_then() -> Any:
            self.hub.created(self.run_id)
            return then()
        return announce_then

    def _consume(self, b: Batch, checkpoint: bytes | None = None,
                 next_intent: tuple | None = None, **kw: Any) -> None:
        """Journal the consumed action (if any) and write the next checkpoint/intent."""
        if self.journal is not NOTSET:
            seq, rec = self.journal
            b.action_completed(self.flow_id, seq, rec, checkpoint=checkpoint,
                               next_intent=next_intent, **kw)
            self.journal = NOTSET
        elif checkpoint is not None:
            b.flow_suspended(self.flow_id, next_intent[0], checkpoint, next_intent[1], **kw)

    def _child_ops(self, b: Batch) -> list:
        """Create the children started since the last commit (in `b`). Raises one of
        `_UNSTORABLE`, `b` untouched and the children forgotten, if their arguments
        cannot be pickled."""
        made, self.children = self.children, []
        sources: dict = {}
        starts = [dumps_image(FlowImage(None, None, 0, None, False, start), sources)
                  for _, _, start in made]
        for (cid, name, _), ckpt in zip(made, starts):
            b.create_flow(cid, run_id=self.run_id, name=name, parent=self.flow_id,
                          state="pending")
            b.put_checkpoint(cid, ckpt)
        put_sources(b, sources)
        self.made = made
        return made

    # -------------------------------------------------------------- child calls
    def _call(self, req: CallRequest) -> Any:
        """A called flow: the Thread's next result once the child's Result is in hand
        (or None: parked on the commit of an inline child, or waiting for the child)."""
        store = self.hub.store
        self.seq += 1
        k = self.seq
        cid = child_id(self.flow_id, k)
        rec = store.get_flow(cid) if self.replaying else None
        if rec is None:
            self.replaying = False
        else:
            # Re-executed after a restart: the child exists already.
            if rec.terminal:
                return self._called(result_from_record(rec.result))
            return self._suspend_on(k, "wait", {"kind": "wait", "children": [cid],
                                                "single": True}, ([cid], True))
        if self.inline and not self.children:
            return self._inline(req, k, cid)
        self.children.append((cid, req.flow.name, (req.flow, req.args, req.kwargs)))
        return self._suspend_on(k, "wait", {"kind": "wait", "children": [cid], "single": True},
                                ([cid], True))

    def _called(self, result: Result) -> Any:
        if self.is_module:
            self.last_result = result
        return self._run(("ok", result))

    def _inline(self, req: CallRequest, k: int, cid: str) -> Any:
        """Run the called child here. If it ends without acting on the world, commit its
        whole life and go on with its Result; if it acts, hand it over (`_hand_over`)."""
        began = time.time()
        t = start_call(flow_main(), req.flow, tuple(req.args), dict(req.kwargs),
                       max_steps=self.hub.max_steps)
        child = FlowRunner(self.hub, cid, parent=self.flow_id, name=req.flow.name,
                           image=FlowImage(t, None, 0, None, False), fresh=True)
        # Not parkable: a child that acts goes on from a checkpoint (see `_hand_over`),
        # so keeping its stack alive would only cost a greenlet and two switches.
        r = child._run(("new",), inline_start=True, parkable=False)
        if isinstance(r, Suspended) or child.children:
            return self._hand_over(k, cid, child, r)
        result, v, rrec = _stored_result(child._result(r))
        b = Batch()
        # Journal the action this step resumed from too: it costs nothing here, and a
        # restart then resumes with its result rather than performing it again.
        if self.out:
            # Our own output precedes the child's; committing it requires the
            # checkpoint that stops it from being printed again.
            sources: dict = {}
            try:
                ckpt = dumps_image(self.image(), sources)
            except _UNSTORABLE as e:
                return self._run(("err", f"cannot checkpoint the flow: {_unstorable_why(e)}"))
            self._consume(b)
            b.put_checkpoint(self.flow_id, ckpt, seq=k)
            put_sources(b, sources)
            for text in self.out:
                b.append_output(self.run_id, text, flow_id=self.flow_id)
            self.out = []
        else:
            self._consume(b)
        # Not `create_flow` + `flow_finished`: nothing of a flow born and ended in this
        # batch can exist (checkpoint, intents, timers, a live index entry) and it is
        # no run's root, so one op writes it, ended, with the caller's journal entry.
        b.call_ended(self.flow_id, k, cid, run_id=self.run_id, name=req.flow.name,
                     state="ok" if result.ok else "err", result=rrec,
                     error=None if result.ok else rrec["repr"], value={"ok": True, "v": v},
                     request={"kind": "call", "children": [cid]}, started=began)
        for text in child.out:
            b.append_output(self.run_id, text, flow_id=cid)
        # Quiet: the caller only goes on, and the child did nothing to the world.
        return self._commit(b, lambda: self._called(result), quiet=True)

    def _hand_over(self, k: int, cid: str, child: "FlowRunner", r: Any) -> Any:
        """The child run inline acted on the world (or started flows of its own): it
        goes on in its own actor from where it stopped, not from its start. What its
        first run did — to values it shares with its caller, to the run's output —
        happened once. Its checkpoint and intent (or its end) commit together with
        ours, waiting on it; then it is loaded from there like a recovered flow, and
        its action is issued."""
        grab = _Grab()
        child.committer = grab
        child.inline = False   # a flow it calls now is a child of its own, as usual
        child._drive(r)        # to its first commit: its suspension (or its end)
        if grab.batch is None:
            raise RuntimeError(f"flow {cid}: stopped without a commit ({r!r})")
        b = Batch().create_flow(cid, run_id=self.run_id, name=child.name,
                                parent=self.flow_id, state="pending").extend(grab.batch)
        # The flows it started start with it (with their parent, once stored);
        # it is started by its load unless it has ended already.
        adopted = [] if child.done else [(cid, child.name, None)]
        adopted += [(g, name, None) for g, name, _ in child.made]
        return self._suspend_on(k, "wait", {"kind": "wait", "children": [cid], "single": True},
                                ([cid], True), extra=b, adopted=adopted)

    # -------------------------------------------------------------- suspension
    def _suspend(self, req: Any) -> Any:
        if isinstance(req, WaitRequest):
            self.seq += 1
            return self._suspend_on(self.seq, "wait", {"kind": "wait", "children": req.flow_ids,
                                                       "single": req.single},
                                    (req.flow_ids, req.single))
        if isinstance(req, SleepRequest):
            self.seq += 1
            due = self.hub.now() + req.seconds
            return self._suspend_on(self.seq, "sleep", {"kind": "sleep", "seconds": req.seconds,
                                                        "due": due}, due, timer=due)
        if isinstance(req, ExecRequest):
            self.seq += 1
            return self._suspend_on(self.seq, "exec", req.to_json(), req)
        if isinstance(req, ReceiveRequest):
            self.seq += 1
            intent = req.to_json()
            due = intent["due"] = (self.hub.now() + req.timeout if req.timeout is not None
                                   else None)
            return self._suspend_on(self.seq, "receive", intent, intent, timer=due)
        to_json = getattr(req, "to_json", None)
        if to_json is not None:
            # send, close, http, resources: the intent names its kind; the hub does it.
            self.seq += 1
            intent = to_json()
            return self._suspend_on(self.seq, intent["kind"], intent, req)
        # A host builtin suspended with something that is not an action.
        return self._run(("err", f"unknown action request {req!r}"))

    def _suspend_on(self, k: int, kind: str, intent: dict, info: Any,
                    timer: float | None = None, extra: Batch | None = None,
                    adopted: list = ()) -> Any:
        """Commit the suspension on action `k`, then issue it. `extra`: ops to commit
        with it, after ours; `adopted`: (id, name, None) of flows stored by `extra`
        that the hub starts (from the store) with the children we started."""
        b = Batch()
        kids = Batch()
        sources: dict = {}
        try:
            ckpt = dumps_image(self.image(), sources)
            made = self._child_ops(kids)
        except _UNSTORABLE as e:
            # Its values cannot be pickled (nested too deep): a fault of the flow,
            # which a restart would only repeat. The action fails where it was asked.
            return self._run(("err", f"cannot checkpoint the flow: {_unstorable_why(e)}"))
        put_sources(b, sources)
        self._consume(b, ckpt, (k, intent), state="waiting", timer=timer,
                      output=self.out)
        self.out = []
        b.extend(kids)
        if extra is not None:
            b.extend(extra)
            made = made + list(adopted)

        def then() -> None:
            # Protocol step 3: the request leaves only now that it is durable.
            self.pending = k
            self.hub.suspended(self.flow_id, k, kind, info, made, self)
        if made:
            self.hub.committing_children(self.flow_id, [c for c, _, _ in made])
        return self._commit(b, then)

    # -------------------------------------------------------------- the end
    def _result(self, r: Any) -> Any:
        if isinstance(r, Done):
            if self.is_module:
                return self.last_result if self.last_result is not None else Ok(None)
            return as_result(r.value)
        err = r.error
        if isinstance(err, FlowFailed):
            return Err(err.value)
        quota = getattr(self.hub, "quota_error", None)
        msg = quota(err) if quota is not None else None
        return Err(msg if msg is not None else error_text(err))

    def _finish(self, r: Any) -> Any:
        result = self._result(r)
        kids = Batch()
        try:
            made = self._child_ops(kids)
        except _UNSTORABLE as e:
            made = []
            result = Err(f"cannot start its child flows: {_unstorable_why(e)}")
        result, _, rrec = _stored_result(result)
        b = Batch()
        if self.journal is not NOTSET:
            seq, rec = self.journal
            if rec is not NOTSET:
                b.journal_result(self.flow_id, seq, rec)
            self.journal = NOTSET
        b.extend(kids)
        state = "ok" if result.ok else "err"
        b.flow_finished(self.flow_id, state, result=rrec,
                        error=None if result.ok else rrec["repr"], output=self.out)
        if self.parent is None and run_of(self.flow_id) == self.flow_id:
            # The run ends with its root. What it started and never waited on ends
            # with it, in the same commit, rather than waiting on in an ended run
            # that nothing resumes (Temporal's default parent-close policy).
            b.cancel_live_flows(self.flow_id, result=_ORPHANED, error=ORPHAN_REASON)
        self.out = []
        self.done = True
        self.thread = None

        def then() -> None:
            self.hub.finished(self.flow_id, self.parent, state, rrec, made)
        if made:
            self.hub.committing_children(self.flow_id, [c for c, _, _ in made])
        return self._commit(b, then)


_UNSTORABLE = (RecursionError, pickle.PicklingError)
_ORPHANED = result_record(Err(ORPHAN_REASON))


def _unstorable_why(e: BaseException) -> str:
    if isinstance(e, RecursionError) or "recursion" in str(e):
        return "a value is nested too deeply"
    return str(e)


def _stored_result(result: Result) -> tuple[Result, bytes, dict]:
    """(result, its pickle, its record); a result that cannot be pickled (nested too
    deep) is replaced by an Err saying so: the flow's fault, not a crash to restart."""
    try:
        v = dumps_value(result)
        return result, v, result_record(result, v)
    except _UNSTORABLE as e:
        result = Err(f"the flow's result cannot be stored: {_unstorable_why(e)}")
        v = dumps_value(result)
        return result, v, result_record(result, v)


def module_root_thread(hub: Hub, run: Any) -> Thread:
    """A fresh Thread of a run's main block, from the source stored with the run."""
    from flowmetal.loading import FileLoader
    from flowmetal.prelude import packages, predeclared
    from flowmetal.starlark import start
    src = hub.store.get_code(run.meta["code"])
    if src is None:
        raise LookupError(f"run {run.id}: its source is missing from the store")
    pre = predeclared("__flow__")
    return start(src.decode("utf-8"), run.meta.get("name") or run.file, predeclared=pre,
                 loader=FileLoader(run.file, pre, packages()), max_steps=hub.max_steps)


def load_runner(hub: Hub, flow_id: str) -> tuple[FlowRunner, tuple | None]:
    """Rebuild a flow from the store: its runner, and what to do with it now —
    ("go", outcome, journal) to run it, or ("reissue", seq, intent) for an action
    that has no result yet, or None when it has nothing to do."""
    store = hub.store
    rec = store.get_flow(flow_id)
    if rec is None:
        raise LookupError(f"no flow {flow_id}")
    ck = store.get_checkpoint(flow_id)
    if ck is None:
        run = store.get_run(rec.run_id)
        if run is not None and run.root_flow == flow_id and run.meta.get("mode") == "main":
            # A main-block root that had not reached its first action: it did nothing
            # durable yet, so it starts again from its (stored) source.
            img = FlowImage(module_root_thread(hub, run), None, 0, None, True)
            return (FlowRunner(hub, flow_id, parent=None, name=rec.name, image=img),
                    ("go", ("new",), NOTSET))
        raise LookupError(f"flow {flow_id} has no checkpoint")
    img = ck.load(lambda data: loads_image(data, store.get_code))
    runner = FlowRunner(hub, flow_id, parent=rec.parent, name=rec.name, image=img)
    k = ck.seq
    if k is None:
        return runner, ("go", ("ok", None), NOTSET)
    j = store.get_journal(flow_id, k)
    if j is not None:
        from .codec import outcome_from_record
        return runner, ("go", outcome_from_record(j.result), (k, NOTSET))
    intent = store.get_intent(flow_id, k)
    if intent is None:
        raise LookupError(f"flow {flow_id}: checkpoint waits on action {k}, which has "
                          "neither an intent nor a result")
    runner.pending = k
    return runner, ("reissue", k, intent.request)


class CommitGate:
    """How the FlowActors of one process commit.

    A FlowActor runs on a pool thread, and its batch waits for the end of that
    thread's turn (`actors.pool.Turn`): the turn commits the batches of every actor
    it parked in one transaction, on its own thread — one fsync for all, no handoff
    to another thread — and each actor goes on as soon as its thread may run actors
    again (or crashes, if its batch failed: it restarts from its last checkpoint).
    Off the pool (a handler called by hand) the batch is committed at once.

    With `overlap`, a turn's commit lends the right to run actors to another pool
    thread while its pages are written and fsync'd (`actors.pool.RunnerLoan`): two
    threads then take turns, one running its flows while the other's commit syncs.
    Worth it in a process that has the store to itself; worker processes already
    overlap one another's fsyncs (and there, lending only halves each commit).

    A group of quiet batches only (inline calls': see `FlowRunner._commit`) commits
    without the meta page's sync. With `overlap` and no other actor ready to run
    (a lone flow calling flows: lending would find nothing to run), its own actors
    go on while it syncs: see `_flush_quiet`."""

    def __init__(self, store: Any, *, overlap: bool = True):
        self.store = store
        self.overlap = overlap

    def commit(self, batch: Batch, actor: Any, quiet: bool = False) -> bool:
        """True: `batch` is durable now. False: the actor is parked until it is (or,
        `quiet`, until it is on its way: see `_flush_quiet`)."""
        turn = current_turn()
        if turn is None:
            p, = self.store.commit_group([Pending(batch, after=_take_after(actor))])
            p.result()   # its error, if it failed
            return True
        turn.park(actor, self, (batch, actor, quiet), self._flush)
        return False

    def _flush(self, items: list) -> list:
        # The end of a pool thread's turn: every parked actor's batch in one commit.
        # Each comes after the actor's previous batch, which may still be committing.
        group = [Pending(b, after=_take_after(actor)) for b, actor, _ in items]
        quiet = all(q for _, _, q in items)
        try:
            if quiet and self.overlap and not others_ready():
                return self._flush_quiet(items, group)
            if not self.overlap:
                self.store.commit_group(group, durable=not quiet)
            else:
                loan = RunnerLoan()
                try:
                    self.store.commit_group(group, before_commit=loan.lend,
                                            durable=not quiet)
                finally:
                    loan.take_back()   # after the store's write lock is released
        except BaseException:
            # Not even tried (a closed store): each actor still follows its last batch,
            # which its crash must wait for (see `FlowActor.on_failure`).
            for (_, actor, _), p in zip(items, group):
                if p.after is not None:
                    actor.after = p.after
            raise
        return [_durable_then(actor, p.exception()) for (_, actor, _), p in zip(items, group)]

    def _flush_quiet(self, items: list, group: list) -> list:
        # Every batch is quiet: what follows each one tells no one anything, so its
        # actor need not wait for the commit, only come after it in the store. The
        # store's committer thread commits the group; once it has applied it (has
        # the write lock, and each batch's own failure is known), the actors go on
        # here — a parked Thread resumes only on its own OS thread — while that
        # thread writes and syncs the pages (no GIL needed). An actor's next batch
        # names this one as `after` and so is applied only if this one committed;
        # if it did not, that batch fails with its error and the actor restarts
        # from its last checkpoint, before which nothing it ran meanwhile was seen.
        applied = threading.Event()
        self.store.start_group(group, before_commit=applied.set, durable=False)
        group[0].add_done_callback(lambda _: applied.set())   # failed before it
        applied.wait()
        out = []
        for (_, actor, _), p in zip(items, group):
            err = p.known_error()
            if err is None:
                actor.after = p
            out.append(_durable_then(actor, err))
        return out


def _take_after(actor: Any) -> Pending | None:
    after = getattr(actor, "after", None)
    if after is not None:
        actor.after = None
    return after


def _durable_then(actor: Any, error: BaseException | None) -> Any:
    return lambda: actor.runner.durable(error)


class _ActorCommitter:
    __slots__ = ("gate", "actor")

    def __init__(self, gate: CommitGate, actor: Any):
        self.gate = gate
        self.actor = actor

    def commit(self, batch: Batch, quiet: bool = False) -> bool:
        return self.gate.commit(batch, self.actor, quiet)


class FlowActor(PooledActor):
    """The actor of one live flow. Messages: ("load"), ("load_then", message),
    ("go", outcome, journal), ("resume", seq, outcome), ("reissue", seq, intent).
    Everything else arrives through the hub. Its mailbox runs on the process's actor
    pool; its commits park it until its pool thread's turn ends."""

    def __init__(self, hub: Any, flow_id: str, runner: FlowRunner | None = None,
                 first: tuple | None = None):
        super().__init__()
        self.hub = hub
        self.flow_id = flow_id
        self.runner = None
        # Its last batch, if the actor went on while it was committed (see
        # `CommitGate._flush_quiet`): its next one follows from it.
        self.after: Pending | None = None
        self._committer = _ActorCommitter(hub.commits, self)
        if runner is not None:
            self._adopt(runner)
        if first is not None:
            # Queued before the ref is handed out, so that it is the first message
            # whatever others send the moment `start` returns.
            self.actor_ref.tell(first)

    def _adopt(self, runner: FlowRunner) -> None:
        runner.committer = self._committer
        self.runner = runner

    def on_receive(self, message: Any) -> Any:
        kind = message[0]
        if kind in ("load", "load_then"):
            runner, what = load_runner(self.hub, self.flow_id)
            self._adopt(runner)
            if kind == "load_then":
                then = message[1]
                # A reply for the action it waits on wins over re-issuing it.
                if then[0] == "resume" and what is not None and what[0] == "reissue" \
                        and what[1] == then[1]:
                    what = then
            if what is not None:
                self.on_receive(what)
        elif kind == "go":
            _, outcome, journal = message
            r = self.runner
            if r.done:
                return None
            r.step(outcome, journal)
        elif kind == "resume":
            _, seq, outcome = message
            r = self.runner
            if r.done or r.pending != seq:
                return None  # stale: an earlier incarnation's reply
            if outcome[0] == UNAVAILABLE:
                # Not the flow's fault, and no result to journal: the action stays
                # pending, and the supervisor's restarts issue it again (past them,
                # the run is `crashed`, to be resumed once the cause is mended).
                raise ActionUnavailable(outcome[1])
            r.step(outcome, (seq, outcome_record(outcome)))
        elif kind == "reissue":
            _, seq, intent = message
            self.hub.reissue(self.flow_id, seq, intent, self)
        return None

    def on_failure(self, exc_type: Any, exc_value: Any, tb: Any) -> None:
        after = _take_after(self)
        if after is not None:
            # Its last batch may still be committing: the restart reads the store,
            # which must have settled by then.
            after.exception()
        r = self.runner
        if r is not None and r.thread is not None and r.thread.status == "parked":
            # Crashed with its caller parked (a failed inline-call commit): unwind that
            # stack now, on the thread it parked on, or it would never be freed.
            try:
                r.thread.capture()
            except Exception:  # noqa: BLE001 - the crash is what gets reported
                pass
        if isinstance(exc_value, ActionUnavailable):
            text = str(exc_value)   # says what is missing and how to provide it
        else:
            text = "".join(traceback.format_exception_only(exc_type, exc_value)).strip()
        self.hub.crashed(self.flow_id, text)
