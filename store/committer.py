"""Group commit: one thread applies the batches of many callers in one LMDB write
transaction (one fsync), and tells each caller when its own batch is durable.

Each batch of a group runs in a nested transaction, so a batch that fails (a bad id, a
conflict) is rolled back alone and its caller gets its error; the others commit. A
caller that finds nothing queued and the writer free commits inline on its own thread
instead, which saves two thread switches when there is no one to share the fsync with.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import lmdb

from .batch import Batch, Writer
from .errors import StoreClosedError, StoreFullError

MAX_GROUP = 4000

# LMDB errors that doom the whole transaction rather than one batch of it.
_GLOBAL = (lmdb.MapFullError, lmdb.MapResizedError, lmdb.PanicError, lmdb.DiskError,
           lmdb.TxnFullError, lmdb.CorruptedError)

_cb_lock = threading.Lock()


class Pending:
    """A submitted batch: wait with `result()`, or be called back when it is durable.

    ``after``: an earlier batch this one follows from, committed before it (the same
    writer's previous batch, whose commit it did not wait for): if that one failed,
    this one fails with its error, and nothing of it is written."""

    __slots__ = ("batch", "after", "_waiter", "_result", "_error", "_done", "_callbacks")

    def __init__(self, batch: Batch, after: "Pending | None" = None) -> None:
        self.batch = batch
        self.after = after
        self._waiter: threading.Lock | None = None  # made by the first result() that waits
        self._result: list | None = None
        self._error: BaseException | None = None
        self._done = False
        self._callbacks: list | None = None

    def done(self) -> bool:
        """True once the batch is durable or has failed."""
        return self._done

    def known_error(self) -> BaseException | None:
        """The batch's error if it is known to have failed. Before it is done, None
        means only "not yet": its group's commit may still fail."""
        return self._error

    def result(self, timeout: float | None = None) -> list:
        """Wait until the batch is durable and return its operation results, or raise
        its error. TimeoutError if ``timeout`` seconds pass first (it may still commit).
        Never call it from a done-callback on a Pending that is not done: the callback
        runs on the committer thread, which would wait for itself."""
        if not self._done:
            with _cb_lock:
                w = self._waiter
                if w is None and not self._done:
                    w = self._waiter = threading.Lock()
                    w.acquire()
            if w is not None:
                if not w.acquire(True, -1 if timeout is None else timeout):
                    raise TimeoutError("the store did not commit the batch in time")
                w.release()  # for other waiters
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The batch's error once done (None if it committed)."""
        try:
            self.result(timeout)
        except TimeoutError:
            raise
        except BaseException as e:  # noqa: BLE001
            return e
        return None

    def add_done_callback(self, fn: Callable[["Pending"], Any]) -> None:
        """Call ``fn(pending)`` once done — at once if it is; else on the committer thread
        (keep it short: hand work to another thread, never wait for a commit in it)."""
        with _cb_lock:
            if not self._done:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(fn)
                return
        fn(self)

    def _finish(self) -> None:
        with _cb_lock:
            self._done = True
            cbs = self._callbacks
            self._callbacks = None
            w = self._waiter
        if w is not None:
            w.release()
        if cbs:
            for fn in cbs:
                try:
                    fn(self)
                except Exception:  # noqa: BLE001 - a callback's failure is its own
                    import traceback
                    traceback.print_exc()


def commit_now(env, group: list[Pending],
               before_commit: Callable[[], None] | None = None, *,
               durable: bool = True) -> None:
    """Commit the group in one write transaction on this thread, then finish each
    Pending (see `store.Store.commit_group`)."""
    with env.write_lock:
        for p in group:
            if not p.batch.ops and not _failed_before(p):
                p._result = []
        apply_group(env, [p for p in group if p.batch.ops], before_commit, durable=durable)
    for p in group:
        p._finish()


def apply_group(env, group: list[Pending],
                before_commit: Callable[[], None] | None = None, *,
                durable: bool = True) -> None:
    """Apply the group's batches in one write transaction; the caller holds
    ``env.write_lock``. Sets each Pending's result or error (not `_finish`).
    ``before_commit`` and ``durable``: as for `Env.write`."""
    app_version = env.app_version

    # First all batches flat in one txn (cheapest); if one fails, the txn is rolled back
    # and redone with each batch in a nested txn so that only the failing ones drop out.
    nested = False

    def run(txn) -> None:
        nonlocal nested
        now = time.time()
        if not nested:
            w = Writer(txn, env.db, now, app_version)
            for p in group:
                if p._error is not None or _failed_before(p):
                    continue
                try:
                    p._result = w.apply(p.batch)
                except _GLOBAL:
                    raise
                except Exception as e:  # noqa: BLE001 - this batch's own failure
                    p._error = e
                    p._result = None
                    nested = True
                    raise _Retry() from None
            return
        for p in group:
            if p._error is not None or _failed_before(p):
                continue
            sub = env.env.begin(write=True, parent=txn)
            try:
                p._result = Writer(sub, env.db, now, app_version).apply(p.batch)
            except _GLOBAL:
                sub.abort()
                raise
            except Exception as e:  # noqa: BLE001 - this batch's own failure
                sub.abort()
                p._error = e
                p._result = None
            else:
                sub.commit()

    while True:
        try:
            env.write(run, before_commit, durable=durable)
            return
        except _Retry:
            if len(group) == 1:
                return
            continue
        except StoreFullError as e:
            if len(group) > 1:
                # Full, perhaps because of one big batch: give each batch its own chance.
                for p in group:
                    if p._error is None:
                        apply_group(env, [p], before_commit, durable=durable)
                return
            err: BaseException = e
        except BaseException as e:  # noqa: BLE001 - the whole transaction failed
            err = e
        for p in group:
            if p._error is None:
                p._error = err
                p._result = None
        return


def _failed_before(p: Pending) -> bool:
    # `p.after` was applied (or failed) under the write lock that the caller holds
    # now: its error, if any, is set. Dropped once seen, so that chains of batches
    # do not keep each other alive.
    after = p.after
    if after is None:
        return False
    p.after = None
    if after._error is None:
        return False
    p._error = after._error
    p._result = None
    return True


class _Retry(Exception):
    pass


class _Group:
    """A whole group handed to the committer thread (`Committer.submit_group`)."""

    __slots__ = ("group", "before_commit", "durable")

    def __init__(self, group: list[Pending], before_commit: Any, durable: bool) -> None:
        self.group = group
        self.before_commit = before_commit
        self.durable = durable


class Committer:
    """The group-commit thread of one environment (started on first use)."""

    def __init__(self, env) -> None:
        self.env = env
        self._q: list[Pending | _Group] = []
        self._cond = threading.Condition(threading.Lock())
        self._waiting = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.groups = 0      # statistics: groups committed
        self.batches = 0     # and batches in them

    def idle(self) -> bool:
        return not self._q

    def submit(self, batch: Batch) -> Pending:
        p = Pending(batch)
        self._put(p)
        return p

    def submit_group(self, group: list[Pending], before_commit: Any = None,
                     durable: bool = True) -> None:
        """Commit these Pendings in one transaction of their own, in turn with what
        was submitted before, as `commit_now` would."""
        self._put(_Group(group, before_commit, durable))

    def _put(self, entry: "Pending | _Group") -> None:
        with self._cond:
            if self._stopping:
                raise StoreClosedError(f"store {self.env.home} is closed")
            self._q.append(entry)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="flowmetal-store-committer")
                self._thread.start()
            elif self._waiting:
                self._cond.notify()

    def _run(self) -> None:
        cond = self._cond
        while True:
            with cond:
                while not self._q:
                    if self._stopping:
                        return
                    self._waiting = True
                    cond.wait()
                    self._waiting = False
                q = self._q
                if isinstance(q[0], _Group):
                    job = q.pop(0)
                else:
                    job = None
                    n = 1
                    while n < len(q) and n < MAX_GROUP and not isinstance(q[n], _Group):
                        n += 1
                    group = q[:n]
                    del q[:n]
            if job is not None:
                group = job.group
                commit_now(self.env, group, job.before_commit, durable=job.durable)
            else:
                commit_now(self.env, group)
            self.groups += 1
            self.batches += len(group)

    def stop(self) -> None:
        """Commit what is queued, then end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
            t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join()
