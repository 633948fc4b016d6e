"""Inbox delivery: `send`, `receive`, `close` and external messages, on the store's
inboxes.

Every flow has one inbox in the store (`Batch.inbox_append/inbox_pop/inbox_close`).
The `InboxRouter` lives in the runtime's main process (worker processes forward
their flows' inbox actions to it) and owns every delivery decision, under one lock:

* **send** — ``inbox_append(to, body, msg_id="<sender>:<seq>")``: the id makes a
  re-issued send (after a crash) idempotent; the sender stays suspended until the
  append is durable, so one sender's messages arrive in the order it sent them.
  Sending to a closed inbox (its flow ended, or `close`d) is the sender's error.
* **receive** — the flow suspends with intent ``receive`` (plus a durable timer when
  it has a timeout) and is registered as *waiting*. A message is delivered by ONE
  transaction that pops it (``expect_seq``: exactly the message peeked) and
  journals it as the receive's result, cancelling the timer: a message is never
  both consumed and lost, nor delivered twice. The flow is then resumed with the
  journaled result. A timer that fires first journals ``None`` the same way; the
  lock decides which of the two wins.
* **close** — ``inbox_close``; a waiting event flow whose inbox is closed and empty
  gets the end marker and finishes.

A message may also arrive from outside this process (`flowmetal send` writing to
the store while an embedded `flowmetal run` hosts the flow). The router therefore
polls the inboxes of its waiting flows a few times a second: cheap (one read per
waiting flow), and only needed for that cross-process case.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import threading
from typing import Any, Callable

from store import Batch, ConflictError, MessageIdReusedError, NotFoundError, StoreError

from .codec import outcome_record

log = logging.getLogger("flowmetal.inbox")

__all__ = ["InboxRouter", "InboxError", "MAX_MESSAGE_BYTES", "check_size", "POLL_INTERVAL",
           "append_external"]

MAX_MESSAGE_BYTES = 1 << 20
POLL_INTERVAL = 0.25
POLL_READS_PER_S = 4000


class InboxError(Exception):
    """An external send could not be delivered (one-line message)."""


def check_size(body: Any, what: str = "send") -> str | None:
    """The error for a message body too large to store, or None."""
    try:
        n = len(pickle.dumps(body, protocol=5))
    except Exception:  # noqa: BLE001 - encode_message made it plain; belt and braces
        return f"{what}: the message cannot be stored"
    if n > MAX_MESSAGE_BYTES:
        return f"{what}: the message is {n} bytes; at most {MAX_MESSAGE_BYTES} may be sent"
    return None


def message_digest(body: Any) -> bytes:
    """What identifies an external message's content (plain JSON data; key order
    does not count), kept with its id."""
    try:
        data = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    except (TypeError, ValueError):
        data = pickle.dumps(body, protocol=5)
    return hashlib.sha256(data).digest()[:16]


def append_external(store: Any, flow_id: str, body: Any, msg_id: str | None) -> int | None:
    """Append a message from outside (`flowmetal send`, through a daemon or straight
    into the store) to a flow's inbox: its position, or None when this id was
    delivered before with the same message. The same id with another message is an
    error, not a silent no-op. Raises `InboxError` (one line)."""
    err = check_size(body, "send")
    if err is not None:
        raise InboxError(err)
    digest = message_digest(body) if msg_id is not None else None
    try:
        r = store.commit(Batch().inbox_append(flow_id, body, msg_id=msg_id, digest=digest))
    except MessageIdReusedError as e:
        raise InboxError(str(e)) from None
    except ConflictError:
        f = store.get_flow(flow_id)
        raise InboxError(f"the inbox of flow {flow_id} is closed "
                         f"(the flow is {f.state if f else 'gone'})") from None
    except StoreError as e:
        raise InboxError(str(e)) from None
    return r[0] if r else None


class _Waiter:
    __slots__ = ("seq", "dispatch", "due")

    def __init__(self, seq: int, dispatch: bool, due: float | None):
        self.seq = seq
        self.dispatch = dispatch
        self.due = due


class InboxRouter:
    """Delivers messages to waiting flows. `resume(flow_id, seq, outcome)` hands a
    flow the result of its receive once that result is journaled (the runtime sends
    the flow's actor a resume whose journal entry is then a no-op: the first result
    journaled for a seq wins, and it is this one)."""

    def __init__(self, store: Any, resume: Callable[[str, int, tuple], None],
                 *, poll: float | None = POLL_INTERVAL):
        self.store = store
        self.resume = resume
        self.lock = threading.RLock()
        self.waiting: dict[str, _Waiter] = {}
        # Resumes decided under the lock, made after it is released: the runtime takes
        # its own lock to route them, and it calls the router holding that lock.
        self._ready: list[tuple[str, int, tuple]] = []
        self.closed = False
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        if poll:
            self._poller = threading.Thread(target=self._poll, args=(poll,), daemon=True,
                                            name="inbox-poll")
            self._poller.start()

    def close(self) -> None:
        self.closed = True
        self._stop.set()

    # ---------------------------------------------------------------- actions
    def send(self, sender: str, seq: int, to: str, body: Any) -> tuple:
        """Perform a flow's send; its outcome."""
        err = check_size(body)
        if err is not None:
            return ("err", err)
        try:
            self.store.commit(Batch().inbox_append(to, body, msg_id=f"{sender}:{seq}"))
        except ConflictError:
            return ("err", f"send: the inbox of flow {to} is closed")
        except NotFoundError:
            return ("err", f"send: no flow {to}")
        except StoreError as e:
            return ("err", f"send: {e}")
        self.notify(to)
        return ("ok", None)

    def deliver_external(self, to: str, body: Any, msg_id: str | None = None) -> int | None:
        """A message from outside (`flowmetal send`): its position in the inbox (None:
        a message with this id was delivered before). Raises `InboxError`."""
        if self.store.get_flow(to) is None:
            raise InboxError(f"no flow {to}")
        seq = append_external(self.store, to, body, msg_id)
        self.notify(to)
        return seq

    def close_inbox(self, target: str) -> tuple:
        """Perform a flow's close; its outcome."""
        try:
            if self.store.get_flow(target) is None:
                return ("err", f"close: no flow {target}")
            self.store.commit(Batch().inbox_close(target))
        except StoreError as e:
            return ("err", f"close: {e}")
        self.notify(target)
        return ("ok", None)

    # ---------------------------------------------------------------- receiving
    def wait(self, flow_id: str, seq: int, *, dispatch: bool = False,
             due: float | None = None) -> None:
        """The flow is suspended on receive `seq` (just now, or found so at recovery)."""
        with self.lock:
            self.waiting[flow_id] = _Waiter(seq, dispatch, due)
            self._try(flow_id)
        self._flush()

    def notify(self, flow_id: str) -> None:
        """Something changed in the flow's inbox (a message, a close)."""
        with self.lock:
            if flow_id in self.waiting:
                self._try(flow_id)
        self._flush()

    def _flush(self) -> None:
        with self.lock:
            ready, self._ready = self._ready, []
        for flow_id, seq, outcome in ready:
            try:
                self.resume(flow_id, seq, outcome)
            except Exception:  # noqa: BLE001 - the result is journaled: recovery resumes it
                log.exception("flow %s: resuming receive %d failed", flow_id, seq)

    def is_waiting(self, flow_id: str, seq: int) -> bool:
        with self.lock:
            w = self.waiting.get(flow_id)
            return w is not None and w.seq == seq

    def timed_out(self, flow_id: str, seq: int) -> bool:
        """The receive's timer fired. True if that ended the wait (with None), False if
        the flow was not waiting on it (a message won the race)."""
        with self.lock:
            w = self.waiting.get(flow_id)
            if w is None or w.seq != seq:
                return False
            del self.waiting[flow_id]
            done = self._complete(flow_id, seq, ("ok", None), Batch())
        self._flush()
        return done

    def forget(self, flow_id: str) -> None:
        """The flow ended or was cancelled: stop waiting for it."""
        with self.lock:
            self.waiting.pop(flow_id, None)

    def waiting_with_prefix(self, prefix: str) -> list[str]:
        """The waiting flows whose ids start with `prefix` (a run's: ``RUN.``)."""
        with self.lock:
            return [f for f in self.waiting if f.startswith(prefix)]

    def _try(self, flow_id: str) -> None:
        # Caller holds the lock and the flow is waiting.
        w = self.waiting[flow_id]
        store = self.store
        for _ in range(3):
            m = store.inbox_peek(flow_id)
            if m is None:
                if w.dispatch and store.inbox_closed(flow_id):
                    from flowmetal.actor_prelude import EVENT_END
                    del self.waiting[flow_id]
                    self._complete(flow_id, w.seq, ("ok", EVENT_END), Batch())
                elif not w.dispatch and store.inbox_closed(flow_id) and \
                        self._flow_live(flow_id):
                    del self.waiting[flow_id]
                    self._complete(flow_id, w.seq, ("err", "receive: the inbox is closed "
                                                    "and has no more messages"), Batch())
                return
            from flowmetal.actor_prelude import decode_message
            try:
                value = decode_message(m.body)
            except Exception as e:  # noqa: BLE001 - a bad external message must not stall
                value = None
                log.warning("flow %s: undecodable message %d dropped (%s)", flow_id, m.seq, e)
                try:
                    store.commit(Batch().inbox_pop(flow_id, expect_seq=m.seq))
                except StoreError:
                    pass
                continue
            b = Batch().inbox_pop(flow_id, expect_seq=m.seq)
            try:
                del self.waiting[flow_id]
                self._complete(flow_id, w.seq, ("ok", value), b)
                return
            except ConflictError:
                self.waiting[flow_id] = w   # the front moved under us: look again
                continue

    def _flow_live(self, flow_id: str) -> bool:
        f = self.store.get_flow(flow_id)
        return f is not None and not f.terminal

    def _complete(self, flow_id: str, seq: int, outcome: tuple, b: Batch) -> bool:
        """Journal `outcome` as receive `seq`'s result (with `b`'s pop, and dropping its
        timer) in one transaction, then resume the flow. False if the flow had a result
        for it already (then nothing is popped)."""
        store = self.store
        if store.get_journal(flow_id, seq) is not None:
            return False
        b.journal_result(flow_id, seq, outcome_record(outcome))
        b.cancel_timer(flow_id, seq)
        try:
            store.commit(b)
        except ConflictError:
            raise
        except NotFoundError:
            return False   # the flow is gone (pruned)
        self._ready.append((flow_id, seq, outcome))
        return True

    # ---------------------------------------------------------------- cross-process
    def _poll(self, interval: float) -> None:
        wait = interval
        while not self._stop.wait(wait):
            with self.lock:
                ids = list(self.waiting)
            # Bounded work: with many waiting flows, poll each less often (at most
            # POLL_READS_PER_S store reads a second).
            wait = max(interval, len(ids) / POLL_READS_PER_S)
            for fid in ids:
                if self.closed:
                    return
                try:
                    if self.store.inbox_count(fid) or self.store.inbox_closed(fid):
                        self.notify(fid)
                except Exception:  # noqa: BLE001 - the store may be closing; try later
                    pass
