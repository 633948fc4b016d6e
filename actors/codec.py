"""Bytes for the store: checkpoint payloads, action results and flow results.

A checkpoint payload is the pickled `FlowImage` (the suspended Thread together with
the runtime's bookkeeping for the flow, pickled in one go so the `fctx` they share
stays one object). Values that cross flows or go into the journal (a child's Result,
an exec result, the results of a `wait`) are pickled with the language's pickler,
which stores a Starlark function as (module, index, closure) rather than as Python
code — so they may hold any Starlark value, functions included.

A stored checkpoint names its modules by their sources' hashes, and the batch that
writes it stores those sources in the store's `code` table (once each): every
checkpoint of every flow would otherwise carry the prelude's source and its flow
file's, tens of KB for a real file.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from typing import Any, Callable

from flowmetal.prelude import Err, FlowContext, Ok, Result
from flowmetal.starlark import Thread, module_sources, source_sink
from store import Batch

from flowmetal.starlark import Pickler as _StarlarkPickler

PAYLOAD_FORMAT = 1


@dataclass
class FlowImage:
    """What a checkpoint holds: the Thread and the flow's runtime state."""
    thread: Thread | None
    fctx: FlowContext | None
    seq: int                      # last action / child number handed out
    last_result: Result | None    # module roots: the last flow call's Result
    is_module: bool               # the root of a run in `__main__`-block mode
    # A flow that has not started yet: (flow, args, kwargs) instead of a Thread. Its
    # Thread would be stopped at its start point, before any of its code: the same
    # thing, but ~3x the bytes (it embeds the prelude module) and a run to make.
    start: tuple | None = None


# A flow value pickles as its whole module (source, globals, the prelude names it
# sees): ~0.5 ms and ~2.5 KB. A parent that starts 10,000 children of one flow would
# pay that 10,000 times, so the bytes are made once per flow value and reused; and on
# loading, equal bytes give the same (frozen, hence shareable) flow value.
_FDEF_BYTES: dict[tuple, tuple] = {}   # (id(flow), by ref) -> (flow, pickle, sources)
_FDEF_LOADED: dict[bytes, Any] = {}              # pickle -> flow
_CACHE_MAX = 512


def _flow_bytes(fdef: Any) -> bytes:
    # Pickled as the checkpoint around it pickles modules: by source hash (then the
    # sources go into its sink, on a hit too) or with their sources.
    sink = source_sink()
    key = (id(fdef), sink is not None)
    hit = _FDEF_BYTES.get(key)
    if hit is not None and hit[0] is fdef:
        if sink is not None:
            sink.update(hit[2])
        return hit[1]
    sources: dict = {}
    with module_sources(sink=sources if sink is not None else None):
        data = dumps_value(fdef)
    if sink is not None:
        sink.update(sources)
    if len(_FDEF_BYTES) >= _CACHE_MAX:
        _FDEF_BYTES.clear()
    _FDEF_BYTES[key] = (fdef, data, sources)  # holding fdef keeps its id unique
    return data


def _start_from(data: bytes, args: tuple, kwargs: dict) -> tuple:
    fdef = _FDEF_LOADED.get(data)
    if fdef is None:
        fdef = loads_value(data)
        if len(_FDEF_LOADED) >= _CACHE_MAX:
            _FDEF_LOADED.clear()
        _FDEF_LOADED[data] = fdef
    return (fdef, args, kwargs)


class _Start:
    """A start spec on its way into a checkpoint (unpickles as the plain tuple)."""

    __slots__ = ("spec",)

    def __init__(self, spec: tuple):
        self.spec = spec

    def __reduce__(self):
        fdef, args, kwargs = self.spec
        return (_start_from, (_flow_bytes(fdef), args, kwargs))


def dumps_image(img: FlowImage, sources: dict | None = None) -> bytes:
    """A checkpoint payload. With `sources` (a dict), every module in it is pickled as
    its source's hash and `sources` receives {hash: UTF-8 source}: the caller stores
    those with the checkpoint (`put_sources`). Without, the payload carries the
    sources itself (an image handed to a worker process rather than stored)."""
    with module_sources(sink=sources):
        return _dumps_image(img)


