"""The batch supervisor: one run per input item, at most N at a time, durably.

A batch lives in the store (`Batch.create_batch`): the flow's source by content hash,
the flow name, default arguments and concurrency in its meta, one item per input
line. The supervisor is one thread fed by a queue (new batches, finished runs,
retries), so the bookkeeping needs no locks and every decision is made in one place.

Durability: an item's run id is deterministic (``BATCH-INDEX``, ``-aN`` for the Nth
retry), and the item is marked ``running`` with that id *before* the run is created.
After a crash an item is therefore in one of these states, each with one answer:
``pending`` (start it), ``running`` with no such run (the crash came between the two
commits: start it), ``running`` with a live run (the runtime recovers that run; wait
for it), ``running`` with an ended run (record its end), ended (count it). No item is
ever run twice, and no finished item is redone.

Each item update also writes the batch's counts into the batch record, so progress
can be read with one `get_batch` however large the batch is.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from typing import Any

from store import Batch

log = logging.getLogger("flowmetal.daemon")

LIVE = ("pending", "running", "waiting")
ENDED = ("ok", "err", "cancelled", "crashed")


def item_run_id(batch_id: str, index: int, attempt: int) -> str:
    return f"{batch_id}-{index}" + (f"-a{attempt}" if attempt else "")


class _BatchState:
    def __init__(self, rec: Any):
        self.id = rec.id
        self.meta = dict(rec.meta)
        self.size = rec.size
        self.concurrency = max(1, int(self.meta.get("concurrency") or 1))
        # Lowered when the user's concurrent-flows quota refuses an item (see `_done`).
        self.limit = self.concurrency
        self.calm = 0   # items ended since the width was last changed
        self.pending: deque[int] = deque()
        self.running: dict[int, str] = {}
        self.args: dict[int, Any] = {}
        self.attempt: dict[int, int] = {}
        self.ok = 0
        self.failed = 0      # items that ended other than ok (cancelled ones too)
        self.cancelled_items = 0   # of those, the cancelled
        self.source: str | None = None
        # `batch cancel`: no item starts again; the batch ends `cancelled`.
        self.cancelled = bool(self.meta.get("cancel"))

    def ended_not_ok(self, state: str, n: int = 1) -> None:
        """Count `n` items ended in `state` (err, crashed or cancelled); negative `n`
        takes them back (a retry)."""
        self.failed += n
        if state == "cancelled":
            self.cancelled_items += n

    def counts(self) -> dict:
        c = {"ok": self.ok, "failed": self.failed - self.cancelled_items,
             "running": len(self.running), "pending": len(self.pending)}
        if self.cancelled_items:
            c["cancelled"] = self.cancelled_items
        return c


class BatchSupervisor:
    """Runs batches on a `Runtime`; `start()` after `load()`, events via the methods."""

    def __init__(self, store: Any, runtime: Any):
        self.store = store
        self.rt = runtime
        self.q: queue.Queue = queue.Queue()
        self.batches: dict[str, _BatchState] = {}
        self.by_run: dict[str, tuple[str, int]] = {}
        self.thread = threading.Thread(target=self._loop, name="batch-supervisor",
                                       daemon=True)
        self.stopping = False

    # ------------------------------------------------------------ other threads
    def run_done(self, run_id: str) -> None:
        """A run ended (called from the runtime's listener: must not block)."""
        if run_id in self.by_run:
            self.q.put(("done", run_id))

    def add(self, batch_id: str) -> None:
        self.q.put(("add", batch_id))

    def retry(self, batch_id: str, timeout: float = 30.0) -> int:
        """Put the batch's failed items back to pending; how many. Raises LookupError."""
        return self._ask(("retry", batch_id), timeout)

    def cancel(self, batch_id: str, timeout: float = 30.0) -> int:
        """Cancel a live batch: items not started end `cancelled`, running ones have
        their runs cancelled; how many items that was. Raises LookupError."""
        return self._ask(("cancel", batch_id), timeout)

    def _ask(self, event: tuple, timeout: float) -> Any:
        reply: queue.Queue = queue.Queue()
        self.q.put((*event, reply))
        r = reply.get(timeout=timeout)
        if isinstance(r, Exception):
            raise r
        return r

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping = True
        self.q.put(("stop",))
        self.thread.join(5)

    # ------------------------------------------------------------ loading
    def load(self) -> int:
        """Rebuild the live batches from the store (before the runtime recovers runs,
        so that no completion of a batch run goes unnoticed). Returns how many."""
        n = 0
        for rec in self.store.list_batches(limit=1 << 30):
            if rec.state in LIVE:
                self._load(rec)
                n += 1
        return n

    def _load(self, rec: Any) -> _BatchState:
        b = _BatchState(rec)
        for it in self.store.batch_items(rec.id):
            b.args[it.index] = it.args
            b.attempt[it.index] = int(it.meta.get("attempt", 0))
            if it.state == "pending":
                b.pending.append(it.index)
            elif it.state in LIVE:
                rid = it.run_id or item_run_id(b.id, it.index, b.attempt[it.index])
                b.running[it.index] = rid
                self.by_run[rid] = (b.id, it.index)
            elif it.state == "ok":
                b.ok += 1
            else:
                b.ended_not_ok(it.state)
        self.batches[b.id] = b
        if b.cancelled:
            # Cancelled by a daemon that stopped before all its item runs had ended.
            self.q.put(("cancel", b.id, None))
        # Items whose run ended (or never got created) while no daemon watched.
        for index, rid in list(b.running.items()):
            run = self.store.get_run(rid)
            if run is None:
                self.q.put(("start", b.id, index))
            elif run.state in ENDED:
                self.q.put(("done", rid))
        self.q.put(("pump", b.id))
        return b

    # ------------------------------------------------------------ the loop
    def _loop(self) -> None:
        while True:
            ev = self.q.get()
            if ev[0] == "stop" or self.stopping:
                return
            try:
                self._event(ev)
            except Exception:  # noqa: BLE001 - keep supervising the other batches
                log.exception("batch supervisor: %r failed", ev[:2])

    def _event(self, ev: tuple) -> None:
        kind = ev[0]
        if kind == "add":
            rec = self.store.get_batch(ev[1])
            if rec is not None and ev[1] not in self.batches:
                self._load(rec)
        elif kind == "pump":
            b = self.batches.get(ev[1])
            if b is not None:
                self._pump(b)
        elif kind == "start":
            b = self.batches.get(ev[1])
            if b is not None and ev[2] in b.running:
                self._create(b, ev[2], b.running[ev[2]])
        elif kind == "done":
            self._done(ev[1])
        elif kind in ("retry", "cancel"):
            _, bid, reply = ev
            try:
                r = self._retry(bid) if kind == "retry" else self._cancel(bid)
            except Exception as e:  # noqa: BLE001 - the caller reports it
                if reply is None:
                    raise
                r = e
            if reply is not None:
                reply.put(r)

    def _done(self, run_id: str) -> None:
        where = self.by_run.get(run_id)
        if where is None:
            return
        b = self.batches.get(where[0])
        index = where[1]
        if b is None or b.running.get(index) != run_id:
            self.by_run.pop(run_id, None)
            return
        run = self.store.get_run(run_id)
        if run is None or run.state not in ENDED:
            return
        from .views import result_text
        del b.running[index]
        self.by_run.pop(run_id, None)
        state = run.state
        text = result_text(self.store, run)
        if state == "err" and b.running and not b.cancelled and self._refused(run_id):
            # Refused for want of a slot under the user's quota while other items
            # run: not the item's failure. It waits for a slot (a fresh attempt id),
            # and the batch runs no more at once than it had running then.
            b.limit, b.calm = max(1, len(b.running)), 0
            b.attempt[index] = b.attempt.get(index, 0) + 1
            b.pending.appendleft(index)
            self._pump(b, Batch().set_batch_item(b.id, index, state="pending",
                                                 meta={"attempt": b.attempt[index]}))
            return
        # Items end without refusals: a width lowered by one (see above) grows back by
        # one per `limit` of them, up to the batch's concurrency (the quota may have
        # been held by other runs of the user for a while).
        if b.limit < b.concurrency:
            b.calm += 1
            if b.calm >= b.limit:
                b.limit, b.calm = b.limit + 1, 0
        if state == "ok":
            b.ok += 1
        else:
            b.ended_not_ok(state)
        meta = {"result": text}
        bt = Batch().set_batch_item(b.id, index, state=state, meta=meta)
        self._pump(b, bt)

    def _refused(self, run_id: str) -> bool:
        """Whether the run's root was refused by the concurrent-flows quota before it
        ran (marked so by `Services.refuse`; a root that ran and failed on a refused
        child has done things: not this)."""
        root = self.store.get_flow(run_id)
        return root is not None and isinstance(root.result, dict) \
            and bool(root.result.get("quota_refused"))

    def _pump(self, b: _BatchState, bt: Batch | None = None) -> None:
        """Start pending items up to the concurrency; finish the batch when all ended.
        ``bt`` carries item updates to commit together with the counts."""
        bt = bt if bt is not None else Batch()
        starts = []
        if not self.stopping and not self.rt.closed:
            while b.pending and len(b.running) < b.limit:
                index = b.pending.popleft()
                rid = item_run_id(b.id, index, b.attempt.get(index, 0))
                b.running[index] = rid
                self.by_run[rid] = (b.id, index)
                bt.set_batch_item(b.id, index, state="running", run_id=rid)
                starts.append((index, rid))
        ended = not b.pending and not b.running
        state = "running" if not ended else "cancelled" if b.cancelled \
            else "ok" if b.failed == 0 else "err"
        bt.set_batch_state(b.id, state, meta={"counts": b.counts()})
        # The items are `running` with their run ids before any of those runs exists.
        self.store.commit(bt)
        for index, rid in starts:
            self._create(b, index, rid)
        if ended:
            c = b.counts()
            log.info("batch %s ended: %d ok, %d failed%s", b.id, c["ok"], c["failed"],
                     f", {c['cancelled']} cancelled" if "cancelled" in c else "")
            self.batches.pop(b.id, None)

    def _create(self, b: _BatchState, index: int, rid: str) -> None:
        from actors import RunError
        from flowmetal.starlark import StarlarkError
        if self.store.get_run(rid) is not None:
            return  # already created (a retried start event): the runtime has it
        if b.source is None:
            src = self.store.get_code(b.meta["code"])
            if src is None:
                raise LookupError(f"batch {b.id}: its source is missing from the store")
            b.source = src.decode("utf-8")
        item = b.args.get(index)
        values = {str(k): v for k, v in item.items()} if isinstance(item, dict) else {}
        # `--arg` defaults are text; an item's fields are JSON values, typed already.
        args = {k: v for k, v in (b.meta.get("args") or {}).items() if k not in values}
        try:
            self.rt.create_run(b.meta["file"], b.source, flow=b.meta.get("flow"),
                               args=args, values=values, run_id=rid, batch=b.id)
        except (RunError, StarlarkError) as e:
            # This item's arguments do not fit the flow: it fails, the batch goes on.
            b.running.pop(index, None)
            self.by_run.pop(rid, None)
            b.ended_not_ok("err")
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            self.q.put(("pump", b.id))
            self.store.commit(Batch().set_batch_item(b.id, index, state="err", run_id=None,
                                                     meta={"error": msg, "result": msg}))

    def _cancel(self, batch_id: str) -> int:
        if self.store.get_batch(batch_id) is None:
            raise LookupError(f"no batch {batch_id!r} in {self.store.home}")
        b = self.batches.get(batch_id)
        if b is None:
            return 0   # ended: nothing left to cancel
        b.cancelled = True
        not_started = list(b.pending)
        b.pending.clear()
        runs = []
        for index, rid in list(b.running.items()):
            if self.store.get_run(rid) is None:
                del b.running[index]   # its run was not created yet: it never will be
                self.by_run.pop(rid, None)
                not_started.append(index)
            else:
                runs.append(rid)
        bt = Batch()
        for index in not_started:
            # (Its run id, if it had one, names no run: it was never created.)
            bt.set_batch_item(b.id, index, state="cancelled", run_id=None,
                              meta={"result": "cancelled"})
        b.ended_not_ok("cancelled", len(not_started))
        # Durable before any run is cancelled: a daemon stopped midway finishes it.
        bt.set_batch_state(b.id, "running", meta={"cancel": True})
        self._pump(b, bt)
        for rid in runs:
            # Each run's end comes back as a "done" event and ends its item `cancelled`.
            self.rt.cancel_run(rid, "cancelled: its batch was cancelled")
        return len(not_started) + len(runs)

    def _retry(self, batch_id: str) -> int:
        rec = self.store.get_batch(batch_id)
        if rec is None:
            raise LookupError(f"no batch {batch_id!r} in {self.store.home}")
        live = self.batches.get(batch_id)
        bt = Batch()
        n = 0
        again = []
        for it in self.store.batch_items(batch_id):
            if it.state in ("err", "cancelled", "crashed"):
                if live is not None and it.index in live.running:
                    continue
                attempt = int(it.meta.get("attempt", 0)) + 1
                bt.set_batch_item(batch_id, it.index, state="pending",
                                  meta={"attempt": attempt, "error": None, "result": None})
                again.append((it.index, attempt, it.state))
                n += 1
        if not n:
            return 0
        bt.set_batch_state(batch_id, "running", meta={"cancel": False})
        self.store.commit(bt)
        if live is not None:
            live.cancelled = False
        if live is None:
            self._load(self.store.get_batch(batch_id))
        else:
            for index, attempt, state in again:
                live.attempt[index] = attempt
                live.pending.append(index)
                live.ended_not_ok(state, -1)
            self._pump(live)
        return n
