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
    fctx.actions.run(g, 7)    # started, never waited on: it must still run, while
    return 5                  # its run does (the main block's last sleep)

spawns = flow(implementation = _spawns)

def _calls(fctx):
    print("calls starts")
    return unwrap(g(3)) + 1   # its first act is calling a flow that acts

calls = flow(implementation = _calls)

if __name__ == "__flow__":
    print(acts())
    print(spawns())
    print(calls())
    # Virtual time: this fires once nothing else can run, g(7) ended. (A run's end
    # cancels what it left running.) An hour: in real time it never comes due first,
    # however long a loaded machine keeps g(7) from running.
    sleep(3600)
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


BLOCKING = '''
def _waits(fctx):
    fctx.actions.exec(["sh", "-c", "while [ ! -f FLAG ]; do sleep 0.05; done"])
    return 1

waits = flow(implementation = _waits)

def _calls_waits(fctx):
    return unwrap(waits())      # runs inline, acts: handed over

calls_waits = flow(implementation = _calls_waits)

def _touch(fctx):
    fctx.actions.exec(["touch", "FLAG"])
    return 2

touch = flow(implementation = _touch)

def _main(fctx):
    first = fctx.actions.run(calls_waits)
    sleep(0.5)
    second = fctx.actions.run(touch)   # only starts once the first has left its start
    return [unwrap(r) for r in fctx.actions.wait([first, second])]

main = flow(implementation = _main)

def _one(fctx):
    return unwrap(fctx.actions.wait(fctx.actions.run(touch)))

one = flow(implementation = _one)
'''


def _blocking(tmp_path: Path, flag: Path) -> tuple[Path, str]:
    """BLOCKING written out, its `waits` blocking until `flag` exists."""
    src = BLOCKING.replace("FLAG", str(flag))
    path = tmp_path / "blocking.flow"
    path.write_text(src)
    return path, src


@pytest.mark.parametrize("workers", [0, 1])
def test_a_handed_over_child_leaves_its_starting_place(store: Store, tmp_path: Path,
                                                       workers: int) -> None:
    # A handed-over child is started by a load that issues its action; in a worker
    # process an exec is issued there, and the parent never heard that the child had
    # left its start: past MAX_STARTING such children, no flow started again.
    flag = tmp_path / "flag"
    path, src = _blocking(tmp_path, flag)
    try:
        with Runtime(store, workers=workers) as rt:
            rt.max_starting = 1
            rid = rt.create_run(str(path), src, flow="main")
            w = rt.wait_run(rid, 30)
            assert w.done.is_set(), (rt.starting, list(rt.start_queue))
            assert repr(result_of(w)) == "Ok([1, 2])"
    finally:
        flag.touch()


@pytest.mark.parametrize("workers", [0, 1])
def test_cancelled_flows_give_up_their_starting_places(store: Store, tmp_path: Path,
                                                       workers: int) -> None:
    flag = tmp_path / "never"
    path, src = _blocking(tmp_path, flag)
    with Runtime(store, workers=workers) as rt:
        rt.max_starting = 1
        rid = rt.create_run(str(path), src, flow="calls_waits")
        deadline = time.monotonic() + 20
        while not any(f.name == "waits" for f in store.run_flows(rid)):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        rt.cancel_run(rid)
        assert store.get_run(rid).state == "cancelled"
        # The slot of the cancelled flows is free again: a new run's child starts.
        rid2 = rt.create_run(str(path), src.replace(str(flag), str(tmp_path / "f2")),
                             flow="one")
        w = rt.wait_run(rid2, 30)
        assert w.done.is_set(), (rt.starting, list(rt.start_queue))
        assert repr(result_of(w)) == "Ok(2)"


SENDS = '''
def _listen(fctx):
    return fctx.actions.receive(timeout = 3)

listen = flow(implementation = _listen)

def _sends(fctx):
    fctx.actions.send(fctx.args.to, "from a cancelled flow")
    return 1

sends = flow(implementation = _sends, args = {"to": args.inbox()})

def _calls_sends(fctx):
    return unwrap(sends(fctx.args.to))   # handed over: its send leaves from its load

calls_sends = flow(implementation = _calls_sends, args = {"to": args.inbox()})
'''


def test_a_child_cancelled_while_it_loads_does_not_act(store: Store, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # Its first action leaves from the reissue after its load, with no commit between
    # that a cancel would make conflict: the reissue must look for the cancel itself.
    import actors.flow as flow_module
    real = flow_module.load_runner
    loading = []

    def slow_load(hub, flow_id):
        r = real(hub, flow_id)
        if flow_id.count(".") == 1:
            loading.append(flow_id)
            time.sleep(1.0)   # the checkpoint is read; the cancel lands now
        return r
    monkeypatch.setattr(flow_module, "load_runner", slow_load)
    path = tmp_path / "sends.flow"
    path.write_text(SENDS)
    with Runtime(store) as rt:
        listener = rt.create_run(str(path), SENDS, flow="listen")
        time.sleep(0.3)
        rid = rt.create_run(str(path), SENDS, flow="calls_sends", args={"to": listener})
        deadline = time.monotonic() + 20
        while not loading:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        rt.cancel_run(rid)
        w = rt.wait_run(listener, 30)
    assert repr(result_of(w)) == "Ok(None)"   # its receive timed out: nothing was sent
