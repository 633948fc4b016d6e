"""`Store`: the public face of the store — open/close, commit, and every read."""

from __future__ import annotations

import datetime as _dt
import time
from pathlib import Path
from typing import Any, Callable

from . import keys as K
from .batch import (Batch, Writer, called_children, decode_journal, flow_record, inbox_meta,
                    iter_prefix)
from .committer import Pending, commit_now
from .env import (DEFAULT_MAP_SIZE, DEFAULT_MAX_MAP_SIZE, SCHEMA_VERSION, Env, acquire_env,
                  release_env, verify_files)
from .errors import CheckpointError
from .records import (TERMINAL_STATES, BatchItem, BatchRecord, Checkpoint, Flow, Intent,
                      JournalEntry, Message, OutputChunk, Recovery, Run, Timer, decode,
                      unwrap_checkpoint)

# A caller that finds the committer idle commits on its own thread (no handoff).
INLINE_WHEN_IDLE = True

__all__ = ["Store", "Pending", "SCHEMA_VERSION", "DEFAULT_MAP_SIZE", "DEFAULT_MAX_MAP_SIZE"]


def _app_version() -> str:
    try:
        from importlib.metadata import version
        return version("flowmetal")
    except Exception:  # noqa: BLE001 - not installed: still a usable store
        return "unknown"


def _journal_entry(flow_id: str, seq: int, raw: bytes) -> JournalEntry:
    d = decode_journal(raw)
    return JournalEntry(flow_id, seq, d["q"], d["r"], d["s"], d["f"])


def _in_id_order(recs: list[dict]) -> list[Flow]:
    # The order of the indexes' keys, which flows kept in journals join.
    recs.sort(key=lambda r: r["id"].encode("utf-8"))
    return [Flow.from_dict(r) for r in recs]


def _pendings(batches: list) -> list[Pending]:
    # Batches as Pendings; one a caller made itself is kept.
    return [b if isinstance(b, Pending) else Pending(b) for b in batches]


