"""Pooled pykka actors: many actors' mailboxes served by a few shared OS threads.

`pykka.ThreadingActor` gives every actor its own OS thread. A FlowActor is idle
almost all of its life (waiting for a commit, a command, a child), and a runtime
hosts thousands of them at once: a thread each costs memory, start-up time and —
worst — GIL convoys when hundreds of them become runnable together. `PooledActor`
keeps pykka's actor model exactly (an `ActorRef`, `tell`/`ask`/`stop`, one message
at a time per actor, `on_start`/`on_receive`/`on_failure`/`on_stop`, registration in
`ActorRegistry`) but runs the actor's mailbox on a `Dispatcher`: a small pool of
threads that takes whichever actor has mail, processes a slice of its messages and
moves on (the dispatcher model of Akka/Erlang schedulers). An actor is never run by
two pool threads at once: a mailbox is scheduled at most once at a time.

A handler must not block for long (it would hold a pool thread). Instead it may
*park* its actor for the rest of the pool thread's current **turn**: `Turn.park`
queues work to do at the end of the turn (for FlowActors, a store batch) and keeps
the actor scheduled, so no other thread runs it and its later mail waits. A pool
thread runs ready actors until none is ready, `TURN_MAX` are parked or the first
parked one has waited `TURN_SECONDS`, then ends the turn: each parked kind of work
is done once for all (one store transaction, one fsync, for every FlowActor parked
on a commit) and every parked actor goes on from where it stopped, on this thread —
no committer thread, no message per commit.

Only one pool thread runs actors at a time (it holds the dispatcher's token); the
others join in only while it has been stuck in one slice or turn end for
`SHARE_AFTER` (a long flow step, a slow fsync). Two threads running side by side
mostly hand the GIL back and forth. So an `ask` from one pooled actor to another
on the same dispatcher waits `SHARE_AFTER` before the other thread answers it:
pooled actors should `tell`.

A turn's commit may lend the token for the length of its page writes and fsync,
which need no GIL (`RunnerLoan`): another thread runs actors meanwhile, and the two
take turns rather than run side by side, each running its own parked actors'
continuations while the other's commit syncs.
"""

from __future__ import annotations

import collections
import os
import sys
import threading
import time
from typing import Any

import pykka
from pykka import ActorDeadError, ActorRegistry, messages
from pykka._threading import ThreadingFuture  # the Future type pykka's ask expects

# Messages one actor may process before yielding its pool thread to others.
SLICE = 16
# Actors one pool thread may park before it ends its turn (does their work), and the
# longest a parked actor waits for that: enough to spread one fsync over many
# commits, little enough to keep each one's latency low.
TURN_MAX = 128
TURN_SECONDS = 0.010
# How long the pool thread running actors may stay in one slice before another runs
# alongside it (see `Dispatcher`).
SHARE_AFTER = 0.100


class Turn:
    """The work a pool thread owes the actors it parked during its current turn.

    `park(actor, key, item, flush)` queues ``item`` under ``key``; at the end of the
    turn ``flush(items)`` is called once per key with every item queued under it, and
    must return one ``fn()`` per item (in order): the parked actor's continuation,
    run as if it were a message (an exception in it is the actor's failure)."""

    __slots__ = ("groups", "parked", "since")

    def __init__(self) -> None:
        self.groups: dict[Any, tuple[Any, list]] = {}   # key -> (flush, [(actor, item)])
        self.parked = 0
        self.since = 0.0   # time.monotonic() of the turn's first park

    def park(self, actor: "PooledActor", key: Any, item: Any, flush: Any) -> None:
        g = self.groups.get(key)
        if g is None:
            g = self.groups[key] = (flush, [])
        g[1].append((actor, item))
        if not self.parked:
            self.since = time.monotonic()
        self.parked += 1
        actor._parked = True

    def end(self) -> None:
        """Do the parked work, then let each parked actor go on (it may park again:
        into the next turn)."""
        groups = self.groups
        self.groups = {}
        self.parked = 0
        for flush, members in groups.values():
            try:
                conts = flush([item for _, item in members])
            except BaseException as e:  # noqa: BLE001 - each actor hears of it
                err = e

                def fail() -> None:
                    raise err
                conts = [fail] * len(members)
            for (actor, _), fn in zip(members, conts):
                try:
                    actor._unpark(fn)
                except BaseException:  # noqa: BLE001 - the others must still go on
                    import traceback
                    traceback.print_exc()


