"""A new run's creation rides on its root flow's first commit (actors.creation): one
commit for a trivial run, and the run is in the store before anyone hears of it —
through the root's first commit, the fallback after the grace, a crash of the root,
or the runtime's close."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from actors import Runtime, result_of
from actors.flow import FlowRunner
from store import Store

TRIVIAL = '''
load("pkg.flowmetal.io/v1/prelude", "args", "flow", "unwrap")

def _one(fctx):
    return fctx.args.n + 1

one = flow(implementation = _one, args = {"n": args.int(default = 0)})

def _spin(fctx):
    t = 0
    for i in range(fctx.args.n):
        t += i
    return t

spin = flow(implementation = _spin, args = {"n": args.int()})

def _call_then_spin(fctx):
    x = unwrap(one(1))
    return unwrap(spin(fctx.args.n)) + x

call_then_spin = flow(implementation = _call_then_spin, args = {"n": args.int()})

def _chatty(fctx):
    print("a")
    fctx.actions.sleep(0)
    print("b")
    return 1

chatty = flow(implementation = _chatty)

def _nap(fctx):
    fctx.actions.sleep(3600)
    return 1

nap = flow(implementation = _nap)
'''


@pytest.fixture
def held_root(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Holds every flow's end (its first commit, for a flow that only computes) until
    the returned event is set."""
    release = threading.Event()
    real = FlowRunner._finish

    def held_finish(self, r):
        release.wait(30)
        return real(self, r)
    monkeypatch.setattr(FlowRunner, "_finish", held_finish)
    yield release
    release.set()


class Created:
    """An `on_created` callback that remembers what the store held when it fired."""

    def __init__(self, store: Store):
        self.store = store
        self.event = threading.Event()
        self.error = None
        self.run = None
        self.rid = None

    def __call__(self, error) -> None:
        self.error = error
        if self.rid is not None:
            self.run = self.store.get_run(self.rid)
        self.event.set()


def _create(rt: Runtime, store: Store, path: Path, flow: str, **args: str) -> Created:
    c = Created(store)
    c.rid = rt.create_run(str(path), TRIVIAL, flow=flow,
                          args={k: str(v) for k, v in args.items()}, on_created=c)
    return c


@pytest.mark.parametrize("workers", [0, 1])
def test_a_trivial_run_is_one_commit(store: Store, tmp_path: Path, workers: int) -> None:
    path = tmp_path / "t.flow"
    path.write_text(TRIVIAL)
    with Runtime(store, workers=workers) as rt:
        rt.creations.grace = 30.0   # only the root's commit may store the run here
        c = _create(rt, store, path, "one", n=1)   # warms the worker up
        assert rt.wait_run(c.rid, 60).done.is_set()
        before = store.stats()["last_txn"]
        for i in range(5):
            c = _create(rt, store, path, "one", n=i)
            w = rt.wait_run(c.rid, 60)
            assert c.event.wait(10) and c.error is None
            assert repr(result_of(w)) == f"Ok({i + 1})"
        assert store.stats()["last_txn"] - before == 5
        # Without `on_created` the run is committed before create_run returns.
        rid = rt.create_run(str(path), TRIVIAL, flow="one", args={"n": "7"})
        assert store.get_run(rid) is not None
        rt.wait_run(rid, 60)


@pytest.mark.parametrize("workers", [0, 1])
def test_a_run_is_announced_once_its_roots_first_commit_is_durable(
        store: Store, tmp_path: Path, workers: int) -> None:
    # The root's first commit is an inline call; it goes on computing afterwards.
    path = tmp_path / "t.flow"
    path.write_text(TRIVIAL)
    n = 1_000_000
    with Runtime(store, workers=workers) as rt:
        rt.creations.grace = 60.0   # no fallback: only the announcement can tell
        c = _create(rt, store, path, "call_then_spin", n=n)
        assert c.event.wait(30) and c.error is None
        assert c.run is not None and c.run.state == "running"
        w = rt.wait_run(c.rid, 120)
    assert repr(result_of(w)) == f"Ok({n * (n - 1) // 2 + 2})"


def test_a_slow_first_step_gets_its_run_stored_after_the_grace(
        store: Store, tmp_path: Path, held_root: threading.Event) -> None:
    path = tmp_path / "t.flow"
    release = held_root
    with Runtime(store) as rt:
        c = _create(rt, store, path, "one", n=4)
        assert c.event.wait(10), "the fallback did not store the run"
        # Stored while its root is still in its first step.
        assert c.error is None and c.run is not None and c.run.state == "running"
        release.set()
        w = rt.wait_run(c.rid, 60)
    assert repr(result_of(w)) == "Ok(5)"
    # The root's own commit found the run there and left it (and its end) alone.
    assert store.get_run(c.rid).state == "ok"


