"""A child flow run inline (in its caller's step) that turns out to act on the world
goes on from where it stopped, in an actor of its own: its first run is not repeated."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from actors import Runtime, result_of
from store import Store

SOURCE = '''
LOG = []

def _acts(fctx):
    LOG.append("a")
    print("acts starts with", len(LOG))
    sleep(0)
    LOG.append("b")
    return LOG

acts = flow(implementation = _acts)

def _g(fctx):
    sleep(0)
    print("grandchild", fctx.args.i)
    return fctx.args.i

g = flow(implementation = _g, args = {"i": args.int()})

def _spawns(fctx):
    fctx.actions.run(g, 7)    # started, never waited on: it must still run
    return 5

spawns = flow(implementation = _spawns)

def _calls(fctx):
    print("calls starts")
    return unwrap(g(3)) + 1   # its first act is calling a flow that acts

calls = flow(implementation = _calls)

if __name__ == "__flow__":
    print(acts())
    print(spawns())
    print(calls())
    print("module sees", LOG)
'''


@pytest.mark.parametrize("workers", [0, 2])
def test_a_child_that_acts_goes_on_from_where_it_stopped(store: Store, tmp_path: Path,
                                                          workers: int) -> None:
    path = tmp_path / "handover.flow"
    path.write_text(SOURCE)
    with Runtime(store, workers=workers, virtual_time=True) as rt:
        rid = rt.create_run(str(path), SOURCE)
        w = rt.wait_run(rid, 60)
        assert w.done.is_set()
        # The grandchild nobody waits on still runs to its end.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
                f.name == "g" and f.terminal and f.id.count(".") == 2
                and "grandchild 7" in _out(store, rid) for f in store.run_flows(rid)):
            time.sleep(0.05)
    assert repr(result_of(w)) == "Ok(4)", result_of(w)   # the last flow call's
    lines = _out(store, rid).splitlines()
    # `acts` appended "a" once: its code before `sleep` ran once, not again from its
    # start in its own actor (which gave ["a", "a", "b"] and printed twice).
    assert lines.count("acts starts with 1") == 1, lines
    assert not any(ln.startswith("acts starts with 2") for ln in lines), lines
    assert 'Ok(["a", "b"])' in lines, lines
    assert "Ok(5)" in lines and "Ok(4)" in lines, lines
    assert lines.count("calls starts") == 1 and lines.count("grandchild 3") == 1, lines
    assert lines.count("grandchild 7") == 1, lines
    # Values are copied at checkpoints: the main block saw what happened before.
    assert lines[-1] == 'module sees ["a"]', lines
    flows = {f.id: f for f in store.run_flows(rid)}
    assert all(f.state == "ok" for f in flows.values()), {i: f.state for i, f in flows.items()}


def _out(store: Store, rid: str) -> str:
    return "".join(c.text for c in store.read_output(rid))
