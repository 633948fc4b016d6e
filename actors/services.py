"""The actor-era services of a runtime: inboxes, HTTP, user resources, secrets and
quotas, behind the few hooks the `Runtime` calls.

`Services` is owned by the runtime of the main process (the daemon, or `flowmetal
run`). The runtime hands it the actions its FlowRunners suspend on —

* ``send``, ``close``: performed through the `InboxRouter` (`actors.inbox`);
* ``receive``: the flow waits in the router (not in memory: its actor is stopped, as
  for a sleep) until a message, the close of its inbox, or its timeout;
* ``http``: the `HttpActor` (`actors.http`);
* ``resources``: `ResourceManager.open_all` (`actors.user_resources`);

— and tells it when flows are recovered (their resources are reopened), end or are
cancelled (their resources are closed, their waits forgotten, their quota slot
freed). Blocking work (store commits for inbox operations, opening a resource that
waits for a server's port) runs on a small thread pool, never on an actor's mailbox
or under the runtime's lock. Every outcome returns through ``runtime.deliver``, the
same path as an exec reply.

`QuotaHooks` is the part a worker process needs too: output accounting and the
translation of an exhausted step budget into a quota error.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from flowmetal.quotas import QuotaBook, QuotaExceeded, UsageLedger, current_username
from flowmetal.secrets import SecretSource, set_process_source
from store import Batch, StoreError

from .http import HttpActor
from .inbox import InboxRouter
from .user_resources import ResourceManager

log = logging.getLogger("flowmetal.services")

__all__ = ["Services", "QuotaHooks", "process_setup", "SERVICE_KINDS"]

SERVICE_KINDS = ("send", "close", "http", "resources")


def process_setup(home: str | Path) -> QuotaBook:
    """Per-process set-up of a runtime or worker on `home`: where secrets come from,
    which quotas apply (`fctx.quota`)."""
    from flowmetal import quotas
    set_process_source(SecretSource(home))
    book = QuotaBook(home)
    quotas.set_process_book(book)
    return book


class QuotaHooks:
    """Output and step quotas of the flows this process runs (one user per runtime:
    the daemon serves only its own uid)."""

    def __init__(self, store: Any, book: QuotaBook | None, user: str | None = None):
        self.store = store
        self.user = user or current_username()
        self.ledger = UsageLedger(book)
        self._seeded: set[str] = set()
        self._lock = threading.Lock()

    def steps_limit(self, default: int | None) -> int | None:
        return self.ledger.steps_for(self.user, default)

    def count_output(self, run_id: str, text: str) -> None:
        """Account a flow's print; raises FlowFailed past the run's output quota."""
        lim = self.ledger.limits(self.user).output_bytes_per_run
        if lim is None:
            return
        if run_id not in self._seeded:
            # What the run printed before this process took it over (a resume).
            try:
                self.ledger.seed_output(run_id, self.store.output_size(run_id))
            except Exception:  # noqa: BLE001 - a missing count only errs on the lenient side
                pass
            with self._lock:
                self._seeded.add(run_id)
        try:
            self.ledger.add_output(self.user, run_id, len(text.encode("utf-8")))
        except QuotaExceeded as e:
            from flowmetal.prelude import FlowFailed
            raise FlowFailed(str(e)) from None

    def quota_error(self, err: Any) -> str | None:
        """The flow's error text when `err` is the step budget set by the quota."""
        lim = self.ledger.limits(self.user).steps_per_flow
        msg = getattr(err, "msg", None)
        if lim is None or not isinstance(msg, str):
            return None
        if msg.startswith(f"step budget exhausted ({lim} steps)"):
            return str(QuotaExceeded("steps per flow", lim, self.user))
        return None