def test_a_root_that_crashes_before_its_first_commit_is_stored_and_restarted(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "t.flow"
    real = FlowRunner._finish
    crashes = []

    def crash_once(self, r):
        if not crashes:
            crashes.append(self.flow_id)
            raise RuntimeError("disk on fire")
        return real(self, r)
    monkeypatch.setattr(FlowRunner, "_finish", crash_once)
    with Runtime(store, backoff=0.01) as rt:
        rt.creations.grace = 30.0
        c = _create(rt, store, path, "one", n=2)
        w = rt.wait_run(c.rid, 60)
        assert c.event.is_set() and c.error is None
    assert crashes == [c.rid]
    assert repr(result_of(w)) == "Ok(3)"


def test_a_fallback_racing_a_slow_first_commit_writes_the_creation_alone(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The root's first commit takes longer than the grace, so the fallback commits the
    # creation meanwhile: it must not carry (and so repeat) any of the root's own ops.
    from actors.flow import CommitGate
    real = CommitGate._flush

    def slow_flush(self, items):
        time.sleep(0.1)
        return real(self, items)
    monkeypatch.setattr(CommitGate, "_flush", slow_flush)
    with Runtime(store) as rt:
        rt.creations.grace = 0.01
        c = _create(rt, store, tmp_path / "t.flow", "chatty")
        w = rt.wait_run(c.rid, 60)
    assert repr(result_of(w)) == "Ok(1)" and c.error is None
    assert [o.text for o in store.read_output(c.rid)] == ["a\n", "b\n"]
    assert store.get_checkpoint(c.rid) is None and store.get_flow(c.rid).state == "ok"


def test_closing_the_runtime_stores_runs_whose_root_has_not_committed(
        store: Store, tmp_path: Path, held_root: threading.Event) -> None:
    path = tmp_path / "t.flow"
    release = held_root
    rt = Runtime(store)
    rt.creations.grace = 30.0
    try:
        c = _create(rt, store, path, "one", n=4)
        assert store.get_run(c.rid) is None
        rt.close()
        assert c.event.is_set() and c.error is None
        assert store.get_run(c.rid).state == "running"   # resumable at the next start
    finally:
        release.set()
        time.sleep(0.2)   # let the released step end before the store closes


def test_a_worker_killed_before_the_roots_first_commit(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "t.flow"
    path.write_text(TRIVIAL)
    n = 4_000_000
    with Runtime(store, workers=1, backoff=0.01) as rt:
        rt.creations.grace = 60.0   # only the crash can store the run
        c = _create(rt, store, path, "spin", n=n)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with rt.pool.lock:
                busy = [w for w in rt.pool.workers if w.alive and c.rid in w.flows]
            if busy:
                break
            time.sleep(0.01)
        assert busy
        # At once: the step takes a few hundred ms (it once slept 0.2 s here, which a
        # quick machine outran).
        assert store.get_run(c.rid) is None, "the first step ended too soon for this test"
        os.kill(busy[0].proc.pid, signal.SIGKILL)
        assert c.event.wait(30) and c.error is None
        w = rt.wait_run(c.rid, 120)
        assert w.done.is_set()
    assert repr(result_of(w)) == f"Ok({n * (n - 1) // 2})"


def test_a_failed_fallback_commit_is_tried_again_not_reported(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        held_root: threading.Event) -> None:
    # The root may still commit the creation itself: a failed fallback must not tell
    # the caller "not stored" (it would retry, and the run would run twice).
    from actors import creation
    from store import StoreFullError
    monkeypatch.setattr(creation, "RETRY", 0.05)
    release = held_root
    real_group = store.commit_group
    failed = []

    def failing_group(batches, **kw):
        if threading.current_thread().name == "run-creations" and len(failed) < 2:
            failed.append(1)
            raise StoreFullError("the disk is full")
        return real_group(batches, **kw)
    monkeypatch.setattr(store, "commit_group", failing_group)
    with Runtime(store) as rt:
        rt.creations.grace = 0.01
        c = _create(rt, store, tmp_path / "t.flow", "one", n=1)
        assert c.event.wait(10), "the creation was never stored"
        assert len(failed) == 2 and c.error is None and c.run.state == "running"
        release.set()
        assert repr(result_of(rt.wait_run(c.rid, 60))) == "Ok(2)"


def test_a_creation_after_close_is_stored_at_once(store: Store, tmp_path: Path) -> None:
    rt = Runtime(store)
    rt.close()
    c = _create(rt, store, tmp_path / "t.flow", "one", n=1)
    assert c.event.is_set() and c.error is None
    assert store.get_run(c.rid).state == "running"   # for the next start to run it


def test_a_root_refused_by_the_flow_quota_is_stored_with_its_error(
        store: Store, tmp_path: Path) -> None:
    (store.home / "quotas.toml").write_text("[default]\nconcurrent_flows = 1\n")
    with Runtime(store) as rt:
        first = _create(rt, store, tmp_path / "t.flow", "nap")
        assert first.event.wait(10)
        c = _create(rt, store, tmp_path / "t.flow", "one", n=1)
        assert c.event.wait(10) and c.error is None
        w = rt.wait_run(c.rid, 30)
        assert "quota exceeded: concurrent flows" in repr(result_of(w))
        assert store.get_run(c.rid).state == "err"
