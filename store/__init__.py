"""Flowmetal's durable store: LMDB-backed runs, flows, checkpoints, journal, intents,
timers, inboxes, output streams, code blobs and batches, written with group commit.

Imports nothing else of Flowmetal's. Typical use by the runtime::

    from store import Store, Batch

    st = Store.open(home)                       # once per process, after spawn
    st.commit(Batch().create_run("r1", file="etl.flow", root_flow="f1")
                     .create_flow("f1", run_id="r1", name="main", state="running"))

    # protocol step 1 — flow suspends on action 7: checkpoint + intent, one txn
    st.commit(Batch().flow_suspended("f1", 7, ckpt_bytes, request, state="waiting"))
    # protocol step 2 — the action's result + the next checkpoint (+ next intent)
    st.commit(Batch().action_completed("f1", 7, result, checkpoint=ckpt2,
                                       next_intent=(8, request8), state="waiting"))
    # a child flow ended; the parent's pending action 3 gets the value (its intent
    # stays until the parent's own action_completed("f1", 3, checkpoint=...))
    st.commit(Batch().flow_finished("f2", "ok", result=v, wake=("f1", 3, v)))

    # recovery (protocol step 3), one consistent snapshot of every live flow
    for r in st.recover():
        if r.error: ...                          # CheckpointError naming r.flow.id
        thread = r.checkpoint.load(cloudpickle.loads) if r.checkpoint else None
        for intent, done in r.pending:           # done: JournalEntry -> resume with
            ...                                  # done.result; None -> issue again

`Store.commit(batch)` returns after the batch is durable (fsync'd when ``sync=True``,
the default) with the list of the batch's operation results; a failing batch raises
its own error and no other caller's batch is affected. `Store.submit(batch)` returns a
`Pending` at once (``.result()``, ``.add_done_callback()``), for callers that must not
block (the callback runs on the committer thread: keep it short). A caller that finds
the committer idle commits on its own thread. ``sync=False`` skips the fsync: every
commit survives a crash of the process but not of the machine — meant for tests.

Values (args, results, requests, message bodies, meta) are plain data — None, bool,
int, float, str, bytes, list, tuple, dict, set — anything else is refused at write
time; pickle richer values yourself and pass bytes. Checkpoints are bytes.

States: ``pending``, ``running``, ``waiting`` (live) and ``ok``, ``err``,
``cancelled``, ``crashed`` (terminal; a ``crashed`` flow keeps its checkpoint, intents
and timers and can be revived by `Batch.set_flow_state` to a live state).

Several processes may open one store at once; each opens it once (`Store.open` returns
the same underlying environment for the same path in one process) and again after
fork/spawn. Errors are `StoreError` subclasses with one-line messages. Files live in
``HOME/store/`` (``data.mdb``, ``lock.mdb``); ``HOME`` is 0700, the files 0600.
"""

from .batch import DB_NAMES, NOTSET, Batch, code_hash
from .core import DEFAULT_MAP_SIZE, DEFAULT_MAX_MAP_SIZE, SCHEMA_VERSION, Pending, Store
from .errors import (CheckpointError, ConflictError, CorruptStoreError,
                     MessageIdReusedError, NotAStoreError, NotFoundError, SchemaError, StoreClosedError, StoreError,
                     StoreFullError, StoreNotFoundError)
from .records import (LIVE_STATES, STATES, TERMINAL_STATES, BatchItem, BatchRecord,
                      Checkpoint, Flow, Intent, JournalEntry, Message, OutputChunk, Recovery,
                      Run, Timer)

__all__ = [
    "Store", "Batch", "Pending", "NOTSET", "DB_NAMES", "code_hash",
    "SCHEMA_VERSION", "DEFAULT_MAP_SIZE", "DEFAULT_MAX_MAP_SIZE",
    "LIVE_STATES", "TERMINAL_STATES", "STATES",
    "Run", "Flow", "Checkpoint", "JournalEntry", "Intent", "Timer", "Message",
    "OutputChunk", "BatchRecord", "BatchItem", "Recovery",
    "StoreError", "NotAStoreError", "StoreNotFoundError", "SchemaError",
    "CorruptStoreError", "StoreFullError", "StoreClosedError", "ConflictError",
    "NotFoundError", "CheckpointError", "MessageIdReusedError",
]