class Store:
    """A Flowmetal store in a home directory (LMDB files in ``HOME/store/``).

    Thread-safe. Reads run in their own short read transactions and return plain
    records (never live cursors); writes go through `Batch` + `commit`/`submit`.
    """

    def __init__(self, env: Env) -> None:
        self._env = env
        self._closed = False

    # ================================================================ lifecycle
    @classmethod
    def open(cls, home: str | Path, *, sync: bool = True, create: bool = True,
             map_size: int = DEFAULT_MAP_SIZE, max_map_size: int = DEFAULT_MAX_MAP_SIZE,
             app_version: str | None = None, verify: bool = False) -> "Store":
        """Open (or with ``create``, create) the store of ``home``.

        Creates ``home`` and ``home/store`` with mode 0700 and the files with 0600,
        checks the files and the schema version (`SchemaError` if newer), clears stale
        reader slots. ``sync=False`` skips fsync on commit: commits survive the death of
        the process, not of the machine — for tests. The map starts at ``map_size`` bytes
        and doubles when full up to ``max_map_size`` (then `StoreFullError`).
        ``app_version`` is written into checkpoint envelopes (default: the installed
        flowmetal package's version). ``verify`` first walks every page of the file
        (see `Store.verify`), for a store that may be damaged. In one process the same
        path shares one LMDB environment; open again after fork.
        """
        env = acquire_env(Path(home), sync=sync, create=create, map_size=map_size,
                          max_map_size=max_map_size, verify=verify,
                          app_version=app_version or _app_version())
        return cls(env)

    @staticmethod
    def verify(home: str | Path) -> list[str]:
        """Check the store's data file page by page without opening it (safe on a
        damaged file; do not run it while a process writes). Returns the problems, []
        if none."""
        return verify_files(Path(home).expanduser())

    @property
    def home(self) -> Path:
        """The home directory."""
        return self._env.home

    @property
    def path(self) -> Path:
        """The directory of the LMDB files."""
        return self._env.path

    @property
    def sync(self) -> bool:
        """Whether commits are fsync'd."""
        return self._env.sync

    def close(self) -> None:
        """Commit what is queued, then close (the environment closes with its last Store)."""
        if self._closed:
            return
        self._closed = True
        if self._env.forked:
            return
        release_env(self._env)

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def reader_check(self) -> int:
        """Clear reader slots left by dead processes (call after a worker dies).
        Returns how many were cleared."""
        self._env.check()
        return self._env.env.reader_check()

    def stats(self) -> dict:
        """Map size, bytes in use, entries per database, group-commit counters, and the
        id of the last committed write transaction (by any process: a commit counter)."""
        env = self._env
        env.check()

        def fn(txn):
            return ({n: txn.stat(h)["entries"] for n, h in env.db.items()},
                    int(txn.get(b"schema", db=env.db["meta"])))
        entries, schema = env.read(fn)
        info = env.env.info()
        psize = env.env.stat()["psize"]
        return {"home": str(env.home), "schema": schema, "sync": env.sync,
                "map_size": info["map_size"], "used_bytes": (info["last_pgno"] + 1) * psize,
                "readers": info["num_readers"], "entries": entries,
                "last_txn": info["last_txnid"],
                "groups": env.committer.groups, "grouped_batches": env.committer.batches}

    # ================================================================ writing
    def batch(self) -> Batch:
        """A new empty `Batch` (same as ``Batch()``)."""
        return Batch()

    def commit(self, batch: Batch, timeout: float | None = None) -> list:
        """Apply ``batch`` atomically and return once it is durable, with the list of its
        operations' results. Raises the batch's own error (nothing of it is written);
        other callers' batches are unaffected."""
        env = self._env
        env.check()
        if not batch.ops:
            return []
        c = env.committer
        if INLINE_WHEN_IDLE and c.idle() and env.write_lock.acquire(False):
            try:
                return env.write(lambda txn: Writer(txn, env.db, time.time(),
                                                    env.app_version).apply(batch))
            finally:
                env.write_lock.release()
        return c.submit(batch).result(timeout)

    def commit_group(self, batches: list[Batch | Pending], *,
                     before_commit: Callable[[], None] | None = None,
                     durable: bool = True) -> list[Pending]:
        """Apply several callers' batches in one write transaction on this thread (one
        fsync for all) and return once they are durable, with one done `Pending` per
        batch: a batch that fails is rolled back alone (its Pending holds the error),
        as in group commit. For a thread that gathers its callers' batches itself. A
        batch may come as a `Pending` the caller made (to give it an ``after``, or to
        look at it in ``before_commit``); that one is returned.
        ``before_commit()``, if given, is called right before the transaction's commit
        (its page writes and fsync, which need no GIL): to let other work run meanwhile.
        By then each batch that failed on its own says so (`Pending.known_error`) —
        unless the group did not fit in the map: then it is committed batch by batch,
        and ``before_commit`` is called before the later ones are tried. It is called
        once per attempt (again if the map had to grow, and per batch if the group did
        not fit), so it must be idempotent, and the commit may still fail after it. The
        store's write lock is held from before that call until just before
        `commit_group` returns.

        ``durable=False`` makes the commit *quiet* (see `Env.write`): visible at once and
        safe from any crash of a process, but a power loss may take it back until the
        next commit or `make_durable`. Only for batches whose effects nobody outside the
        store has seen, and whose writers tell nobody of them before a durable commit."""
        env = self._env
        env.check()
        group = _pendings(batches)
        commit_now(env, group, before_commit, durable=durable)
        return group

    def start_group(self, batches: list[Batch | Pending], *,
                    before_commit: Callable[[], None] | None = None,
                    durable: bool = True) -> list[Pending]:
        """`commit_group` on the store's committer thread: returns at once with the
        Pendings. The group commits in turn with the batches submitted before it, in a
        transaction of its own; ``before_commit`` is then called on that thread."""
        env = self._env
        env.check()
        group = _pendings(batches)
        env.committer.submit_group(group, before_commit, durable)
        return group

    def settle(self) -> None:
        """Wait until every batch handed to the committer thread so far (`submit`,
        `start_group`) has been committed or has failed."""
        env = self._env
        env.check()
        last = Pending(Batch())
        env.committer.submit_group([last])
        last.exception()

    def make_durable(self) -> None:
        """Put everything committed so far, by any process, on disk (one fsync): for a
        reader about to show what it read, which a quiet commit (`commit_group`) may
        have written. (`read_output` does it itself.)"""
        self._env.sync_file()

    def submit(self, batch: Batch) -> Pending:
        """Queue ``batch`` for group commit and return at once; the `Pending` tells when
        it is durable (``result()``, ``add_done_callback()``)."""
        self._env.check()
        return self._env.committer.submit(batch)

    def put_code(self, source: str | bytes) -> str:
        """Store module source; returns its content hash (sha256 hex)."""
        return self.commit(Batch().put_code(source))[0]

    def prune(self, older_than: float | _dt.timedelta, *, chunk: int = 100,
              sweep: bool = True) -> int:
        """Remove finished runs that ended before ``older_than`` (an epoch timestamp, or
        an age as a timedelta), with all their flows, checkpoints, journal, intents,
        timers, inboxes and output. Runs still live, or with any live flow, are kept,
        and so are the runs of a batch that has not ended (``meta["batch"]``): its
        supervisor has yet to read their results. Then (unless not ``sweep``) the
        sources nothing refers to any more go too (`sweep_code`). Returns how many
        runs were removed."""
        if isinstance(older_than, _dt.timedelta):
            cutoff = time.time() - older_than.total_seconds()
        else:
            cutoff = float(older_than)
        env = self._env
        bound = K.time_ns(cutoff).to_bytes(8, "big")

        def candidates(txn):
            out = []
            with txn.cursor(db=env.db["runs_by_created"]) as cur:
                for k in cur.iternext(values=False):
                    if k[:8] >= bound:
                        break
                    raw = txn.get(k[8:], db=env.db["runs"])
                    if raw is None:
                        continue
                    d = decode(raw)
                    if d["state"] in TERMINAL_STATES and (d.get("finished") or 0) < cutoff \
                            and not batch_live(txn, (d.get("meta") or {}).get("batch")):
                        out.append(d["id"])
            return out

        live_batches: dict[str, bool] = {}

        def batch_live(txn, batch_id) -> bool:
            if not isinstance(batch_id, str):
                return False
            if batch_id not in live_batches:
                braw = txn.get(K.enc_id(batch_id), db=env.db["batches"])
                live_batches[batch_id] = braw is not None and \
                    decode(braw)["state"] not in TERMINAL_STATES
            return live_batches[batch_id]

        ids = env.read(candidates)
        removed = 0
        for i in range(0, len(ids), chunk):
            b = Batch()
            for rid in ids[i:i + chunk]:
                b.delete_run(rid)
            removed += sum(1 for r in self.commit(b) if r)
        if sweep:
            self.sweep_code()
        return removed

    def sweep_code(self) -> int:
        """Delete the stored sources nothing refers to any more (`Batch.sweep_code`);
        returns how many."""
        return self.commit(Batch().sweep_code())[0]

    # ================================================================ runs
    def get_run(self, run_id: str) -> Run | None:
        """The run, or None."""
        env = self._env
        raw = env.read(lambda txn: txn.get(K.enc_id(run_id), db=env.db["runs"]))
        return None if raw is None else Run.from_dict(decode(raw))

    def list_runs(self, state: str | None = None, *, limit: int = 100,
                  before: float | None = None) -> list[Run]:
        """Runs newest first, optionally of one state, created before ``before``
        (pass the last run's ``created`` to page on)."""
        env = self._env
        if state is None:
            db, pre = env.db["runs_by_created"], b""
        else:
            db, pre = env.db["runs_by_state"], state.encode() + K.SEP
        upper = (pre + K.time_ns(before).to_bytes(8, "big")) if before is not None \
            else K.next_prefix(pre) if pre else None
        skip = len(pre) + 8

        def fn(txn):
            out = []
            runs = env.db["runs"]
            with txn.cursor(db=db) as cur:
                ok = cur.set_range(upper) if upper is not None else cur.last()
                if upper is not None:
                    ok = cur.prev() if ok else cur.last()
                while ok and len(out) < limit:
                    k = cur.key()
                    if pre and k[:len(pre)] != pre:
                        break
                    raw = txn.get(k[skip:], db=runs)
                    if raw is not None:
                        out.append(Run.from_dict(decode(raw)))
                    ok = cur.prev()
            return out
        return env.read(fn)

    def count_runs(self, state: str | None = None) -> int:
        """How many runs (of one state)."""
        env = self._env
        if state is None:
            return env.read(lambda txn: txn.stat(env.db["runs"])["entries"])
        pre = state.encode() + K.SEP

        def fn(txn):
            n = 0
            with txn.cursor(db=env.db["runs_by_state"]) as cur:
                if cur.set_range(pre):
                    for k in cur.iternext(values=False):
                        if k[:len(pre)] != pre:
                            break
                        n += 1
            return n
        return env.read(fn)

    # ================================================================ flows
    def get_flow(self, flow_id: str) -> Flow | None:
        """The flow, or None."""
        env = self._env
        rec = env.read(lambda txn: flow_record(txn, env.db, flow_id))
        return None if rec is None else Flow.from_dict(rec)

    def _indexed(self, txn, db: str, pre: bytes, called: bool = False) -> list[dict]:
        """The records of the flows an index lists under ``pre``; with ``called``, each
        one's called flows too (kept in its journal, not in the index: see
        `batch.called_record`)."""
        dbs = self._env.db
        recs = []
        for k, _ in iter_prefix(txn, dbs[db], pre):
            fk = k[len(pre):]
            raw = txn.get(fk, db=dbs["flows"])
            if raw is not None:
                recs.append(decode(raw))
            if called:
                recs += called_children(txn, dbs, fk)
        return recs

    def children(self, flow_id: str) -> list[Flow]:
        """The flows started by ``flow_id``, in the order of their ids."""
        fk = K.enc_id(flow_id)
        return self._env.read(lambda txn: _in_id_order(
            self._indexed(txn, "flow_children", fk + K.SEP)
            + called_children(txn, self._env.db, fk)))

    def run_flows(self, run_id: str, *, called: bool = True) -> list[Flow]:
        """Every flow of the run, in the order of their ids. Not ``called``: without
        the flows called within their caller's step, which have ended (finding those
        reads every journal entry of the run)."""
        return self._env.read(lambda txn: _in_id_order(
            self._indexed(txn, "run_flows", K.prefix(run_id), called=called)))

    def live_flows(self) -> list[Flow]:
        """Every flow not in a terminal state — what recovery restarts."""
        return self._env.read(lambda txn: _in_id_order(self._indexed(txn, "flows_live", b"")))

    def recover(self) -> list[Recovery]:
        """Everything recovery needs, read in one consistent snapshot: for every live
        flow its checkpoint and its pending intents with their journaled results.
        A checkpoint that cannot be read is reported in ``Recovery.error`` (naming the
        flow) rather than raised, so that one bad flow does not stop the others."""
        env = self._env
        db = env.db

        def fn(txn):
            out = []
            with txn.cursor(db=db["flows_live"]) as cur:
                for fk in cur.iternext(values=False):
                    raw = txn.get(fk, db=db["flows"])
                    if raw is None:
                        continue
                    flow = Flow.from_dict(decode(raw))
                    ck = err = None
                    craw = txn.get(fk, db=db["checkpoints"])
                    if craw is not None:
                        try:
                            ck = unwrap_checkpoint(flow.id, craw)
                        except CheckpointError as e:
                            err = e
                    pending = []
                    pre = fk + K.SEP
                    for k, v in iter_prefix(txn, db["intents"], pre):
                        seq = K.read_u64(k, len(pre))
                        d = decode(v)
                        j = txn.get(k, db=db["journal"])
                        pending.append((Intent(flow.id, seq, d["q"], d["t"]),
                                        None if j is None else _journal_entry(flow.id, seq, j)))
                    out.append(Recovery(flow, ck, err, pending))
            return out
        return env.read(fn)

    # ================================================================ checkpoints
    def get_checkpoint(self, flow_id: str) -> Checkpoint | None:
        """The flow's latest checkpoint (None if it has none). A damaged envelope raises
        `CheckpointError` naming the flow."""
        env = self._env
        raw = env.read(lambda txn: txn.get(K.enc_id(flow_id), db=env.db["checkpoints"]))
        return None if raw is None else unwrap_checkpoint(flow_id, raw)

    def load_checkpoint(self, flow_id: str, loads: Callable[[bytes], Any] | None = None,
                        *, required: bool = False) -> Any:
        """Unpickle the flow's latest checkpoint with ``loads`` (default `pickle.loads`).
        Any failure is a `CheckpointError` naming the flow; no checkpoint is None, or an
        error with ``required``."""
        ck = self.get_checkpoint(flow_id)
        if ck is None:
            if required:
                raise CheckpointError(flow_id, "it has no checkpoint")
            return None
        return ck.load(loads)

    # ================================================================ journal & intents
    def journal(self, flow_id: str, *, after: int = -1, limit: int | None = None
                ) -> list[JournalEntry]:
        """The flow's journal in action order (entries with seq > ``after``)."""
        env = self._env
        pre = K.prefix(flow_id)

        def fn(txn):
            out = []
            with txn.cursor(db=env.db["journal"]) as cur:
                if cur.set_range(pre + K.u64(after + 1)):
                    for k, v in cur:
                        if k[:len(pre)] != pre or (limit is not None and len(out) >= limit):
                            break
                        out.append(_journal_entry(flow_id, K.read_u64(k, len(pre)), v))
            return out
        return env.read(fn)

    def get_journal(self, flow_id: str, seq: int) -> JournalEntry | None:
        """The journaled result of action ``seq``, or None if there is none yet."""
        env = self._env
        raw = env.read(lambda txn: txn.get(K.id_seq(flow_id, seq), db=env.db["journal"]))
        return None if raw is None else _journal_entry(flow_id, seq, raw)

    def intents(self, flow_id: str | None = None) -> list[Intent]:
        """Pending action intents — of one flow, or all of them (recovery)."""
        env = self._env
        pre = K.prefix(flow_id) if flow_id is not None else b""

        def fn(txn):
            out = []
            with txn.cursor(db=env.db["intents"]) as cur:
                ok = cur.set_range(pre) if pre else cur.first()
                if ok:
                    for k, v in cur:
                        if k[:len(pre)] != pre:
                            break
                        f, seq = K.split_id_seq(k)
                        d = decode(v)
                        out.append(Intent(f, seq, d["q"], d["t"]))
            return out
        return env.read(fn)

    def get_intent(self, flow_id: str, seq: int) -> Intent | None:
        env = self._env
        raw = env.read(lambda txn: txn.get(K.id_seq(flow_id, seq), db=env.db["intents"]))
        if raw is None:
            return None
        d = decode(raw)
        return Intent(flow_id, seq, d["q"], d["t"])

    # ================================================================ timers
    def next_timer(self) -> Timer | None:
        """The earliest timer (to know how long to sleep), or None."""
        t = self.due_timers(float("inf"), limit=1)
        return t[0] if t else None

    def due_timers(self, now: float, *, limit: int = 1000) -> list[Timer]:
        """Timers due at or before ``now``, earliest first (they stay until cancelled,
        taken, or consumed by `Batch.action_completed`)."""
        env = self._env
        bound = K.time_ns(min(now, 1.8e10))

        def fn(txn):
            out = []
            with txn.cursor(db=env.db["timers"]) as cur:
                if cur.first():
                    for k, v in cur:
                        if len(out) >= limit or K.read_u64(k) > bound:
                            break
                        due, f, seq = K.split_timer_key(k)
                        out.append(Timer(due, f, seq, decode(v)))
            return out
        return env.read(fn)

    def timers(self, flow_id: str) -> list[Timer]:
        """The flow's pending timers."""
        env = self._env
        pre = K.prefix(flow_id)

        def fn(txn):
            out = []
            tdb = env.db["timers"]
            with txn.cursor(db=env.db["timer_ids"]) as cur:
                if cur.set_range(pre):
                    for k, due in cur:
                        if k[:len(pre)] != pre:
                            break
                        v = txn.get(due + k, db=tdb)
                        out.append(Timer(K.read_u64(due) / 1e9, flow_id,
                                         K.read_u64(k, len(pre)),
                                         None if v is None else decode(v)))
            return out
        return env.read(fn)

    # ================================================================ inboxes
    def _inbox_meta(self, txn, flow_id: str) -> tuple[int, int, int]:
        return inbox_meta(txn, self._env.db, flow_id)

    def inbox_messages(self, flow_id: str, *, limit: int = 1000) -> list[Message]:
        """Queued messages of the flow, front first."""
        env = self._env
        pre = K.prefix(flow_id)

        def fn(txn):
            out = []
            with txn.cursor(db=env.db["inbox"]) as cur:
                if cur.set_range(pre):
                    for k, v in cur:
                        if k[:len(pre)] != pre or len(out) >= limit:
                            break
                        d = decode(v)
                        out.append(Message(flow_id, K.read_u64(k, len(pre)), d["b"], d["i"],
                                           d["t"]))
            return out
        return env.read(fn)

    def inbox_peek(self, flow_id: str) -> Message | None:
        """The front message, left in place (pop it with `Batch.inbox_pop`)."""
        m = self.inbox_messages(flow_id, limit=1)
        return m[0] if m else None

    def inbox_count(self, flow_id: str) -> int:
        """How many messages are queued."""
        head, tail, _ = self._env.read(lambda txn: self._inbox_meta(txn, flow_id))
        return tail - head

    def inbox_closed(self, flow_id: str) -> bool:
        """Whether the inbox refuses messages (its flow ended)."""
        return bool(self._env.read(lambda txn: self._inbox_meta(txn, flow_id))[2])

    # ================================================================ output
    def read_output(self, run_id: str, offset: int = 0, *, limit: int = 1000
                    ) -> list[OutputChunk]:
        """Output chunks of the run from byte ``offset`` on (a chunk that starts before
        it and reaches past it is included whole). Follow with the last chunk's ``end``.
        What it returns is on disk: a quiet commit (see `commit_group`) may have written
        it, and it is about to be shown."""
        env = self._env
        pre = K.prefix(run_id)

        def fn(txn):
            out = []
            with txn.cursor(db=env.db["output"]) as cur:
                ok = cur.set_range(pre + K.u64(offset))
                if ok and offset > 0:
                    k = cur.key()
                    if k[:len(pre)] != pre or K.read_u64(k, len(pre)) > offset:
                        ok = cur.prev()
                        if ok and cur.key()[:len(pre)] != pre:
                            ok = cur.next()
                elif not ok and offset > 0:
                    ok = cur.last()
                while ok and len(out) < limit:
                    k, v = cur.item()
                    if k[:len(pre)] != pre:
                        break
                    d = decode(v)
                    c = OutputChunk(run_id, K.read_u64(k, len(pre)), d["t"], d["f"], d["s"],
                                    d["w"])
                    if c.end > offset or (c.offset >= offset):
                        out.append(c)
                    ok = cur.next()
            return out
        chunks = env.read(fn)
        if chunks:
            env.sync_file()
        return chunks

    def output_size(self, run_id: str) -> int:
        """Bytes of output the run has produced (the offset of the next chunk)."""
        env = self._env
        raw = env.read(lambda txn: txn.get(K.enc_id(run_id), db=env.db["output_meta"]))
        return 0 if raw is None else K.read_u64(raw)

    def wait_output(self, run_id: str, offset: int, timeout: float, *,
                    poll: float = 0.05) -> bool:
        """Wait (polling) until the run's output grows past ``offset`` or ``timeout``
        passes. True if there is more to read. For ``logs --follow``."""
        deadline = time.monotonic() + timeout
        while True:
            if self.output_size(run_id) > offset:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(poll, left))

    # ================================================================ code
    def get_code(self, code_hash: str) -> bytes | None:
        """Module source by content hash, or None."""
        env = self._env
        return env.read(lambda txn: txn.get(code_hash.encode(), db=env.db["code"]))

    # ================================================================ batches of runs
    def get_batch(self, batch_id: str) -> BatchRecord | None:
        env = self._env
        raw = env.read(lambda txn: txn.get(K.enc_id(batch_id), db=env.db["batches"]))
        if raw is None:
            return None
        d = decode(raw)
        return BatchRecord(batch_id, d["state"], d["created"], d["updated"], d["size"],
                           d["meta"])

    def batch_items(self, batch_id: str) -> list[BatchItem]:
        """The batch's items in order."""
        env = self._env
        pre = K.prefix(batch_id)

        def fn(txn):
            out = []
            with txn.cursor(db=env.db["batch_items"]) as cur:
                if cur.set_range(pre):
                    for k, v in cur:
                        if k[:len(pre)] != pre:
                            break
                        d = decode(v)
                        out.append(BatchItem(batch_id, K.read_u64(k, len(pre)), d["a"],
                                             d["s"], d["r"], d["u"], d["m"]))
            return out
        return env.read(fn)

    def list_batches(self, *, limit: int = 100) -> list[BatchRecord]:
        """Batches, most recently created first."""
        env = self._env

        def fn(txn):
            out = []
            with txn.cursor(db=env.db["batches"]) as cur:
                for k, v in cur:
                    d = decode(v)
                    out.append(BatchRecord(k.decode(), d["state"], d["created"], d["updated"],
                                           d["size"], d["meta"]))
            return out
        out = env.read(fn)
        out.sort(key=lambda b: b.created, reverse=True)
        return out[:limit]
