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

A handler must not block for long (it would hold a pool thread): FlowActors hand
their commits to the store's group committer and get a message back when durable.
"""

from __future__ import annotations

import collections
import os
import sys
import threading
from typing import Any

import pykka
from pykka import ActorDeadError, ActorRegistry, messages
from pykka._threading import ThreadingFuture  # the Future type pykka's ask expects

# Messages one actor may process before yielding its pool thread to others.
SLICE = 16


class Dispatcher:
    """A fixed pool of daemon threads running scheduled actors, FIFO."""

    def __init__(self, threads: int, name: str = "flowmetal-actors") -> None:
        self._ready: collections.deque = collections.deque()
        self._cond = threading.Condition(threading.Lock())
        self._threads = []
        for i in range(threads):
            t = threading.Thread(target=self._loop, name=f"{name}-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def backlog(self) -> int:
        """How many actors wait for a thread (a hint: it changes as you look)."""
        return len(self._ready)

    def schedule(self, actor: "PooledActor") -> None:
        with self._cond:
            self._ready.append(actor)
            self._cond.notify()

    def _loop(self) -> None:
        ready, cond = self._ready, self._cond
        while True:
            with cond:
                while not ready:
                    cond.wait()
                actor = ready.popleft()
            try:
                actor._run_slice()
            except BaseException:  # noqa: BLE001 - a pool thread must survive anything
                import traceback
                traceback.print_exc()


_default: Dispatcher | None = None
_default_pid: int | None = None
_default_lock = threading.Lock()


def default_dispatcher() -> Dispatcher:
    """The process's dispatcher (made on first use, again after fork). Its size:
    ``$FLOWMETAL_ACTOR_THREADS``, else 2 — flows are CPU-bound Python (one GIL), so
    more threads only add switching (measured: 4 threads ~10% slower than 2 on 1,000
    busy flows); a second one lets work go on while one thread commits alone or
    reads the store."""
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
                self._handle_failure(*sys.exc_info())
                try:
                    self.on_failure(*sys.exc_info())
                except Exception:  # noqa: BLE001
                    self._handle_failure(*sys.exc_info())
        except BaseException:  # noqa: BLE001
            self._stop()
            ActorRegistry.stop_all()

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