def _dumps_image(img: FlowImage) -> bytes:
    if img.start is not None and not isinstance(img.start, _Start):
        img = FlowImage(img.thread, img.fctx, img.seq, img.last_result, img.is_module,
                        _Start(img.start))
    try:
        return pickle.dumps((PAYLOAD_FORMAT, img), protocol=5)
    except Exception:  # noqa: BLE001 - e.g. a Starlark function in fctx.args
        pass
    # Starlark functions (in a start spec, in fctx.args, in a last result) pickle
    # only by (module, index), which the language's pickler does.
    buf = io.BytesIO()
    _StarlarkPickler(buf, protocol=5).dump((PAYLOAD_FORMAT, img))
    return buf.getvalue()


def put_sources(b: Batch, sources: dict) -> None:
    """Store the module sources `dumps_image` collected, in the batch that stores the
    checkpoints referring to them (each source once per store: it is kept by content)."""
    for h, data in sources.items():
        b.put_code(data, known_hash=h)


def loads_image(data: bytes, resolve: Callable[[str], Any] | None = None) -> FlowImage:
    """A checkpoint payload's FlowImage. `resolve(hash)` gives the stored source of a
    module this process has not compiled yet (`Store.get_code`)."""
    with module_sources(resolve=resolve):
        fmt, img = pickle.loads(data)
    if fmt != PAYLOAD_FORMAT:
        raise ValueError(f"checkpoint payload format {fmt} is not supported")
    return img


def dumps_value(value: Any) -> bytes:
    """Pickle a Starlark value (functions included) for the journal or a flow result.

    Plain pickle first: it is ~20x cheaper than the language's (cloudpickle-based)
    pickler and gives the same bytes for plain data and our own classes; it refuses
    what it cannot name (a Starlark function is no importable global), and only then
    does the language's pickler do the work."""
    try:
        return pickle.dumps(value, protocol=5)
    except Exception:  # noqa: BLE001 - not plain: the general path decides
        pass
    buf = io.BytesIO()
    _StarlarkPickler(buf, protocol=5).dump(value)
    return buf.getvalue()


def loads_value(data: bytes) -> Any:
    return pickle.loads(data)


def result_record(result: Result, pickled: bytes | None = None) -> dict:
    """A flow's Result as stored in its flow record: JSON-able summary + exact bytes
    (``pickled``: `dumps_value(result)` when the caller has it already)."""
    # (`starlark_repr` is what `to_repr` ends in for a Result, minus the dispatch.)
    d: dict[str, Any] = {"ok": result.ok, "repr": result.starlark_repr(),
                         "v": dumps_value(result) if pickled is None else pickled}
    inner = result.value if result.ok else result.error
    if inner is None or isinstance(inner, (bool, int, float, str)):
        d["json"] = inner
    return d


def result_from_record(rec: Any) -> Result:
    """Inverse of `result_record` (a missing record reads as an Err)."""
    if not isinstance(rec, dict) or "v" not in rec:
        return Err("the flow left no result")
    return loads_value(rec["v"])


# An action's outcome ``(UNAVAILABLE, message)``: it could not be performed for want
# of something outside the flow (a secret missing from the environment after a
# restart). Never journaled: the flow crashes rather than fails, and its restarts
# issue the action again (see `FlowActor.on_receive`).
UNAVAILABLE = "unavailable"


def outcome_record(outcome: tuple) -> dict:
    """An action's outcome for the journal: ("ok", value) or ("err", message)."""
    if outcome[0] == "ok":
        return {"ok": True, "v": dumps_value(outcome[1])}
    return {"ok": False, "error": outcome[1]}


def outcome_from_record(rec: dict) -> tuple:
    if rec.get("ok"):
        return ("ok", loads_value(rec["v"]))
    return ("err", rec.get("error", "action failed"))


__all__ = ["FlowImage", "dumps_image", "put_sources", "loads_image", "dumps_value", "loads_value",
           "result_record", "result_from_record", "outcome_record", "outcome_from_record",
           "Ok", "Err"]
