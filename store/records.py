"""Record types handed out by the store, and how they are encoded in LMDB.

Metadata records (runs, flows, journal entries, intents, messages, ...) hold plain
data only — None, bool, int, float, str, bytes, list, tuple, dict, set — so callers may
pass pickled bytes or plain values for args, results, requests and message bodies.
Checkpoints are raw bytes inside a small binary envelope.
"""

from __future__ import annotations

import io
import pickle
import struct
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import CheckpointError, CorruptStoreError

# Flow and run states. A flow or run in a TERMINAL state never runs again.
LIVE_STATES = frozenset({"pending", "running", "waiting"})
TERMINAL_STATES = frozenset({"ok", "err", "crashed", "cancelled"})
STATES = LIVE_STATES | TERMINAL_STATES

Value = Any  # plain data: None, bool, int, float, str, bytes, list, tuple, dict, set


# ---------------------------------------------------------------- record codec
# Records are pickles restricted to plain data (None, bool, int, float, str, bytes,
# bytearray, list, tuple, dict, set, frozenset of those — exact types only): the C
# pickler is ~4x faster than JSON here, and refusing every other object at write time
# means nothing stored refers to a class that a later version could lack.


class _PlainPickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        # Only called for objects that are not of the exact builtin types above.
        raise TypeError(f"cannot store a value of type {type(obj).__name__}; "
                        "pass bytes (e.g. pickled by the caller) or plain data")


_tls = threading.local()
_BIG_RECORD = 4 << 10   # bytes: a record this big may have grown the pickler's memo


def encode(obj: Any) -> bytes:
    """Encode a record (plain data, bytes anywhere) for LMDB."""
    try:
        buf, p = _tls.pickler
    except AttributeError:
        buf = io.BytesIO()
        p = _PlainPickler(buf, 5)
        _tls.pickler = (buf, p)
    buf.seek(0)
    buf.truncate()
    p.clear_memo()
    try:
        p.dump(obj)
        return buf.getvalue()
    finally:
        if buf.tell() > _BIG_RECORD:
            # clear_memo() costs the size the memo table ever grew to: after one
            # record of 20,000 objects every later encode took ~60 us instead of ~2.
            # Start over (also when the dump failed half-way).
            del _tls.pickler


def decode(data: bytes) -> Any:
    """Inverse of `encode`; a damaged record is a `CorruptStoreError`."""
    try:
        return pickle.loads(data)
    except Exception as e:  # noqa: BLE001
        raise CorruptStoreError(f"a stored record is damaged ({type(e).__name__})") from None


# ---------------------------------------------------------------- checkpoint envelope

CHECKPOINT_MAGIC = b"FMCK"
CHECKPOINT_FORMAT = 1
# magic, format, python major, python minor, flowmetal-version length, seq (-1 = none), created
_ENVELOPE = struct.Struct(">4sHBBHqd")


def wrap_checkpoint(payload: bytes, app_version: str, seq: int | None, created: float,
                    python: tuple[int, int] | None = None) -> bytes:
    ver = app_version.encode("utf-8")[:0xFFFF]
    py = python or sys.version_info[:2]
    head = _ENVELOPE.pack(CHECKPOINT_MAGIC, CHECKPOINT_FORMAT, py[0], py[1], len(ver),
                          -1 if seq is None else seq, created)
    return b"".join((head, ver, payload))


def unwrap_checkpoint(flow_id: str, data: bytes) -> "Checkpoint":
    """Parse an envelope; a damaged or unknown one raises `CheckpointError` naming the flow."""
    if len(data) < _ENVELOPE.size or data[:4] != CHECKPOINT_MAGIC:
        raise CheckpointError(flow_id, "not a Flowmetal checkpoint (bad envelope)")
    magic, fmt, pmaj, pmin, vlen, seq, created = _ENVELOPE.unpack_from(data)
    if fmt > CHECKPOINT_FORMAT:
        raise CheckpointError(
            flow_id, f"written in checkpoint format {fmt}, this Flowmetal reads up to "
                     f"{CHECKPOINT_FORMAT}; upgrade Flowmetal")
    end = _ENVELOPE.size + vlen
    if len(data) < end:
        raise CheckpointError(flow_id, "envelope is truncated")
    return Checkpoint(flow_id=flow_id, payload=bytes(data[end:]), format=fmt,
                      python=(pmaj, pmin),
                      flowmetal_version=data[_ENVELOPE.size:end].decode("utf-8", "replace"),
                      seq=None if seq < 0 else seq, created=created)


# ---------------------------------------------------------------- records

