"""Read-only views of the store for the client commands: plain, JSON-able dicts.

These read the store directly, so `status`, `logs`, `history`, `inspect` and `batch
status` work whether or not a daemon is running (LMDB serves readers in several
processes). Only `store` is imported at module level: `flowmetal list` must start
fast, and decoding pickled values (`history`, `inspect`) pulls in the language.
"""

from __future__ import annotations

import time
from typing import Any

LIVE = ("pending", "running", "waiting")
FAILED_STATES = ("err", "cancelled", "crashed")


def run_state(store: Any, run: Any) -> str:
    """The run's state as users see it: a live run is `running` while any of its
    flows runs, else `waiting` (all of them suspended on actions)."""
    if run.state not in LIVE:
        return run.state
    for f in store.run_flows(run.id, called=False):
        if f.state in ("running", "pending"):
            return "running"
    return "waiting"


def result_text(store: Any, run: Any) -> str | None:
    """One-line result of a run: the root Result's repr, or why it crashed."""
    if run.state == "crashed":
        return f"crashed: {run.meta.get('error', '')}"
    root = store.get_flow(run.root_flow) if run.root_flow else None
    if root is not None and isinstance(root.result, dict):
        return root.result.get("repr")
    return None


def result_ok(store: Any, run: Any) -> bool | None:
    if run.state == "crashed":
        return False
    root = store.get_flow(run.root_flow) if run.root_flow else None
    if root is not None and isinstance(root.result, dict):
        return bool(root.result.get("ok"))
    return None


def _flow_view(f: Any) -> dict:
    res = f.result.get("repr") if isinstance(f.result, dict) else None
    return {"id": f.id, "name": f.name, "parent": f.parent, "state": f.state,
            "created": f.created, "started": f.started, "finished": f.finished,
            "result": res}


def _request_text(req: Any) -> str:
    if not isinstance(req, dict):
        return repr(req)
    kind = req.get("kind")
    if kind == "sleep":
        return f"sleep {req.get('seconds', 0):g} s"
    if kind == "exec":
        return "exec " + " ".join(str(a) for a in req.get("argv", []))
    if kind in ("wait", "call"):
        kids = list(req.get("children", []))
        text = f"{kind} " + ", ".join(kids[:SHOWN_CHILDREN])
        if len(kids) > SHOWN_CHILDREN:   # a fan-out waits on thousands
            text += f" and {len(kids) - SHOWN_CHILDREN} more"
        return text
    return kind or repr(req)


SHOWN_CHILDREN = 3


def _flow_order(f: Any) -> tuple:
    """Creation order; children made together in id order, ``RUN.2`` before ``RUN.10``."""
    return (f.created, [(0, int(p), "") if p.isdigit() else (1, 0, p)
                        for p in f.id.split(".")])


def status_view(store: Any, run_id: str) -> dict | None:
    """State, the tree of flows with their states, pending actions and times."""
    run = store.get_run(run_id)
    if run is None:
        return None
    flows = sorted(store.run_flows(run_id), key=_flow_order)
    pending = []
    for f in flows:
        if f.state in LIVE:
            for it in store.intents(f.id):
                req = it.request if isinstance(it.request, dict) else {}
                p = {"flow": f.id, "seq": it.seq, "kind": req.get("kind"),
                     "action": _request_text(req), "since": it.created}
                if req.get("kind") in ("sleep", "receive") and req.get("due") is not None:
                    p["due"] = req["due"]   # a receive's: when its timeout ends it
                pending.append(p)
    meta = {k: v for k, v in run.meta.items() if isinstance(v, (str, int, float, bool))}
    state = run_state(store, run)
    from actors.ownership import run_owner
    store.make_durable()   # what it shows may come from quiet commits
    return {"id": run.id, "state": state, "file": run.file,
            # The pid of the process running it; None for a live run nothing runs
            # (its process was killed: `flowmetal resume` carries it on).
            "owner": run_owner(store.home, run.id) if state in LIVE else None,
            "flow": run.meta.get("flow") or "__main__", "created": run.created,
            "updated": run.updated, "finished": run.finished,
            "result": result_text(store, run), "meta": meta,
            "flows": [_flow_view(f) for f in flows], "pending": pending}


def flow_tree(flows: list[dict]) -> list[tuple[int, dict]]:
    """The flows of a `status_view` as (depth, flow) in tree order: each root (a flow
    whose parent is not among them) in order, each flow followed by its children in
    order. Iterative: a run may nest flows thousands deep."""
    ids = {f["id"] for f in flows}
    kids: dict[str | None, list[dict]] = {}
    for f in flows:
        kids.setdefault(f["parent"] if f["parent"] in ids else None, []).append(f)
    out: list[tuple[int, dict]] = []
    seen: set[str] = set()
    stack = [(0, f) for f in reversed(kids.get(None, []))]
    while stack:
        depth, f = stack.pop()
        if f["id"] in seen:
            continue  # a parent cycle in a damaged store: show each flow once
        seen.add(f["id"])
        out.append((depth, f))
        stack.extend((depth + 1, k) for k in reversed(kids.get(f["id"], [])))
    return out