class Services:
    """Inboxes, HTTP, resources and quotas for one `Runtime` (see the module doc)."""

    def __init__(self, rt: Any):
        self.rt = rt
        store = rt.store
        self.home = Path(store.home)
        book = process_setup(self.home)
        self.quota = QuotaHooks(store, book)
        self.secrets = SecretSource(self.home)
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="flowmetal-inbox")
        # Apart: opening a server may wait seconds for its port, closing one for its exit;
        # that must never hold up message delivery.
        self.res_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="flowmetal-res")
        self.inbox = InboxRouter(store, self._resume)
        self.http = HttpActor.start(rt.deliver, self.secrets)
        self.resources = ResourceManager(self.home, self.secrets)
        self.closed = False
        # Resources of flows that ended while no runtime could close them.
        threading.Thread(target=self._sweep, daemon=True, name="resource-sweep").start()

    # ---------------------------------------------------------------- from the runtime
    def perform(self, flow_id: str, seq: int, kind: str, intent: dict) -> None:
        """Perform action `seq` of the flow (intent: plain data, as journaled)."""
        if kind == "http":
            self.http.tell(("http", flow_id, seq, intent))
            return
        pool = self.res_pool if kind == "resources" else self.pool
        pool.submit(self._perform, flow_id, seq, kind, intent)

    def _perform(self, flow_id: str, seq: int, kind: str, intent: dict) -> None:
        try:
            if kind == "send":
                outcome = self.inbox.send(flow_id, seq, intent["to"], intent["body"])
            elif kind == "close":
                outcome = self.inbox.close_inbox(intent["inbox"])
            elif kind == "resources":
                from flowmetal.actor_prelude import ResourcesOpened
                handles, err = self.resources.open_all(flow_id, intent["open"])
                outcome = ("ok", ResourcesOpened(handles, err))
            else:
                outcome = ("err", f"unknown action {kind!r}")
        except Exception as e:  # noqa: BLE001 - the flow hears of it; the log has details
            log.exception("flow %s: action %d (%s) failed", flow_id, seq, kind)
            outcome = ("err", f"{kind}: {type(e).__name__}: {e}")
        if not self.closed:
            self.rt.deliver(flow_id, seq, outcome)

    def receive(self, flow_id: str, seq: int, intent: dict) -> None:
        """The flow waits on receive `seq` (suspended just now, or recovered)."""
        due = intent.get("due")
        self.inbox.wait(flow_id, seq, dispatch=bool(intent.get("dispatch")), due=due)
        if due is not None and self.inbox.is_waiting(flow_id, seq):
            self.rt.timer.tell(("schedule", due, flow_id, seq))

    def timer_fired(self, flow_id: str, seq: int) -> bool:
        """True if the timer was a receive's timeout (handled here)."""
        if self.inbox.is_waiting(flow_id, seq):
            self.inbox.timed_out(flow_id, seq)
            return True
        return False

    def _resume(self, flow_id: str, seq: int, outcome: tuple) -> None:
        if not self.closed:
            self.rt.deliver(flow_id, seq, outcome)

    def recovering(self, flow_id: str) -> None:
        """A live flow is being loaded from its checkpoint: reopen what it holds."""
        self.quota.ledger.restore(self.quota.user, flow_id)
        if self.resources.manifest_path(flow_id).exists():
            err = self.resources.reopen_all(flow_id)
            if err is not None:
                log.warning("flow %s: %s", flow_id, err)

    def refused(self, flow_id: str, parent: str | None) -> bool:
        """Admit a new flow under the concurrent-flows quota. When it is over, end it
        ``Err("quota exceeded: …")`` at once (before it runs) and return True."""
        over = self.admit(flow_id)
        if over is None:
            return False
        self.refuse(flow_id, parent, over)
        return True

    def admit(self, flow_id: str) -> QuotaExceeded | None:
        """Count a new flow under the concurrent-flows quota; the error if it is over
        (then `refuse` it, once it is in the store)."""
        try:
            self.quota.ledger.admit(self.quota.user, flow_id)
            return None
        except QuotaExceeded as e:
            return e

    def refuse(self, flow_id: str, parent: str | None, error: QuotaExceeded) -> None:
        """End a flow the quota did not admit: ``Err("quota exceeded: …")``, before it
        ran."""
        from flowmetal.prelude import Err
        from .codec import result_record
        rec = result_record(Err(str(error)))
        # Refused before its own actor ran it (a child handed over mid-call has run its
        # first part in its caller): a batch may start a refused item again later.
        rec["quota_refused"] = True
        try:
            self.rt.store.commit(Batch().flow_finished(flow_id, "err", result=rec,
                                                       error=rec["repr"]))
        except StoreError as se:
            log.warning("flow %s: could not record its quota error (%s)", flow_id, se)
        self.rt.finished(flow_id, parent, "err", rec, [])

    def ended(self, flow_id: str) -> None:
        """The flow ended (Ok, Err, cancelled): forget its waits, free its quota slot,
        close its resources (off the caller's thread: stopping a server takes time)."""
        self.inbox.forget(flow_id)
        self.quota.ledger.release(flow_id)
        if self.resources.manifest_path(flow_id).exists():
            self.res_pool.submit(self.resources.close_all, flow_id)

    def run_ended(self, run_id: str) -> None:
        """Every flow of the run but its root has ended (with the root, or by a cancel
        from elsewhere): `ended` for each that still holds something here — sleeping
        and receiving ones included, which no actor holds and nothing else reports."""
        prefix = run_id + "."
        held = {*self.inbox.waiting_with_prefix(prefix),
                *self.quota.ledger.flows_with_prefix(prefix),
                *self.resources.flows_with_resources(prefix)}
        for fid in held:
            self.ended(fid)

    def _sweep(self) -> None:
        def live(fid: str) -> bool:
            f = self.rt.store.get_flow(fid)
            return f is not None and not f.terminal
        try:
            closed = self.resources.sweep(live)
            if closed:
                log.info("closed the resources of %d ended flows", len(closed))
        except Exception:  # noqa: BLE001 - a sweep is best effort; the next start retries
            log.exception("resource sweep failed")

    def close(self) -> None:
        self.closed = True
        self.inbox.close()
        try:
            self.http.stop(block=True, timeout=2)
        except Exception:  # noqa: BLE001
            pass
        self.pool.shutdown(wait=False, cancel_futures=True)
        # Let resource closes in flight finish (they stop servers: never leave them).
        self.res_pool.shutdown(wait=True, cancel_futures=False)