@dataclass(slots=True)
class Run:
    """One submitted program execution (a root flow and everything it started)."""
    id: str
    file: str
    root_flow: str | None
    state: str
    created: float
    updated: float
    finished: float | None = None
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"id": self.id, "file": self.file, "root_flow": self.root_flow,
                "state": self.state, "created": self.created, "updated": self.updated,
                "finished": self.finished, "meta": self.meta}

    @classmethod
    def from_dict(cls, d: dict) -> "Run":
        return cls(d["id"], d["file"], d.get("root_flow"), d["state"], d["created"],
                   d["updated"], d.get("finished"), d.get("meta") or {})


@dataclass(slots=True)
class Flow:
    """One flow instance: its place in the run tree, state, result and timings."""
    id: str
    run_id: str
    parent: str | None
    name: str
    args: Value
    state: str
    created: float
    updated: float
    started: float | None = None
    finished: float | None = None
    result: Value = None
    error: Value = None
    meta: dict = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    def to_dict(self) -> dict:
        return {"id": self.id, "run": self.run_id, "parent": self.parent, "name": self.name,
                "args": self.args, "state": self.state, "created": self.created,
                "updated": self.updated, "started": self.started, "finished": self.finished,
                "result": self.result, "error": self.error, "meta": self.meta}

    @classmethod
    def from_dict(cls, d: dict) -> "Flow":
        return cls(d["id"], d["run"], d.get("parent"), d["name"], d.get("args"), d["state"],
                   d["created"], d["updated"], d.get("started"), d.get("finished"),
                   d.get("result"), d.get("error"), d.get("meta") or {})


@dataclass(slots=True)
class Checkpoint:
    """A flow's latest checkpoint: the runtime's payload plus the envelope's facts."""
    flow_id: str
    payload: bytes
    format: int
    python: tuple[int, int]
    flowmetal_version: str
    seq: int | None
    created: float

    def load(self, loads: Callable[[bytes], Any] | None = None) -> Any:
        """Unpickle the payload (``loads`` defaults to `pickle.loads`).

        Any failure raises `CheckpointError` naming the flow (and the Python version
        it was written with, when that differs from this one).
        """
        if loads is None:
            import pickle
            loads = pickle.loads
        try:
            return loads(self.payload)
        except Exception as e:  # noqa: BLE001 - anything from unpickling is a load failure
            why = f"{type(e).__name__}: {e}"
            if tuple(self.python) != tuple(sys.version_info[:2]):
                why += (f" (written by Python {self.python[0]}.{self.python[1]}, "
                        f"this is {sys.version_info[0]}.{sys.version_info[1]})")
            raise CheckpointError(self.flow_id, why) from e


@dataclass(slots=True)
class JournalEntry:
    """The recorded outcome of one action of a flow (``seq`` is the action's number)."""
    flow_id: str
    seq: int
    request: Value
    result: Value
    started: float | None
    finished: float


@dataclass(slots=True)
class Intent:
    """An action a flow has asked for and whose result is not yet consumed."""
    flow_id: str
    seq: int
    request: Value
    created: float


@dataclass(slots=True)
class Timer:
    """A durable timer: fires at ``due`` (seconds since the epoch) for action ``seq``."""
    due: float
    flow_id: str
    seq: int
    payload: Value = None


@dataclass(slots=True)
class Message:
    """One message in a flow's inbox; ``seq`` is its position in that inbox."""
    flow_id: str
    seq: int
    body: Value
    msg_id: str | None
    sent: float


@dataclass(slots=True)
class OutputChunk:
    """A piece of a run's output; ``offset`` is its byte offset (UTF-8) in the stream."""
    run_id: str
    offset: int
    text: str
    flow_id: str | None
    stream: str
    time: float

    @property
    def end(self) -> int:
        """Offset just past this chunk: pass it back to read what follows."""
        return self.offset + len(self.text.encode("utf-8"))


@dataclass(slots=True)
class BatchItem:
    """One item of a batch: its arguments, state, and the run it became."""
    batch_id: str
    index: int
    args: Value
    state: str
    run_id: str | None
    updated: float
    meta: dict = field(default_factory=dict)


@dataclass(slots=True)
class BatchRecord:
    """A batch of runs (``flowmetal batch``)."""
    id: str
    state: str
    created: float
    updated: float
    size: int
    meta: dict = field(default_factory=dict)


@dataclass(slots=True)
class Recovery:
    """What restarting one live flow needs (`Store.recover`): its record, its latest
    checkpoint (or the `CheckpointError` saying why it cannot be read), and each
    pending intent with its journaled result if the action completed (resume with
    it) or None (issue the action again under the same seq)."""
    flow: Flow
    checkpoint: Checkpoint | None
    error: CheckpointError | None
    pending: list[tuple[Intent, JournalEntry | None]]
