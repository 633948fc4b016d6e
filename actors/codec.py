"""Bytes for the store: checkpoint payloads, action results and flow results.

A checkpoint payload is the pickled `FlowImage` (the suspended Thread together with
the runtime's bookkeeping for the flow, pickled in one go so the `fctx` they share
stays one object). Values that cross flows or go into the journal (a child's Result,
an exec result, the results of a `wait`) are pickled with the language's pickler,
which stores a Starlark function as (module, index, closure) rather than as Python
code — so they may hold any Starlark value, functions included.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from typing import Any

from flowmetal.prelude import Err, FlowContext, Ok, Result
from flowmetal.starlark import Thread
from flowmetal.starlark.values import to_repr

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


def dumps_image(img: FlowImage) -> bytes:
    return pickle.dumps((PAYLOAD_FORMAT, img), protocol=5)


def loads_image(data: bytes) -> FlowImage:
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
    d: dict[str, Any] = {"ok": result.ok, "repr": to_repr(result),
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


def outcome_record(outcome: tuple) -> dict:
    """An action's outcome for the journal: ("ok", value) or ("err", message)."""
    if outcome[0] == "ok":
        return {"ok": True, "v": dumps_value(outcome[1])}
    return {"ok": False, "error": outcome[1]}


def outcome_from_record(rec: dict) -> tuple:
    if rec.get("ok"):
        return ("ok", loads_value(rec["v"]))
    return ("err", rec.get("error", "action failed"))


__all__ = ["FlowImage", "dumps_image", "loads_image", "dumps_value", "loads_value",
           "result_record", "result_from_record", "outcome_record", "outcome_from_record",
           "Ok", "Err"]
