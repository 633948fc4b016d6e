"""Write batches: operations collected by a caller and applied in ONE LMDB write txn.

A `Batch` is a list of operations across the named databases. Nothing happens until
the batch is handed to `Store.commit` (or `Store.submit`); then every operation of the
batch is applied in one write transaction, atomically: either all of it is durable or
none of it is visible. Batches of many callers share one fsync (group commit), but each
batch succeeds or fails on its own.

Every method returns the batch, so calls chain; `Store.commit` returns the list of the
operations' results in order (most are None; the documented ones return a value).
The high-level operations named after the durability protocol are `flow_suspended`,
`action_completed`, `flow_finished`; the smaller ones compose freely.
"""

from __future__ import annotations

import hashlib
import re
import struct
import time
from typing import Any, Iterable, Iterator, Sequence

from . import keys as K
from .errors import ConflictError, MessageIdReusedError, NotFoundError, StoreError
from .records import (LIVE_STATES, STATES, TERMINAL_STATES, Message, Timer, Value, decode,
                      encode, wrap_checkpoint)

__all__ = ["Batch", "NOTSET", "DB_NAMES", "SCHEMA_VERSION"]


class _NotSet:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NOTSET"


NOTSET: Any = _NotSet()

# The store's layout. 2: schema 1 and flows called within their caller's step, kept in
# its journal (`called_record`). A schema-1 store is marked 2 with its first such flow
# (`_mark_schema`), not when opened: until then an older Flowmetal can still use it.
SCHEMA_VERSION = 2

# Every named database of the store.
DB_NAMES = (
    "meta",             # b"magic", b"schema", ...
    "runs",             # run_id -> Run record
    "runs_by_created",  # created_ns run_id -> ""
    "runs_by_state",    # state NUL created_ns run_id -> ""
    "flows",            # flow_id -> Flow record
    "flows_live",       # flow_id -> run_id            (non-terminal flows only)
    "flow_children",    # parent NUL child -> ""
    "run_flows",        # run NUL flow -> ""
    "checkpoints",      # flow_id -> envelope
    "journal",          # flow NUL seq -> {q, r, s, f} (or "C" {q, r, s, f, c}: `called_record`)
    "intents",          # flow NUL seq -> {q, t}
    "timers",           # due_ns flow NUL seq -> payload
    "timer_ids",        # flow NUL seq -> due_ns
    "inbox",            # flow NUL seq -> {b, i, t}
    "inbox_meta",       # flow -> head, tail, closed
    "inbox_ids",        # flow NUL msg_id -> seq
    "output",           # run NUL offset -> {t, f, s, w}
    "output_meta",      # run -> size
    "code",             # sha256 hex -> source bytes
    "batches",          # batch_id -> {state, created, updated, size, meta}
    "batch_items",      # batch NUL index -> {a, s, r, u, m}
)

_INBOX_META = struct.Struct(">QQB")
_CLOSED_INBOX = _INBOX_META.pack(0, 0, 1)   # an ended flow's, which never had a message


def _check_state(state: str) -> str:
    if state not in STATES:
        raise StoreError(f"unknown state {state!r}; expected one of {', '.join(sorted(STATES))}")
    return state


