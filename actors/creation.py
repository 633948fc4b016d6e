"""Run creations that ride on the root flow's first commit.

A new run is one batch: its source, the run record, the root flow record and (for a
named flow) the root's start checkpoint. Committed on its own before the root runs,
that is one more fsync per run — for a trivial run, half of its commits. Instead the
creation can go in with the root flow's first commit (its first suspension, or its
end for a run that acts on nothing), the FlowRunner putting it in front of that
batch. `PendingCreations` keeps each such creation until it is durable, one way or
the other:

- the root's first commit carries it, and once that commit is durable the runner
  tells its hub (`created`; from a worker process, by a message to the parent);
- or, when that has not happened within `GRACE` seconds (a long first step, a busy
  worker, a worker that died), a fallback thread commits it alone — the creations
  due together in one transaction.

Both writers may get there: the creation is guarded (`Batch.unless_run_exists`), so
whichever commits second changes nothing. Each creation's callback is called once,
when the run is in the store (or with the error that kept it out); nobody may learn
the run's id before that, as a crash would otherwise lose a run someone was told of.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from store import Batch

# How long a creation waits for the root's first commit before it is committed alone
# (a root that crashes before that commit has its run committed at once):
# longer than a trivial run takes from submission to its end (a few ms), short enough
# that a client waiting for the run's id hardly notices.
GRACE = 0.02

# How long a creation whose fallback commit failed waits before the next try.
RETRY = 0.5

OnCreated = Callable[[BaseException | None], None]


class _Creation:
    __slots__ = ("batch", "on_created", "due")

    def __init__(self, batch: Batch, on_created: OnCreated, due: float):
        self.batch = batch
        self.on_created = on_created
        self.due = due


class PendingCreations:
    """Creations of runs not yet known to be durable, by run id. Thread-safe."""

    def __init__(self, store: Any, grace: float = GRACE):
        self.store = store
        self.grace = grace
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: dict[str, _Creation] = {}
        self._closed = False
        self._thread: threading.Thread | None = None

    def add(self, run_id: str, creation: Batch, on_created: OnCreated) -> Batch:
        """Keep `creation` (the run's whole creation) until it is durable; returns the
        guarded batch the root's first commit must carry in front of its own."""
        guarded = Batch().unless_run_exists(run_id, creation)
        with self._lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._fallback, daemon=True,
                                                name="run-creations")
                self._thread.start()
            was_empty = not self._pending
            self._pending[run_id] = _Creation(guarded, on_created,
                                              time.monotonic() + self.grace)
            if was_empty:
                self._wake.notify()
            closed = self._closed
        if closed:
            # No fallback any more, and no root will run: store it now (or say why not).
            self.commit_now([run_id])
        return guarded

    def __contains__(self, run_id: str) -> bool:
        return run_id in self._pending

    def resolved(self, run_id: str) -> None:
        """The root's first commit (which carried the creation) is durable."""
        with self._lock:
            c = self._pending.pop(run_id, None)
        if c is not None:
            _call(c, None)

    def commit_now(self, run_ids: list[str] | None = None) -> None:
        """Commit these pending creations (all with None) at once, in one transaction,
        and resolve them — with the error, if that fails: for a root that crashed
        before its first commit (nothing else will commit its creation), and at
        shutdown."""
        with self._lock:
            ids = list(self._pending) if run_ids is None else \
                [r for r in run_ids if r in self._pending]
            todo = [self._pending[r] for r in ids]
        self._commit(ids, todo, retry=False)

    def close(self) -> None:
        """Stop the fallback thread and commit everything still pending."""
        with self._lock:
            self._closed = True
            self._wake.notify()
        self.commit_now()

    def _commit(self, ids: list[str], todo: list[_Creation], retry: bool) -> None:
        """Commit `todo` and resolve each. A failed creation is resolved with its
        error — unless `retry` (the fallback's commit): its root may still commit it,
        so it stays pending, to be tried again after `RETRY` seconds (a root that
        fails to commit it crashes, and `commit_now` reports the error then)."""
        if not todo:
            return
        try:
            errors = [p.exception() for p in self.store.commit_group([c.batch for c in todo])]
        except Exception as e:  # noqa: BLE001 - the store is closed or broken
            errors = [e] * len(todo)
        again = time.monotonic() + max(RETRY, self.grace)
        done = []
        with self._lock:
            for r, c, err in zip(ids, todo, errors):
                if self._pending.get(r) is not c:
                    continue   # the root's announcement resolved it meanwhile
                del self._pending[r]
                if err is not None and retry and not self._closed:
                    c.due = again   # to the back: pending entries stay in due order
                    self._pending[r] = c
                else:
                    done.append((c, err))
        for c, err in done:
            _call(c, err)

    def _fallback(self) -> None:
        while True:
            with self._lock:
                while not self._closed:
                    if self._pending:
                        # Kept in due order (one grace for all, retries at the back):
                        # the first is due first.
                        wait = next(iter(self._pending.values())).due - time.monotonic()
                        if wait <= 0:
                            break
                        self._wake.wait(wait)
                    else:
                        self._wake.wait()
                if self._closed:
                    return
                now = time.monotonic()
                ids, todo = [], []
                for r, c in self._pending.items():
                    if c.due > now:
                        break
                    ids.append(r)
                    todo.append(c)
            self._commit(ids, todo, retry=True)


def _call(c: _Creation, error: BaseException | None) -> None:
    try:
        c.on_created(error)
    except Exception:  # noqa: BLE001 - a waiter's bug must not stop the others
        pass