_local = threading.local()


def current_turn() -> Turn | None:
    """The turn of the pool thread running the calling actor (None off the pool)."""
    return getattr(_local, "turn", None)


def others_ready() -> bool:
    """Whether actors wait to run on the calling pool thread's dispatcher (False off
    the pool)."""
    d = getattr(_local, "dispatcher", None)
    return bool(d is not None and d._ready)


class Dispatcher:
    """A fixed pool of daemon threads running scheduled actors, FIFO.

    ``turn_seconds`` and ``turn_max`` bound a turn (see `Turn`); they are plain
    attributes, read at every turn, so a process may change them for its own."""

    def __init__(self, threads: int, name: str = "flowmetal-actors", *,
                 turn_seconds: float = TURN_SECONDS, turn_max: int = TURN_MAX) -> None:
        self.turn_seconds = turn_seconds
        self.turn_max = turn_max
        self._ready: collections.deque = collections.deque()
        self._cond = threading.Condition(threading.Lock())
        # The right to run actors. Python runs one thread at a time anyway, and two
        # pool threads running flows side by side mostly hand the GIL back and forth
        # (py-lmdb lets go of it around every get and put): ~30% of the throughput
        # lost. So one thread runs while there is work; another joins in only
        # while the holder has been in one slice (or turn end) for `SHARE_AFTER` —
        # a long step of one flow holds up the others by that much at most.
        self._token = threading.Lock()
        self._busy_since = 0.0   # when the token's holder began its current slice
        self._threads = []
        for i in range(threads):
            t = threading.Thread(target=self._loop, name=f"{name}-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def schedule(self, actor: "PooledActor") -> None:
        with self._cond:
            self._ready.append(actor)
            self._cond.notify()

    def _loop(self) -> None:
        ready, cond, token = self._ready, self._cond, self._token
        turn = _local.turn = Turn()
        _local.dispatcher = self
        _local.holding = holding = False
        while True:
            actor = None
            with cond:
                while True:
                    if holding:
                        if ready or turn.parked:
                            break
                        token.release()   # idle: the token goes to whoever has work
                        _local.holding = holding = False
                    elif turn.parked:
                        # End our own turn first, token or not — with it if it is free
                        # (after running alongside, this is how a thread gets back
                        # to committing groups rather than one batch at a time).
                        if token.acquire(False):
                            _local.holding = holding = True
                        break
                    elif ready:
                        if token.acquire(False):
                            _local.holding = holding = True
                            break
                        # Run alongside the holder only while it is stuck in one long
                        # slice; until then leave the actor in `ready` (the holder
                        # takes it) and look again soon.
                        if time.monotonic() - self._busy_since > SHARE_AFTER:
                            break
                        cond.wait(SHARE_AFTER / 4)
                        continue
                    cond.wait()
                if ready and (holding or not turn.parked):
                    actor = ready.popleft()
            try:
                if holding:
                    self._busy_since = time.monotonic()
                if actor is not None:
                    actor._run_slice()
                # Also bounded in time, so that actors that never park (or run long
                # steps) cannot keep the parked ones waiting; a thread running without
                # the token ends its turn at once.
                if turn.parked and (not holding or not ready or
                                    turn.parked >= self.turn_max or
                                    time.monotonic() - turn.since > self.turn_seconds):
                    if holding:
                        self._busy_since = time.monotonic()
                    try:
                        turn.end()
                    finally:
                        holding = _local.holding   # it may have lent the token
            except BaseException:  # noqa: BLE001 - a pool thread must survive anything
                import traceback
                traceback.print_exc()

    def _lend(self) -> None:
        # The holder is about to block without the GIL (a commit's fsync): another
        # pool thread may run actors meanwhile.
        # A thread back from its own commit waits on the token itself; one idle in
        # `_loop` is woken only if there are actors to run (else waking it costs more
        # than the loan can gain: a lone flow's commit).
        with self._cond:
            self._token.release()
            _local.holding = False
            if self._ready:
                self._cond.notify()

    def _take_back(self) -> None:
        # The parked actors' continuations wait for the token like any other work:
        # until its holder lets go (idle, or lending it for its own commit), or has
        # been stuck in one slice for `SHARE_AFTER` (then run alongside it).
        token = self._token
        while not token.acquire(timeout=SHARE_AFTER / 4):
            if time.monotonic() - self._busy_since > SHARE_AFTER:
                return
        _local.holding = True
        self._busy_since = time.monotonic()


class RunnerLoan:
    """Lends a pool thread's right to run actors (see `Dispatcher`) to another pool
    thread for the length of a call that blocks without needing the GIL — a group
    commit's page writes and fsync — so that actors run meanwhile:

        loan = RunnerLoan()
        try:
            store.commit_group(batches, before_commit=loan.lend)
        finally:
            loan.take_back()

    `take_back` waits until the right is free again — or, as any pool thread with
    work does, until its holder has been stuck in one slice for `SHARE_AFTER`, and
    then goes on without it, alongside. Call it only once nothing is held that the
    other thread might need (the store's write lock: waiting for the right with it
    held stalls both threads until that fallback). `lend` may be called more than
    once (a retried commit); it lends once. Off the pool, or on a thread that does
    not hold the right, both are no-ops."""

    __slots__ = ("dispatcher", "lent")

    def __init__(self) -> None:
        d = getattr(_local, "dispatcher", None)
        self.dispatcher = d if d is not None and _local.holding else None
        self.lent = False

    def lend(self) -> None:
        if self.dispatcher is not None and not self.lent:
            self.lent = True
            self.dispatcher._lend()

    def take_back(self) -> None:
        if self.lent:
            self.lent = False
            self.dispatcher._take_back()


_default: Dispatcher | None = None
_default_pid: int | None = None
_default_lock = threading.Lock()


def default_dispatcher() -> Dispatcher:
    """The process's dispatcher (made on first use, again after fork). Its size:
    ``$FLOWMETAL_ACTOR_THREADS``, else 2 — flows are CPU-bound Python (one GIL) and
    only one thread runs actors at a time (see `Dispatcher`); the second keeps the
    others going while one flow runs a long step, or while a commit syncs
    (`RunnerLoan`)."""
    global _default, _default_pid
    pid = os.getpid()
    if _default is None or _default_pid != pid:
        with _default_lock:
            if _default is None or _default_pid != pid:
                n = int(os.environ.get("FLOWMETAL_ACTOR_THREADS", "2"))
                _default = Dispatcher(max(1, n))
                _default_pid = pid
    return _default


class _Mailbox:
    """An actor inbox (pykka's `ActorInbox` protocol) that schedules its owner on the
    dispatcher when mail arrives while it is not already scheduled."""

    __slots__ = ("q", "lock", "scheduled", "owner")

    def __init__(self) -> None:
        self.q: collections.deque = collections.deque()
        self.lock = threading.Lock()
        self.scheduled = True   # until the actor has started
        self.owner: PooledActor | None = None

    def put(self, envelope: Any, /) -> None:
        with self.lock:
            self.q.append(envelope)
            if self.scheduled:
                return
            self.scheduled = True
        self.owner._dispatcher.schedule(self.owner)

    def get(self) -> Any:
        return self.q.popleft()

    def empty(self) -> bool:
        return not self.q


def stop_soon(ref: pykka.ActorRef) -> None:
    """Stop the actor once it has handled the mail it has, as ``ref.stop(block=False)``
    does, without the future for an answer nobody waits for (making one costs more
    than the rest of a short-lived flow actor's stop)."""
    try:
        ref.tell(messages._ActorStop())  # noqa: SLF001 - pykka's own stop message
    except ActorDeadError:
        pass


class PooledActor(pykka.Actor):
    """A pykka actor whose mailbox runs on a shared `Dispatcher` instead of its own
    thread. Same semantics as `ThreadingActor` as far as its users can tell: a
    `tell` that raises stops the actor and calls `on_failure`; an `ask` that raises
    answers the caller with the exception and the actor goes on."""

    dispatcher: Dispatcher | None = None   # None: the process's default dispatcher

    @staticmethod
    def _create_actor_inbox() -> Any:
        return _Mailbox()

    @staticmethod
    def _create_future() -> Any:
        return ThreadingFuture()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.actor_inbox.owner = self
        self._dispatcher = self.dispatcher or default_dispatcher()
        self._started = False
        self._parked = False   # see `Turn.park`: its mail waits for the turn's end

    def _start_actor_loop(self) -> None:
        self._dispatcher.schedule(self)

    def _run_slice(self) -> None:
        box = self.actor_inbox
        if not self._started:
            self._started = True
            self._actor_loop_setup()
        n = 0
        while not self.actor_stopped.is_set() and n < SLICE:
            with box.lock:
                if not box.q:
                    box.scheduled = False
                    return
                envelope = box.q.popleft()
            n += 1
            self._handle(envelope)
            if self._parked:
                return  # still scheduled: the turn's end goes on with it
        if self.actor_stopped.is_set():
            self._teardown()
            return
        with box.lock:
            if not box.q:
                box.scheduled = False
                return
        self._dispatcher.schedule(self)  # more mail: go to the back of the queue

    def _handle(self, envelope: Any) -> None:
        # The body of pykka's `_actor_loop_running`, for one envelope.
        try:
            response = self._handle_receive(envelope.message)
            if envelope.reply_to is not None:
                envelope.reply_to.set(response)
        except Exception:
            if envelope.reply_to is not None:
                envelope.reply_to.set_exception()
            else:
                self._fail()
        except BaseException:  # noqa: BLE001
            self._stop()
            ActorRegistry.stop_all(block=False)

    def _fail(self) -> None:
        # What pykka does when a `tell` raises: the actor stops, `on_failure` hears.
        self._handle_failure(*sys.exc_info())
        try:
            self.on_failure(*sys.exc_info())
        except Exception:  # noqa: BLE001
            self._handle_failure(*sys.exc_info())

    def _unpark(self, fn: Any) -> None:
        """Go on after the turn's end: run `fn` as a told message would run, then the
        rest of the mailbox (the actor is still scheduled, on this thread)."""
        self._parked = False
        try:
            fn()
        except Exception:  # noqa: BLE001
            self._fail()
        except BaseException:  # noqa: BLE001
            self._stop()
            ActorRegistry.stop_all(block=False)
        if not self._parked:
            self._run_slice()

    def _teardown(self) -> None:
        # Later mail is refused the way pykka refuses it: asks fail, tells are dropped.
        box = self.actor_inbox
        with box.lock:
            left = list(box.q)
            box.q.clear()
            box.scheduled = True   # never again
        for envelope in left:
            if envelope.reply_to is not None:
                if isinstance(envelope.message, messages._ActorStop):  # noqa: SLF001
                    envelope.reply_to.set(None)
                else:
                    envelope.reply_to.set_exception(exc_info=(
                        ActorDeadError, ActorDeadError(
                            f"{self.actor_ref} stopped before handling the message"), None))