class Batch:
    """Operations to apply atomically in one LMDB write transaction."""

    __slots__ = ("ops",)

    def __init__(self) -> None:
        self.ops: list[tuple] = []

    def __len__(self) -> int:
        return len(self.ops)

    def __repr__(self) -> str:
        return f"<Batch {[op[0].__name__.lstrip('_') for op in self.ops]}>"

    def extend(self, other: "Batch") -> "Batch":
        """Append another batch's operations (their results follow this batch's)."""
        self.ops.extend(other.ops)
        return self

    # ------------------------------------------------------------ generic
    def put(self, db: str, key: bytes, value: bytes) -> "Batch":
        """Raw put into a named database (low level: keeps no index up to date)."""
        _db_name(db)
        self.ops.append((_put, db, bytes(key), bytes(value)))
        return self

    def delete(self, db: str, key: bytes) -> "Batch":
        """Raw delete from a named database (low level). Result: whether it existed."""
        _db_name(db)
        self.ops.append((_delete, db, bytes(key)))
        return self

    # ------------------------------------------------------------ runs
    def create_run(self, run_id: str, *, file: str, root_flow: str | None = None,
                   state: str = "running", created: float | None = None,
                   meta: dict | None = None) -> "Batch":
        """Create a run. Same id and file again: no-op (result False); other file: ConflictError."""
        K.enc_id(run_id, "run id")
        if root_flow is not None:
            K.enc_id(root_flow, "flow id")
        self.ops.append((_create_run, run_id, file, root_flow, _check_state(state), created,
                         meta or {}))
        return self

    def unless_run_exists(self, run_id: str, inner: "Batch") -> "Batch":
        """Apply ``inner``'s operations only if run ``run_id`` does not exist yet (in
        this transaction, where they go). Result: whether they were applied. For a
        run's creation that may be committed twice, by whichever of two writers gets
        there first: the second finds the run and leaves what the first wrote (and
        anything written since) alone."""
        K.enc_id(run_id, "run id")
        self.ops.append((_unless_run_exists, K.enc_id(run_id), list(inner.ops)))
        return self

    def set_run_state(self, run_id: str, state: str, *, root_flow: str | None = None,
                      meta: dict | None = None) -> "Batch":
        """Change a run's state (and merge ``meta``); sets ``finished`` when terminal."""
        K.enc_id(run_id, "run id")
        self.ops.append((_set_run_state, run_id, _check_state(state), root_flow, meta))
        return self

    def delete_run(self, run_id: str, *, force: bool = False) -> "Batch":
        """Remove a run and all of its flows, checkpoints, journal, intents, timers,
        inboxes and output. Without ``force`` only a finished run with no live flow is
        removed. Result: whether it was removed."""
        K.enc_id(run_id, "run id")
        self.ops.append((_delete_run, run_id, force))
        return self

    # ------------------------------------------------------------ flows
    def create_flow(self, flow_id: str, *, run_id: str, name: str, parent: str | None = None,
                    args: Value = None, state: str = "pending", created: float | None = None,
                    meta: dict | None = None) -> "Batch":
        """Create a flow record of an existing run (and parent, if given).

        Idempotent by id: the same id with the same run and parent is a no-op (result
        False); with a different run or parent it is a ConflictError.
        """
        K.enc_id(flow_id, "flow id")
        K.enc_id(run_id, "run id")
        if parent is not None:
            K.enc_id(parent, "parent flow id")
        self.ops.append((_create_flow, flow_id, run_id, name, parent, args,
                         _check_state(state), created, meta or {}))
        return self

    def call_ended(self, parent: str, seq: int, flow_id: str, *, run_id: str, name: str,
                   state: str, result: Value, error: Value, value: Value,
                   request: Value, started: float | None = None) -> "Batch":
        """A child flow born and ended within its parent's step (it acted on nothing):
        its record, created ended (``state`` terminal, with ``result``/``error``) and
        its inbox closed, and the parent's journal entry for action ``seq`` (``value``,
        ``request``) — what `create_flow` + `set_flow_state` + `inbox_close` +
        `journal_result` would write, in one op. A child of that id existing already is
        a ConflictError. A child named ``f"{parent}.{seq}"`` (as the runtime names
        them) has no records of its own: its record is kept in that journal entry
        (see `called_record`), and ConflictError if the entry exists already.
        ``started``: when the call began (its record's ``created``/``started`` and the
        journal entry's start; default: now)."""
        K.enc_id(flow_id, "flow id")
        K.enc_id(run_id, "run id")
        if state not in TERMINAL_STATES:
            raise StoreError(f"call_ended needs a terminal state, not {state!r}")
        # Encoded here, on the caller's time, not while the batch holds the store's
        # one writer (a worker process's commit waits for the others'): its times
        # are the call's, a few ms before its commit.
        now = time.time()
        began = now if started is None else started
        rec = _flow_record(now, flow_id, run_id, name, parent, None, state, began, {},
                           result, error, ran=True)
        rec["started"] = began
        pkey = K.id_seq(parent, seq)
        if flow_id == f"{parent}.{seq}" and state != "crashed":   # (crashed: revivable)
            # Named as `called_record` finds it: the record rides in the journal entry.
            entry = _CALLED_TAG + encode({"q": request, "r": value, "s": began, "f": now,
                                          "c": rec})
            self.ops.append((_call_ended_in_journal, parent, pkey, flow_id, run_id, entry))
        else:
            self.ops.append((_call_ended, parent, pkey, flow_id, run_id, state, encode(rec),
                             encode({"q": request, "r": value, "s": began, "f": now})))
        return self

    def set_flow_state(self, flow_id: str, state: str, *, result: Value = NOTSET,
                       error: Value = NOTSET, meta: dict | None = None) -> "Batch":
        """Change a flow's state (``started`` is set on first ``running``, ``finished`` on a
        terminal state). A terminal flow cannot change state again (ConflictError),
        except that a ``crashed`` flow may be revived to a live state (``resume``)."""
        K.enc_id(flow_id, "flow id")
        self.ops.append((_set_flow_state_op, flow_id, _check_state(state), result, error, meta))
        return self

    # ------------------------------------------------------------ checkpoints
    def put_checkpoint(self, flow_id: str, payload: bytes, *, seq: int | None = None) -> "Batch":
        """Replace the flow's latest checkpoint with ``payload`` (wrapped in an envelope
        with format, Python and Flowmetal versions; ``seq`` = the pending action)."""
        K.enc_id(flow_id, "flow id")
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise StoreError("a checkpoint payload must be bytes")
        self.ops.append((_put_checkpoint, flow_id, payload, seq))
        return self

    def delete_checkpoint(self, flow_id: str) -> "Batch":
        K.enc_id(flow_id, "flow id")
        self.ops.append((_delete_plain, "checkpoints", K.enc_id(flow_id)))
        return self

    # ------------------------------------------------------------ intents & journal
    def add_intent(self, flow_id: str, seq: int, request: Value) -> "Batch":
        """Record that the flow asked for action ``seq`` (replaces one of the same seq)."""
        self.ops.append((_add_intent, flow_id, K.id_seq(flow_id, seq), request))
        return self

    def remove_intent(self, flow_id: str, seq: int) -> "Batch":
        self.ops.append((_delete_plain, "intents", K.id_seq(flow_id, seq)))
        return self

    def journal_result(self, flow_id: str, seq: int, result: Value, *,
                       request: Value = NOTSET, started: float | None = None) -> "Batch":
        """Journal the result of action ``seq``; the request (and start time) come from the
        pending intent unless given. The first result journaled for a seq wins: the
        result of this op is False when one was already there."""
        self.ops.append((_journal_result, flow_id, K.id_seq(flow_id, seq), seq, result,
                         request, started))
        return self

    # ------------------------------------------------------------ protocol steps
    def flow_suspended(self, flow_id: str, seq: int, checkpoint: bytes, request: Value, *,
                       state: str | None = None, timer: float | None = None,
                       timer_payload: Value = None, children: Sequence[dict] = (),
                       output: Iterable[str] = ()) -> "Batch":
        """Protocol step 1: the flow suspended on action ``seq``.

        Writes the checkpoint and the intent (and optionally: the flow's new state, a
        durable timer for this action due at ``timer``, new child flows — dicts of
        `create_flow` keyword arguments with ``id``, in the flow's run with it as parent —
        and output text printed since the last action).
        """
        fk = K.enc_id(flow_id, "flow id")
        if state is not None:
            _check_state(state)
        if not isinstance(checkpoint, (bytes, bytearray, memoryview)):
            raise StoreError("a checkpoint payload must be bytes")
        self.ops.append((_flow_suspended, flow_id, fk, seq, checkpoint, request))
        self._extras(flow_id, state, timer, seq, timer_payload, children, output)
        return self

    def action_completed(self, flow_id: str, seq: int, result: Value = NOTSET, *,
                         checkpoint: bytes | None = None,
                         next_intent: tuple[int, Value] | None = None,
                         state: str | None = None, timer: float | None = None,
                         timer_payload: Value = None, children: Sequence[dict] = (),
                         output: Iterable[str] = ()) -> "Batch":
        """Protocol step 2: action ``seq`` finished and the flow went on.

        Journals ``result`` (omit it when it was journaled already, e.g. by a child's
        `flow_finished`), removes the intent and any timer of ``seq``, and writes the
        flow's next checkpoint with its next intent ``(seq, request)`` (plus, as in
        `flow_suspended`, a state, a timer for the next intent, child flows, output).
        """
        fk = K.enc_id(flow_id, "flow id")
        if state is not None:
            _check_state(state)
        if checkpoint is not None and not isinstance(checkpoint, (bytes, bytearray, memoryview)):
            raise StoreError("a checkpoint payload must be bytes")
        nseq, nreq = next_intent if next_intent is not None else (None, None)
        if nseq is not None:
            K.u64(nseq)
        if timer is not None and nseq is None:
            raise StoreError("a timer needs the next intent's seq")
        self.ops.append((_action_completed, flow_id, fk, seq, result, checkpoint, nseq, nreq))
        self._extras(flow_id, state, timer, nseq, timer_payload, children, output)
        return self

    def flow_finished(self, flow_id: str, state: str, *, result: Value = None,
                      error: Value = None, wake: tuple[str, int, Value] | None = None,
                      keep_checkpoint: bool = False, output: Iterable[str] = ()) -> "Batch":
        """Protocol step 3: the flow ended (``ok``, ``err``, ``crashed``, ``cancelled``).

        Records state and result, drops the checkpoint (unless ``keep_checkpoint``), the
        flow's pending intents and timers, closes its inbox — except for ``crashed``,
        which keeps them all so that the flow can be revived — and when ``wake`` =
        ``(parent_id, parent_seq, value)`` journals ``value`` as the result of the
        parent's pending action. If the flow is its run's root flow, the run takes the
        same state.
        """
        K.enc_id(flow_id, "flow id")
        if state not in TERMINAL_STATES:
            raise StoreError(f"flow_finished needs a terminal state, not {state!r}")
        for text in output:
            self.ops.append((_append_flow_output, flow_id, text, "stdout"))
        self.ops.append((_flow_finished, flow_id, state, result, error, keep_checkpoint))
        if wake is not None:
            pid, pseq, value = wake
            self.journal_result(pid, pseq, value)
        return self

    def cancel_live_flows(self, run_id: str, *, result: Value, error: Value) -> "Batch":
        """End ``cancelled`` (as `flow_finished` does) every live flow of the run other
        than its root — what a run still has running when its root flow ends. Flows
        are found by id: the runtime names a run's flows ``RUN.…``."""
        K.enc_id(run_id, "run id")
        self.ops.append((_cancel_live_flows, run_id, result, error))
        return self

    def _extras(self, flow_id, state, timer, seq, timer_payload, children, output) -> None:
        for text in output:
            self.ops.append((_append_flow_output, flow_id, text, "stdout"))
        for child in children:
            c = dict(child)
            cid = c.pop("id")
            K.enc_id(cid, "child flow id")
            self.ops.append((_create_child, flow_id, cid, c))
        if timer is not None:
            self.add_timer(flow_id, seq, timer, timer_payload)
        if state is not None:
            self.set_flow_state(flow_id, state)

    # ------------------------------------------------------------ timers
    def add_timer(self, flow_id: str, seq: int, due: float, payload: Value = None) -> "Batch":
        """A durable timer for action ``seq`` of the flow, due at ``due`` (epoch seconds).
        Idempotent by (flow, seq): adding it again moves it."""
        self.ops.append((_add_timer, flow_id, seq, float(due), payload))
        return self

    def cancel_timer(self, flow_id: str, seq: int) -> "Batch":
        """Remove the timer of (flow, seq). Result: whether there was one."""
        self.ops.append((_cancel_timer, K.id_seq(flow_id, seq)))
        return self

    def take_due_timers(self, now: float, limit: int = 1000) -> "Batch":
        """Remove and return (as the result) the timers due at or before ``now``."""
        self.ops.append((_take_due_timers, now, limit))
        return self

    # ------------------------------------------------------------ inboxes
    def inbox_append(self, flow_id: str, body: Value, *, msg_id: str | None = None,
                     digest: bytes | None = None) -> "Batch":
        """Append a message to the flow's inbox. Result: its seq, or None when a message
        with the same ``msg_id`` was appended before (idempotent delivery). A closed
        inbox (finished flow) is a ConflictError. ``digest`` (the message's, kept with
        its id): a later append of the same id with another digest is a
        `MessageIdReusedError` rather than a no-op — the id was reused for a
        different message, which would otherwise be silently dropped."""
        K.enc_id(flow_id, "flow id")
        if msg_id is not None:
            K.enc_id(msg_id, "message id")
        elif digest is not None:
            raise StoreError("a message digest needs a message id")
        self.ops.append((_inbox_append, flow_id, body, msg_id, digest))
        return self

    def inbox_pop(self, flow_id: str, *, expect_seq: int | None = None) -> "Batch":
        """Remove the front message. Result: the `Message`, or None if the inbox is empty.
        With ``expect_seq``, the front must be that message (else ConflictError) — pop
        what you peeked, in the same batch as the journal entry that consumes it."""
        K.enc_id(flow_id, "flow id")
        self.ops.append((_inbox_pop, flow_id, expect_seq))
        return self

    def inbox_close(self, flow_id: str) -> "Batch":
        """Refuse further messages to the flow (its queued ones stay readable)."""
        K.enc_id(flow_id, "flow id")
        self.ops.append((_inbox_close, flow_id))
        return self

    # ------------------------------------------------------------ output
    def append_output(self, run_id: str, text: str, *, flow_id: str | None = None,
                      stream: str = "stdout") -> "Batch":
        """Append text to the run's output stream. Result: the chunk's byte offset."""
        K.enc_id(run_id, "run id")
        self.ops.append((_append_output, run_id, str(text), flow_id, stream))
        return self

    # ------------------------------------------------------------ code
    def put_code(self, source: str | bytes, *, known_hash: str | None = None) -> "Batch":
        """Store module source by content (once: a source stored already is left as
        is). Result: its hash (sha256 hex of the UTF-8 bytes). `known_hash`: that
        hash, when the caller has worked it out already (it is not checked)."""
        data = source.encode("utf-8") if isinstance(source, str) else bytes(source)
        self.ops.append((_put_code, known_hash or code_hash(data), data))
        return self

    def sweep_code(self) -> "Batch":
        """Delete every stored source nothing in the store refers to any more. Result:
        how many. Sources are kept by content hash, and a hash is referred to as such
        (run and batch records name their file's; checkpoints, journaled results,
        messages pickle each module they hold as its hash): every 64-hex-digit run of
        every record that can hold one is a reference, which may keep a source too
        many, never one too few. It reads all those records, under the store's one
        writer (no run can take up a source meanwhile): maintenance, not a hot path."""
        self.ops.append((_sweep_code,))
        return self

    # ------------------------------------------------------------ batches of runs
    def create_batch(self, batch_id: str, items: Sequence[Value], *,
                     meta: dict | None = None) -> "Batch":
        """A batch of runs; item ``i`` holds ``items[i]`` (its arguments), state pending.
        Same id again: no-op (result False)."""
        K.enc_id(batch_id, "batch id")
        self.ops.append((_create_batch, batch_id, list(items), meta or {}))
        return self

    def set_batch_item(self, batch_id: str, index: int, *, state: str | None = None,
                       run_id: Any = NOTSET, meta: dict | None = None) -> "Batch":
        """Update one item: its state, the run it became (None: none after all — it
        ended before its run was created), merged ``meta``."""
        K.enc_id(batch_id, "batch id")
        if state is not None:
            _check_state(state)
        self.ops.append((_set_batch_item, batch_id, index, state, run_id, meta))
        return self

    def set_batch_state(self, batch_id: str, state: str, *, meta: dict | None = None) -> "Batch":
        K.enc_id(batch_id, "batch id")
        self.ops.append((_set_batch_state, batch_id, _check_state(state), meta))
        return self


