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
    # protocol step 3 — the flow ended; the parent's pending action 3 gets the value
    st.commit(Batch().flow_finished("f2", "ok", result=v, wake=("f1", 3, v)))

    # recovery
    for flow in st.live_flows():
        ck = st.get_checkpoint(flow.id)          # CheckpointError names the flow
        thread = ck.load(cloudpickle.loads) if ck else None
        for intent in st.intents(flow.id):
            done = st.get_journal(flow.id, intent.seq)   # resume with done.result or re-issue

`Store.commit(batch)` returns after the batch is durable (fsync'd when ``sync=True``,
the default) with the list of the batch's operation results; a failing batch raises
its own error and no other caller's batch is affected. `Store.submit(batch)` returns a
`Pending` at once (``.result()``, ``.add_done_callback()``), for callers that must not
block. ``sync=False`` skips the fsync: every commit survives a crash of the process but
not of the machine — meant for tests.

Several processes may open one store at once; each opens it once (`Store.open` returns
the same underlying environment for the same path in one process) and again after
fork/spawn. Errors are `StoreError` subclasses with one-line messages.
"""

from .batch import DB_NAMES, NOTSET, Batch
from .core import DEFAULT_MAP_SIZE, DEFAULT_MAX_MAP_SIZE, SCHEMA_VERSION, Pending, Store
from .errors import (CheckpointError, ConflictError, CorruptStoreError, NotAStoreError,
                     NotFoundError, SchemaError, StoreClosedError, StoreError,
                     StoreFullError, StoreNotFoundError)
from .records import (LIVE_STATES, STATES, TERMINAL_STATES, BatchItem, BatchRecord,
                      Checkpoint, Flow, Intent, JournalEntry, Message, OutputChunk, Run,
                      Timer)

__all__ = [
    "Store", "Batch", "Pending", "NOTSET", "DB_NAMES",
    "SCHEMA_VERSION", "DEFAULT_MAP_SIZE", "DEFAULT_MAX_MAP_SIZE",
    "LIVE_STATES", "TERMINAL_STATES", "STATES",
    "Run", "Flow", "Checkpoint", "JournalEntry", "Intent", "Timer", "Message",
    "OutputChunk", "BatchRecord", "BatchItem",
    "StoreError", "NotAStoreError", "StoreNotFoundError", "SchemaError",
    "CorruptStoreError", "StoreFullError", "StoreClosedError", "ConflictError",
    "NotFoundError", "CheckpointError",
]