def _value_text(v: Any) -> Any:
    """A journaled outcome record as text (it holds a pickled Starlark value that was
    written by our own runtime into our own store — never data off the socket)."""
    if not isinstance(v, dict):
        return repr(v)
    if not v.get("ok", True) and "error" in v:
        return {"error": v["error"]}
    if "v" in v:
        try:
            from actors.codec import loads_value
            from flowmetal.starlark.values import to_repr
            return {"value": to_repr(loads_value(v["v"]))}
        except Exception as e:  # noqa: BLE001 - show what we can
            return {"value": f"<cannot decode: {type(e).__name__}>"}
    return {"value": None}


def history_view(store: Any, run_id: str) -> list[dict] | None:
    """Every action of every flow of the run, flows in creation order, each flow's
    in action order: the journaled ones with their results, then the ones still in
    flight (``"pending": true``, no result or end time yet)."""
    run = store.get_run(run_id)
    if run is None:
        return None
    out = []
    for f in sorted(store.run_flows(run_id), key=_flow_order):
        done = set()
        for j in store.journal(f.id):
            done.add(j.seq)
            out.append(_action_entry(f, j.seq, j.request, j.started, j.finished,
                                     result=_value_text(j.result)))
        if f.state in LIVE:
            for it in store.intents(f.id):
                if it.seq not in done:
                    out.append(_action_entry(f, it.seq, it.request, it.created, None,
                                             result=None, pending=True))
    store.make_durable()   # what it shows may come from quiet commits
    return out


def _action_entry(f: Any, seq: int, request: Any, started: float | None,
                  finished: float | None, result: Any, pending: bool = False) -> dict:
    req = request if isinstance(request, dict) else {}
    return {"flow": f.id, "flow_name": f.name, "seq": seq, "kind": req.get("kind"),
            "request": _jsonable(request), "action": _request_text(request),
            "result": result, "started": started, "finished": finished,
            "pending": pending}


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set)):
        return [_jsonable(x) for x in v]
    if isinstance(v, bytes):
        return f"<{len(v)} bytes>"
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return repr(v)


def inspect_view(store: Any, run_id: str) -> list[dict] | None:
    """For each suspended flow of the run: its pending action, its Starlark stack
    (outermost first) and the locals of each frame at the suspension point."""
    run = store.get_run(run_id)
    if run is None:
        return None
    from actors.codec import loads_image
    from flowmetal.prelude import PRELUDE_MODULES
    from flowmetal.starlark.values import to_repr
    out = []
    for f in sorted(store.run_flows(run_id), key=_flow_order):
        if f.state not in LIVE:
            continue
        entry: dict = {"flow": f.id, "name": f.name, "state": f.state, "frames": [],
                       "pending": None}
        try:
            ck = store.get_checkpoint(f.id)
            if ck is None:
                entry["note"] = "no checkpoint yet (it has not reached its first action)"
                out.append(entry)
                continue
            if ck.seq is not None:
                it = store.get_intent(f.id, ck.seq)
                if it is not None:
                    entry["pending"] = _request_text(it.request)
            img = ck.load(lambda data: loads_image(data, store.get_code))
            thread = img.thread
            for fr in (thread.stack() if thread is not None else []):
                file, line, col = fr.position()
                if file in PRELUDE_MODULES and fr.function_name().startswith("_"):
                    continue   # the prelude's own machinery (`_flow_main`), not the flow's
                loc = {}
                for name, value in fr.starlark_locals().items():
                    try:
                        text = to_repr(value)
                    except Exception:  # noqa: BLE001 - a value without a repr
                        text = f"<{type(value).__name__}>"
                    loc[name] = text if len(text) <= 2000 else text[:1997] + "..."
                entry["frames"].append({"function": fr.function_name(), "file": file,
                                        "line": line, "col": col, "locals": loc})
        except Exception as e:  # noqa: BLE001 - one unreadable flow must not hide others
            entry["error"] = f"{type(e).__name__}: {e}"
        out.append(entry)
    store.make_durable()   # what it shows may come from quiet commits
    return out


def batch_view(store: Any, batch_id: str, *, items: bool = True) -> dict | None:
    b = store.get_batch(batch_id)
    if b is None:
        return None
    meta = dict(b.meta)
    view = {"id": b.id, "state": b.state, "created": b.created, "updated": b.updated,
            "size": b.size, "file": meta.get("file"), "flow": meta.get("flow"),
            "concurrency": meta.get("concurrency"),
            "counts": meta.get("counts") or {}}
    if items:
        its = store.batch_items(batch_id)
        counts: dict[str, int] = {}
        rows = []
        for it in its:
            counts[it.state] = counts.get(it.state, 0) + 1
            rows.append({"index": it.index, "state": it.state, "run_id": it.run_id,
                         "args": _jsonable(it.args), "result": it.meta.get("result"),
                         "error": it.meta.get("error"), "attempt": it.meta.get("attempt", 0)})
        view["counts"] = counts
        view["items"] = rows
    return view


def age(t: float | None) -> str:
    if t is None:
        return "-"
    d = time.time() - t
    if d < 60:
        return f"{d:.1f}s ago"
    if d < 3600:
        return f"{d / 60:.0f}m ago"
    if d < 86400:
        return f"{d / 3600:.1f}h ago"
    return f"{d / 86400:.1f}d ago"