def code_hash(data: bytes) -> str:
    """The key `put_code` stores ``data`` (UTF-8 source bytes) under: sha256 hex."""
    return hashlib.sha256(data).hexdigest()


def _db_name(db: str) -> str:
    if db not in DB_NAMES:
        raise StoreError(f"no database named {db!r}")
    return db


# ====================================================================== applying
# Each op function takes the writer `w` (txn, db handles, clock) and its arguments.


class Writer:
    """What an op sees while its batch is applied: the txn, the dbs, the time."""

    __slots__ = ("txn", "db", "now", "app_version", "known", "schema_marked")

    def __init__(self, txn, db: dict, now: float, app_version: str) -> None:
        self.txn = txn
        self.db = db
        self.now = now
        self.app_version = app_version
        self.known: set[bytes] = set()  # flow keys seen to exist in this txn
        self.schema_marked = False      # (see `_mark_schema`)

    def require_flow(self, fk: bytes, flow_id: str, ended: str = "") -> None:
        """The flow exists and has a record of its own: one called within its caller's
        step (`called_record`) has ended, and nothing more may be written of it
        (ConflictError, its message ending with ``ended``)."""
        if fk in self.known:
            return
        if self.txn.get(fk, db=self.db["flows"]) is None:
            if called_record(self.txn, self.db, flow_id) is not None:
                raise ConflictError(f"flow {flow_id!r} has ended{ended}")
            raise NotFoundError(f"no flow {flow_id!r}")
        self.known.add(fk)

    def get(self, db: str, key: bytes):
        return self.txn.get(key, db=self.db[db])

    def put(self, db: str, key: bytes, value: bytes) -> None:
        self.txn.put(key, value, db=self.db[db])

    def delete(self, db: str, key: bytes) -> bool:
        return self.txn.delete(key, db=self.db[db])

    def delete_prefix(self, db: str, prefix: bytes) -> int:
        n = 0
        with self.txn.cursor(db=self.db[db]) as cur:
            if not cur.set_range(prefix):
                return 0
            while cur.key()[:len(prefix)] == prefix:
                n += 1
                if not cur.delete():
                    break
        return n

    def scan_prefix(self, db: str, prefix: bytes) -> list[tuple[bytes, bytes]]:
        return list(iter_prefix(self.txn, self.db[db], prefix))

    def apply(self, batch: Batch) -> list:
        return [op[0](self, *op[1:]) for op in batch.ops]


def iter_prefix(txn, handle, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
    """The (key, value) entries of database ``handle`` whose keys start with ``prefix``,
    in key order."""
    with txn.cursor(db=handle) as cur:
        if cur.set_range(prefix):
            for k, v in cur:
                if k[:len(prefix)] != prefix:
                    return
                yield k, v


def _put(w: Writer, db, key, value):
    w.put(db, key, value)


def _delete(w: Writer, db, key):
    return w.delete(db, key)


def _delete_plain(w: Writer, db, key):
    return w.delete(db, key)


# ---------------------------------------------------------------- runs

def _load_run(w: Writer, run_id: str) -> dict:
    raw = w.get("runs", K.enc_id(run_id))
    if raw is None:
        raise NotFoundError(f"no run {run_id!r}")
    return decode(raw)


def _create_run(w: Writer, run_id, file, root_flow, state, created, meta):
    rk = K.enc_id(run_id)
    raw = w.get("runs", rk)
    if raw is not None:
        old = decode(raw)
        if old["file"] != file:
            raise ConflictError(f"run {run_id!r} already exists for {old['file']!r}")
        return False
    created = w.now if created is None else created
    rec = {"id": run_id, "file": file, "root_flow": root_flow, "state": state,
           "created": created, "updated": w.now,
           "finished": w.now if state in TERMINAL_STATES else None, "meta": meta}
    w.put("runs", rk, encode(rec))
    w.put("runs_by_created", K.created_key(created, run_id), b"")
    w.put("runs_by_state", K.state_created_key(state, created, run_id), b"")
    return True


def _unless_run_exists(w: Writer, rk, ops):
    if w.get("runs", rk) is not None:
        return False
    for op in ops:
        op[0](w, *op[1:])
    return True


def _set_run_state(w: Writer, run_id, state, root_flow, meta):
    rec = _load_run(w, run_id)
    if rec["state"] != state:
        w.delete("runs_by_state", K.state_created_key(rec["state"], rec["created"], run_id))
        w.put("runs_by_state", K.state_created_key(state, rec["created"], run_id), b"")
        rec["state"] = state
        rec["finished"] = w.now if state in TERMINAL_STATES else None
    if root_flow is not None:
        rec["root_flow"] = root_flow
    if meta:
        rec["meta"].update(meta)
    rec["updated"] = w.now
    w.put("runs", K.enc_id(run_id), encode(rec))


def _delete_run(w: Writer, run_id, force):
    rk = K.enc_id(run_id)
    raw = w.get("runs", rk)
    if raw is None:
        return False
    rec = decode(raw)
    pre = rk + K.SEP
    flows = [k[len(pre):] for k, _ in w.scan_prefix("run_flows", pre)]
    if not force:
        if rec["state"] not in TERMINAL_STATES:
            return False
        if any(w.get("flows_live", f) is not None for f in flows):
            return False
    for f in flows:
        fp = f + K.SEP
        w.known.discard(f)
        w.delete("flows", f)
        w.delete("flows_live", f)
        w.delete("checkpoints", f)
        w.delete_prefix("journal", fp)
        w.delete_prefix("intents", fp)
        for k, due in w.scan_prefix("timer_ids", fp):
            w.delete("timers", due + k)
        w.delete_prefix("timer_ids", fp)
        w.delete_prefix("inbox", fp)
        w.delete("inbox_meta", f)
        w.delete_prefix("inbox_ids", fp)
        w.delete_prefix("flow_children", fp)
    w.delete_prefix("run_flows", pre)
    w.delete_prefix("output", pre)
    w.delete("output_meta", rk)
    w.delete("runs_by_created", K.created_key(rec["created"], run_id))
    w.delete("runs_by_state", K.state_created_key(rec["state"], rec["created"], run_id))
    w.delete("runs", rk)
    return True


# ---------------------------------------------------------------- called flows
# A child flow born and ended within its caller's step (`Batch.call_ended`) and named
# ``CALLER.SEQ`` (as the runtime names the child of action SEQ) has no records of its
# own: its flow record rides in the caller's journal entry for that action, under "c".
# An inline call then writes one B-tree leaf instead of five (the flow record, its two
# index entries, its closed inbox, the journal entry), and its commit writes and
# fsyncs that many fewer pages. Such a flow is ended for good; the readers below
# find it, and it goes with its caller's journal (a run's deletion).

# Such a journal entry starts with this byte (an encoded record, a pickle, never
# does): listing a flow's called flows decodes those entries only.
_CALLED_TAG = b"C"


def decode_journal(raw: bytes) -> dict:
    """A journal entry: {q, r, s, f} and, for a call, "c"."""
    return decode(raw[1:] if raw[:1] == _CALLED_TAG else raw)


def _called_key(flow_id: str) -> bytes | None:
    caller, dot, seq = flow_id.rpartition(".")
    if not caller or not seq.isascii() or not seq.isdigit() or str(int(seq)) != seq \
            or int(seq) >= 1 << 64:
        return None
    return K.id_seq(caller, int(seq))


def called_record(txn, db: dict, flow_id: str) -> dict | None:
    """The record of ``flow_id`` if it is a flow called within its caller's step."""
    key = _called_key(flow_id)
    raw = None if key is None else txn.get(key, db=db["journal"])
    if raw is None or raw[:1] != _CALLED_TAG:
        return None
    rec = decode(raw[1:])["c"]
    return rec if rec["id"] == flow_id else None


def flow_record(txn, db: dict, flow_id: str) -> dict | None:
    """The record of flow ``flow_id`` (its own, or its caller's copy), or None."""
    raw = txn.get(K.enc_id(flow_id), db=db["flows"])
    return decode(raw) if raw is not None else called_record(txn, db, flow_id)


def called_children(txn, db: dict, fk: bytes) -> list[dict]:
    """The records of the flows called within the steps of flow ``fk`` (encoded id)."""
    return [decode(v[1:])["c"] for _, v in iter_prefix(txn, db["journal"], fk + K.SEP)
            if v[:1] == _CALLED_TAG]


def inbox_meta(txn, db: dict, flow_id: str) -> tuple[int, int, int]:
    """(head, tail, closed) of the flow's inbox. A flow called within its caller's
    step has none: it has ended, so its inbox is closed."""
    fk = K.enc_id(flow_id)
    raw = txn.get(fk, db=db["inbox_meta"])
    if raw is not None:
        return _INBOX_META.unpack(raw)
    if txn.get(fk, db=db["flows"]) is None and called_record(txn, db, flow_id) is not None:
        return 0, 0, 1
    return 0, 0, 0


# ---------------------------------------------------------------- flows

def _load_flow(w: Writer, flow_id: str) -> dict:
    rec = flow_record(w.txn, w.db, flow_id)
    if rec is None:
        raise NotFoundError(f"no flow {flow_id!r}")
    return rec


def _require_flow(w: Writer, fk: bytes, flow_id: str, ended: str = "") -> None:
    w.require_flow(fk, flow_id, ended)


def _create_flow(w: Writer, flow_id, run_id, name, parent, args, state, created, meta):
    fk = K.enc_id(flow_id)
    old = flow_record(w.txn, w.db, flow_id)
    if old is not None:
        if old["run"] != run_id or old.get("parent") != parent:
            raise ConflictError(f"flow {flow_id!r} already exists in run {old['run']!r}"
                                f" with parent {old.get('parent')!r}")
        return False
    if w.get("runs", K.enc_id(run_id)) is None:
        raise NotFoundError(f"no run {run_id!r} for flow {flow_id!r}")
    if parent is not None and w.get("flows", K.enc_id(parent)) is None:
        if called_record(w.txn, w.db, parent) is not None:
            # It ended within its caller's step, and is in no index its children's
            # deletion would follow.
            raise ConflictError(f"flow {parent!r} has ended (it ran within its caller's "
                                f"step): it cannot start {flow_id!r}")
        raise NotFoundError(f"no parent flow {parent!r} for flow {flow_id!r}")
    _put_new_flow(w, fk, flow_id, run_id, name, parent, args, state, created, meta)
    return True


def _flow_record(now, flow_id, run_id, name, parent, args, state, created, meta,
                 result=None, error=None, ran: bool = False) -> dict:
    return {"id": flow_id, "run": run_id, "parent": parent, "name": name, "args": args,
            "state": state, "created": now if created is None else created, "updated": now,
            "started": now if state == "running" or ran else None,
            "finished": now if state in TERMINAL_STATES else None,
            "result": result, "error": error, "meta": meta}


def _put_new_flow(w: Writer, fk, flow_id, run_id, name, parent, args, state, created, meta,
                  result=None, error=None, ran: bool = False) -> None:
    rec = _flow_record(w.now, flow_id, run_id, name, parent, args, state, created, meta,
                       result, error, ran)
    _put_flow_record(w, fk, flow_id, run_id, parent, state, encode(rec))


def _put_flow_record(w: Writer, fk, flow_id, run_id, parent, state, raw: bytes) -> None:
    w.put("flows", fk, raw)
    w.put("run_flows", K.pair(run_id, flow_id), b"")
    if parent is not None:
        w.put("flow_children", K.pair(parent, flow_id), b"")
    if state in LIVE_STATES:
        w.put("flows_live", fk, K.enc_id(run_id))


def _check_call(w: Writer, parent, flow_id, run_id) -> None:
    # (A called flow of that id, kept in a journal, each caller checks its own way.)
    if w.get("flows", K.enc_id(flow_id)) is not None:
        raise ConflictError(f"flow {flow_id!r} exists already")
    # The parent is live (and so exists, and so does its run, which its record
    # names): a flow cancelled (or ended) meanwhile must not go on calling, and a
    # conflict here is what stops it.
    pk = K.enc_id(parent)
    live_in = w.get("flows_live", pk)
    if live_in is None:
        if flow_record(w.txn, w.db, parent) is None:
            raise NotFoundError(f"no flow {parent!r}")
        raise ConflictError(f"flow {parent!r} has ended (cancelled?): it cannot call {flow_id!r}")
    if live_in != K.enc_id(run_id):
        raise ConflictError(f"flow {flow_id!r} would be in run {run_id!r}, its caller "
                            f"{parent!r} in run {bytes(live_in).decode()!r}")


def _call_ended(w: Writer, parent, pkey, flow_id, run_id, state, rec, entry):
    if called_record(w.txn, w.db, flow_id) is not None:
        raise ConflictError(f"flow {flow_id!r} exists already")
    _check_call(w, parent, flow_id, run_id)
    fk = K.enc_id(flow_id)
    _put_flow_record(w, fk, flow_id, run_id, parent, state, rec)
    w.put("inbox_meta", fk, _CLOSED_INBOX)   # ended: its inbox is closed
    if w.get("journal", pkey) is None:
        w.put("journal", pkey, entry)
    return True


def _mark_schema(w: Writer) -> None:
    # What only schema 2 reads is being written: an older Flowmetal must refuse the
    # store from now on rather than miss it. (Once per transaction.)
    if not w.schema_marked:
        raw = w.get("meta", b"schema")
        if raw is None or int(raw) < SCHEMA_VERSION:
            w.put("meta", b"schema", str(SCHEMA_VERSION).encode())
        w.schema_marked = True


def _call_ended_in_journal(w: Writer, parent, pkey, flow_id, run_id, entry):
    _check_call(w, parent, flow_id, run_id)
    _mark_schema(w)
    # A called twin shows here: its entry is this one's key.
    if not w.txn.put(pkey, entry, db=w.db["journal"], overwrite=False):
        if called_record(w.txn, w.db, flow_id) is not None:
            raise ConflictError(f"flow {flow_id!r} exists already")
        raise ConflictError(f"flow {parent!r} has journaled action {K.split_id_seq(pkey)[1]} "
                            f"already: it cannot call {flow_id!r} there")
    return True


def _create_child(w: Writer, parent_id, child_id, kwargs):
    rec = _load_flow(w, parent_id)
    kw = {"args": None, "state": "pending", "created": None, "meta": {}}
    kw.update(kwargs)
    return _create_flow(w, child_id, rec["run"], kw["name"], parent_id, kw["args"],
                        _check_state(kw["state"]), kw["created"], kw["meta"] or {})


def _set_flow_state(w: Writer, flow_id, state, result, error, meta):
    fk = K.enc_id(flow_id)
    raw = w.get("flows", fk)
    if raw is None:
        w.require_flow(fk, flow_id)   # raises: no such flow, or a called one (ended)
    rec = decode(raw)
    old = rec["state"]
    revive = old == "crashed" and state in LIVE_STATES
    if old in TERMINAL_STATES and state != old and not revive:
        raise ConflictError(f"flow {flow_id!r} already ended ({old}); cannot become {state}")
    now = w.now
    rec["state"] = state
    rec["updated"] = now
    if state == "running" and rec.get("started") is None:
        rec["started"] = now
    if state in TERMINAL_STATES and rec.get("finished") is None:
        rec["finished"] = now
    if revive:
        rec["finished"] = None
        head, tail, closed = _inbox_state(w, flow_id)
        if closed:
            w.put("inbox_meta", fk, _INBOX_META.pack(head, tail, 0))
    if result is not NOTSET:
        rec["result"] = result
    if error is not NOTSET:
        rec["error"] = error
    if meta:
        rec["meta"].update(meta)
    w.put("flows", fk, encode(rec))
    if state in TERMINAL_STATES:
        w.delete("flows_live", fk)
    elif old not in LIVE_STATES:
        w.put("flows_live", fk, K.enc_id(rec["run"]))
    return rec


def _set_flow_state_op(w: Writer, flow_id, state, result, error, meta):
    _set_flow_state(w, flow_id, state, result, error, meta)


def _flow_finished(w: Writer, flow_id, state, result, error, keep_checkpoint):
    rec = _set_flow_state(w, flow_id, state, result, error, None)
    if state != "crashed":
        # A crashed flow keeps checkpoint, intents, timers and inbox: it can be revived.
        fk = K.enc_id(flow_id)
        fp = fk + K.SEP
        if not keep_checkpoint:
            w.delete("checkpoints", fk)
        if state == "cancelled":
            # The actions it was waiting on stay in its history, ended by the cancel
            # (the command ran, the sleep had begun): journaled, not just dropped.
            for key, raw in w.scan_prefix("intents", fp):
                if w.get("journal", key) is None:
                    intent = decode(raw)
                    w.put("journal", bytes(key), encode({
                        "q": intent.get("q"), "r": {"ok": False, "error": "cancelled"},
                        "s": intent.get("t"), "f": w.now}))
        w.delete_prefix("intents", fp)
        for k, due in w.scan_prefix("timer_ids", fp):
            w.delete("timers", due + k)
        w.delete_prefix("timer_ids", fp)
        _inbox_close(w, flow_id)
    run_id = rec["run"]
    rraw = w.get("runs", K.enc_id(run_id))
    if rraw is not None and decode(rraw).get("root_flow") == flow_id:
        _set_run_state(w, run_id, state, None, None)


def _cancel_live_flows(w: Writer, run_id, result, error):
    rk = K.enc_id(run_id)
    ids = [bytes(k) for k, v in w.scan_prefix("flows_live", rk + b".") if v == rk]
    for fk in ids:
        _flow_finished(w, fk.decode("utf-8"), "cancelled", result, error, False)


# ---------------------------------------------------------------- checkpoints, intents, journal

def _put_checkpoint(w: Writer, flow_id, payload, seq):
    fk = K.enc_id(flow_id)
    _require_flow(w, fk, flow_id)
    w.put("checkpoints", fk, wrap_checkpoint(payload, w.app_version, seq, w.now))


def _add_intent(w: Writer, flow_id, key, request):
    w.require_flow(K.enc_id(flow_id), flow_id)
    w.put("intents", key, encode({"q": request, "t": w.now}))


def _flow_suspended(w: Writer, flow_id, fk, seq, payload, request):
    w.require_flow(fk, flow_id)
    txn, db = w.txn, w.db
    txn.put(fk, wrap_checkpoint(payload, w.app_version, seq, w.now), db=db["checkpoints"])
    txn.put(fk + K.SEP + K.u64(seq), encode({"q": request, "t": w.now}), db=db["intents"])


def _action_completed(w: Writer, flow_id, fk, seq, result, payload, nseq, nreq):
    w.require_flow(fk, flow_id)
    txn, db = w.txn, w.db
    key = fk + K.SEP + K.u64(seq)
    raw = txn.pop(key, db=db["intents"])
    if result is not NOTSET:
        request = started = None
        if raw is not None:
            intent = decode(raw)
            request, started = intent["q"], intent["t"]
        # first result wins: no overwrite
        txn.put(key, encode({"q": request, "r": result, "s": started, "f": w.now}),
                db=db["journal"], overwrite=False)
    due = txn.get(key, db=db["timer_ids"])
    if due is not None:
        txn.delete(due + key, db=db["timers"])
        txn.delete(key, db=db["timer_ids"])
    if payload is not None:
        txn.put(fk, wrap_checkpoint(payload, w.app_version, nseq, w.now), db=db["checkpoints"])
    if nseq is not None:
        txn.put(fk + K.SEP + K.u64(nseq), encode({"q": nreq, "t": w.now}), db=db["intents"])


def _journal_result(w: Writer, flow_id, key, seq, result, request, started):
    if w.get("journal", key) is not None:
        return False
    if request is NOTSET or started is None:
        raw = w.get("intents", key)
        if raw is not None:
            intent = decode(raw)
            if request is NOTSET:
                request = intent["q"]
            if started is None:
                started = intent["t"]
        else:
            w.require_flow(K.enc_id(flow_id), flow_id)
    w.put("journal", key, encode({"q": None if request is NOTSET else request, "r": result,
                                  "s": started, "f": w.now}))
    return True


# ---------------------------------------------------------------- timers

def _add_timer(w: Writer, flow_id, seq, due, payload):
    idk = K.id_seq(flow_id, seq)
    w.require_flow(K.enc_id(flow_id), flow_id)
    _cancel_timer(w, idk)
    tk = K.timer_key(due, flow_id, seq)
    w.put("timers", tk, encode(payload))
    w.put("timer_ids", idk, tk[:8])


def _cancel_timer(w: Writer, idk):
    due = w.get("timer_ids", idk)
    if due is None:
        return False
    w.delete("timers", due + idk)
    w.delete("timer_ids", idk)
    return True


def _take_due_timers(w: Writer, now, limit):
    bound = K.time_ns(now)
    out = []
    with w.txn.cursor(db=w.db["timers"]) as cur:
        if cur.first():
            while len(out) < limit and K.read_u64(cur.key()) <= bound:
                k, v = cur.item()
                due, flow, seq = K.split_timer_key(k)
                out.append(Timer(due, flow, seq, decode(v)))
                w.delete("timer_ids", k[8:])
                if not cur.delete():
                    break
    return out


# ---------------------------------------------------------------- inboxes

def _inbox_state(w: Writer, flow_id: str) -> tuple[int, int, int]:
    return inbox_meta(w.txn, w.db, flow_id)


def _inbox_append(w: Writer, flow_id, body, msg_id, digest=None):
    fk = K.enc_id(flow_id)
    _require_flow(w, fk, flow_id, "; its inbox is closed")
    head, tail, closed = _inbox_state(w, flow_id)
    if msg_id is not None:
        # A retry of a message delivered before is answered as such, even once the
        # inbox has closed since (the message was taken: the retry is no failure).
        idk = K.pair(flow_id, msg_id)
        old = w.get("inbox_ids", idk)
        if old is not None:
            # seq (8 bytes), then the digest of the message if one was given.
            if digest is not None and len(old) > 8 and bytes(old[8:]) != digest:
                raise MessageIdReusedError(
                    f"message id {msg_id!r} was used before, for a different message "
                    f"to flow {flow_id!r}")
            return None
    if closed:
        raise ConflictError(f"flow {flow_id!r} has ended; its inbox is closed")
    if msg_id is not None:
        w.put("inbox_ids", idk, K.u64(tail) + (digest or b""))
    w.put("inbox", K.id_seq(flow_id, tail), encode({"b": body, "i": msg_id, "t": w.now}))
    w.put("inbox_meta", fk, _INBOX_META.pack(head, tail + 1, closed))
    return tail


def _inbox_pop(w: Writer, flow_id, expect_seq):
    fk = K.enc_id(flow_id)
    head, tail, closed = _inbox_state(w, flow_id)
    if head >= tail:
        if expect_seq is not None:
            raise ConflictError(f"inbox of flow {flow_id!r} is empty, expected message {expect_seq}")
        return None
    if expect_seq is not None and expect_seq != head:
        raise ConflictError(f"inbox of flow {flow_id!r}: front is message {head}, "
                            f"expected {expect_seq}")
    key = K.id_seq(flow_id, head)
    d = decode(w.get("inbox", key))
    w.delete("inbox", key)
    w.put("inbox_meta", fk, _INBOX_META.pack(head + 1, tail, closed))
    return Message(flow_id, head, d["b"], d["i"], d["t"])


def _inbox_close(w: Writer, flow_id):
    fk = K.enc_id(flow_id)
    head, tail, closed = _inbox_state(w, flow_id)
    if not closed:
        w.put("inbox_meta", fk, _INBOX_META.pack(head, tail, 1))


# ---------------------------------------------------------------- output

def _append_output(w: Writer, run_id, text, flow_id, stream):
    rk = K.enc_id(run_id)
    if w.get("runs", rk) is None:
        raise NotFoundError(f"no run {run_id!r}")
    raw = w.get("output_meta", rk)
    offset = K.read_u64(raw) if raw is not None else 0
    w.put("output", rk + K.SEP + K.u64(offset),
          encode({"t": text, "f": flow_id, "s": stream, "w": w.now}))
    w.put("output_meta", rk, K.u64(offset + len(text.encode("utf-8"))))
    return offset


def _append_flow_output(w: Writer, flow_id, text, stream):
    rec = _load_flow(w, flow_id)
    return _append_output(w, rec["run"], str(text), flow_id, stream)


# ---------------------------------------------------------------- code

def _put_code(w: Writer, h, data):
    k = h.encode()
    if w.get("code", k) is None:
        w.put("code", k, data)
    return h


# Databases whose values may name a source by its hash (see `Batch.sweep_code`).
_CODE_REFERRERS = ("runs", "batches", "batch_items", "checkpoints", "journal", "intents",
                   "timers", "inbox")
_CODE_HASH = re.compile(rb"[0-9a-f]{64}")


def _sweep_code(w: Writer) -> int:
    unused = {bytes(k) for k, _ in iter_prefix(w.txn, w.db["code"], b"")}
    for db in _CODE_REFERRERS:
        if not unused:
            break
        for _, v in iter_prefix(w.txn, w.db[db], b""):
            unused.difference_update(_CODE_HASH.findall(v))
    for k in unused:
        w.delete("code", k)
    return len(unused)


# ---------------------------------------------------------------- batches

def _create_batch(w: Writer, batch_id, items, meta):
    bk = K.enc_id(batch_id)
    if w.get("batches", bk) is not None:
        return False
    w.put("batches", bk, encode({"state": "pending", "created": w.now, "updated": w.now,
                                 "size": len(items), "meta": meta}))
    for i, args in enumerate(items):
        w.put("batch_items", bk + K.SEP + K.u64(i),
              encode({"a": args, "s": "pending", "r": None, "u": w.now, "m": {}}))
    return True


def _set_batch_item(w: Writer, batch_id, index, state, run_id, meta):
    key = K.id_seq(batch_id, index)
    raw = w.get("batch_items", key)
    if raw is None:
        raise NotFoundError(f"batch {batch_id!r} has no item {index}")
    d = decode(raw)
    if state is not None:
        d["s"] = state
    if run_id is not NOTSET:
        d["r"] = run_id
    if meta:
        d["m"].update(meta)
    d["u"] = w.now
    w.put("batch_items", key, encode(d))


def _set_batch_state(w: Writer, batch_id, state, meta):
    bk = K.enc_id(batch_id)
    raw = w.get("batches", bk)
    if raw is None:
        raise NotFoundError(f"no batch {batch_id!r}")
    d = decode(raw)
    d["state"] = state
    d["updated"] = w.now
    if meta:
        d["meta"].update(meta)
    w.put("batches", bk, encode(d))
