"""The durability protocol under the pooled, non-blocking runtime, and the bugs found
reviewing it: one test each."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pykka
import pytest

from actors import Runtime, result_of
from actors.codec import FlowImage
from actors.flow import FlowActor, FlowRunner
from actors import pool as actor_pool
from actors.pool import Dispatcher, PooledActor, RunnerLoan, current_turn
from flowmetal.prelude import predeclared
from flowmetal.starlark import exec_file
from store import Store

FLOWS = Path(__file__).parent / "flows"


def _run(rt: Runtime, path: Path, flow: str, args: dict | None = None, timeout: float = 60):
    rid = rt.create_run(str(path), path.read_text(), flow=flow, args=args)
    w = rt.wait_run(rid, timeout)
    assert w.done.is_set(), "run did not finish in time"
    return rid, w


def _output(store: Store, rid: str) -> str:
    return "".join(c.text for c in store.read_output(rid))


# ---------------------------------------------------------------- pooled actors

class _Echo(PooledActor):
    dispatcher = Dispatcher(2, "test-echo")

    def __init__(self, log: list):
        super().__init__()
        self.log = log

    def on_receive(self, message):
        if message == "boom":
            raise RuntimeError("boom")
        self.log.append((message, threading.current_thread().name))
        return message

    def on_failure(self, *exc):
        self.log.append(("failed", str(exc[1])))


def test_pooled_actors_keep_pykka_semantics_on_few_threads() -> None:
    before = threading.active_count()
    logs = [[] for _ in range(300)]
    refs = [_Echo.start(log) for log in logs]
    for i in range(20):
        for ref in refs:
            ref.tell(i)
    assert refs[0].ask("ping", timeout=10) == "ping"
    for ref, log in zip(refs, logs):
        assert ref.ask("last", timeout=10) == "last"
        assert [m for m, _ in log] == list(range(20)) + (["ping"] if ref is refs[0] else []) \
            + ["last"]  # one message at a time, in order
    assert threading.active_count() <= before + 2  # no thread per actor
    # an exception answering an ask does not stop the actor; one in a tell does
    with pytest.raises(RuntimeError):
        refs[1].ask("boom", timeout=10)
    assert refs[1].ask("still", timeout=10) == "still"
    refs[2].tell("boom")
    deadline = time.monotonic() + 10
    while refs[2].is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not refs[2].is_alive()
    assert ("failed", "boom") in logs[2]
    with pytest.raises(pykka.ActorDeadError):
        refs[2].tell("late")
    for ref in refs:
        if ref.is_alive():
            ref.stop()


class _Parker(PooledActor):
    """Parks on every "park:<x>" message; the turn's flush records each group."""
    dispatcher = Dispatcher(1, "test-park")
    flushed: list = []

    def __init__(self, log: list, fail: bool = False):
        super().__init__()
        self.log = log
        self.fail = fail

    def on_receive(self, message):
        if message.startswith("park:"):
            current_turn().park(self, "k", (self, message), _Parker.flush)
        else:
            self.log.append(message)

    @staticmethod
    def flush(items):
        _Parker.flushed.append([m for _, m in items])

        def cont(actor, m):
            def go():
                if actor.fail:
                    raise RuntimeError("batch failed")
                actor.log.append("after " + m)
            return go
        return [cont(a, m) for a, m in items]

    def on_failure(self, *exc):
        self.log.append(("failed", str(exc[1])))


def test_a_parked_actor_goes_on_at_the_end_of_its_threads_turn() -> None:
    assert current_turn() is None   # not on a pool thread
    _Parker.flushed.clear()
    logs = [[] for _ in range(3)]
    refs = [_Parker.start(log) for log in logs]
    bad_log: list = []
    bad = _Parker.start(bad_log, fail=True)
    for i, ref in enumerate(refs):
        ref.tell(f"park:{i}")
        ref.tell(f"next:{i}")    # waits until the parked work is done
    bad.tell("park:bad")
    bad.tell("never")
    for ref, log in zip(refs, logs):
        ref.ask("sync", timeout=10)
    deadline = time.monotonic() + 10
    while bad.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    for i, log in enumerate(logs):
        assert log == [f"after park:{i}", f"next:{i}", "sync"]
    # Each parked item was flushed once, with the others parked in the same turn.
    assert sorted(m for g in _Parker.flushed for m in g) == \
        ["park:0", "park:1", "park:2", "park:bad"]
    # A continuation that raises is the actor's failure, as a told message's is.
    assert not bad.is_alive() and bad_log == [("failed", "batch failed")]
    for ref in refs:
        ref.stop()


def test_busy_actors_cannot_keep_a_parked_one_waiting() -> None:
    # One pool thread; a spinner that always has mail keeps the ready queue full.
    class Spinner(PooledActor):
        dispatcher = _Parker.dispatcher

        def on_receive(self, message):
            if message == "spin":
                self.actor_ref.tell("spin")
    log: list = []
    parker = _Parker.start(log)
    spinner = Spinner.start()
    try:
        spinner.tell("spin")
        parker.tell("park:x")
        deadline = time.monotonic() + 10
        while not log and time.monotonic() < deadline:
            time.sleep(0.01)
        assert log == ["after park:x"]
    finally:
        spinner.stop()
        parker.stop()


def test_a_long_slice_holds_up_other_actors_only_briefly() -> None:
    # Two pool threads, but one runs actors at a time; the other joins in when the
    # running one is stuck in a long handler (a long flow step).
    from actors.pool import SHARE_AFTER
    pool = Dispatcher(2, "test-share")
    seen: dict = {}

    class Worker(PooledActor):
        dispatcher = pool

        def on_receive(self, message):
            if message == "long":
                time.sleep(4)
            seen[message] = time.monotonic()
    slow, quick = Worker.start(), Worker.start()
    try:
        t0 = time.monotonic()
        slow.tell("long")
        time.sleep(0.05)
        quick.tell("quick")
        assert quick.ask("sync", timeout=10) is None
        assert seen["quick"] - t0 < 3.0, "held up for the whole long slice"
        assert seen["quick"] - t0 >= SHARE_AFTER * 0.5   # ...but not run alongside at once
    finally:
        slow.stop()
        quick.stop()


def test_a_dispatchers_turn_ends_at_its_own_turn_max() -> None:
    pool = Dispatcher(1, "test-turn-max", turn_seconds=60, turn_max=2)
    gate, groups = threading.Event(), []

    def flush(items):
        groups.append(len(items))
        return [lambda: None] * len(items)

    class Parker(PooledActor):
        dispatcher = pool

        def on_receive(self, message):
            if message == "wait":
                gate.wait(10)   # holds the pool thread until all the others are ready
            elif message == "park":
                current_turn().park(self, "k", self, flush)
    blocker, *parkers = [Parker.start() for _ in range(5)]
    try:
        blocker.tell("wait")
        for p in parkers:
            p.tell("park")
        gate.set()
        for p in parkers:
            p.ask("sync", timeout=10)
        assert groups == [2, 2]
    finally:
        for a in [blocker, *parkers]:
            a.stop()


class _Lending:
    """Two actors on their own two-thread pool. `committer`, told "park", parks; its
    turn's flush lends the right to run actors, as a group commit does, and waits
    (its "fsync") until `other`, told "go", has set `other_ran`; then it calls
    `after_sync`, takes the right back, and its continuation is `go_on`. `other`
    runs `other_go` on "go"."""

    def __init__(self, name: str, other_go, go_on, after_sync=lambda: None):
        self.pool = pool = Dispatcher(2, name)
        self.in_sync, self.other_ran = threading.Event(), threading.Event()
        self.log: list = []
        lending = self

        def flush(items):
            loan = RunnerLoan()
            loan.lend()
            lending.in_sync.set()
            assert lending.other_ran.wait(10)
            after_sync()
            loan.take_back()
            return [go_on] * len(items)

        class Committer(PooledActor):
            dispatcher = pool

            def on_receive(self, message):
                if message == "park":
                    current_turn().park(self, "k", self, flush)
                else:
                    lending.log.append(message)

        class Other(PooledActor):
            dispatcher = pool

            def on_receive(self, message):
                if message == "go":
                    other_go()
        self.committer, self.other = Committer.start(), Other.start()

    def start(self) -> None:
        self.committer.tell("park")
        assert self.in_sync.wait(10)
        self.other.tell("go")

    def stop(self) -> None:
        self.committer.stop()
        self.other.stop()


def test_a_turns_commit_lends_the_right_to_run_actors(monkeypatch) -> None:
    # While a turn's commit syncs (it needs no GIL), the other pool thread runs the
    # ready actors as the runner (not only after SHARE_AFTER, alongside it); the
    # parked actors go on once their thread has the right back. (SHARE_AFTER made
    # long: on a loaded machine the other thread could otherwise join in by sharing.)
    monkeypatch.setattr(actor_pool, "SHARE_AFTER", 5.0)
    synced = threading.Event()

    def other_go():
        log.append(("ran as the runner", actor_pool._local.holding and t.pool._token.locked()))
        t.other_ran.set()
        synced.wait(10)
        time.sleep(0.02)   # still running when the commit is done
        log.append("other done")

    def after_sync():
        log.append("synced")
        synced.set()
    t = _Lending("test-loan", other_go, lambda: log.append("continued"), after_sync)
    log = t.log
    try:
        t.start()
        assert t.committer.ask("sync", timeout=10) is None
        assert log == [("ran as the runner", True), "synced", "other done", "continued",
                       "sync"]
        assert RunnerLoan().dispatcher is None   # off the pool: lending is a no-op
    finally:
        t.stop()


def test_a_thread_back_from_its_commit_runs_alongside_a_stuck_runner() -> None:
    # Taking the right back after a commit gives up, as any waiting thread does, once
    # its holder has been stuck in one slice for SHARE_AFTER: the continuation runs
    # alongside, and the right stays with its holder (nothing releases it for it).
    from actors.pool import SHARE_AFTER
    continued = threading.Event()

    def go_on():
        log.append(("continued as the runner", actor_pool._local.holding))
        continued.set()

    def other_go():
        t.other_ran.set()
        assert continued.wait(10)   # stuck until the continuation ran alongside
        time.sleep(SHARE_AFTER)     # the committer's thread goes idle meanwhile
        log.append(("the right still held", t.pool._token.locked()))
    t = _Lending("test-loan-stuck", other_go, go_on)
    log = t.log
    try:
        t.start()
        assert t.other.ask("sync", timeout=10) is None
        assert t.committer.ask("sync", timeout=10) is None
        assert log == [("continued as the runner", False), ("the right still held", True),
                       "sync"]
    finally:
        t.stop()


def test_every_busy_actor_gets_run_on_a_shared_pool() -> None:
    # Bug (review): the thread without the token took an actor off the ready queue
    # and waited for the token with it; while the others kept the holder busy, that
    # actor never ran again.
    pool = Dispatcher(2, "test-busy")
    counts = [0] * 4

    class Busy(PooledActor):
        dispatcher = pool

        def __init__(self, i):
            super().__init__()
            self.i = i

        def on_receive(self, message):
            if message == "go":
                sum(range(2000))   # a little work per message, as a flow step does
                counts[self.i] += 1
                self.actor_ref.tell("go")
    refs = [Busy.start(i) for i in range(4)]
    try:
        for ref in refs:
            ref.tell("go")
        time.sleep(0.5)
        before = list(counts)
        time.sleep(1.0)
        progress = [c - b for c, b in zip(counts, before)]
        assert all(p > 20 for p in progress), progress
    finally:
        for ref in refs:
            ref.stop(block=False)


class _Hub:
    """Just enough of a hub for a FlowActor/FlowRunner unit test."""

    max_steps = None
    inline_calls = True

    def __init__(self, store: Store):
        from actors.flow import CommitGate
        self.store = store
        self.commits = CommitGate(store)
        self.events: list = []

    def now(self) -> float:
        return time.time()

    def suspended(self, flow_id, seq, kind, info, children, actor=None):
        self.events.append(("suspended", flow_id, seq, kind))

    def finished(self, flow_id, parent, state, result, children):
        self.events.append(("finished", flow_id, state))

    def crashed(self, flow_id, error):
        self.events.append(("crashed", flow_id, error))

    def committing_children(self, flow_id, ids):
        pass


def test_first_message_is_handled_before_any_other(store: Store, monkeypatch) -> None:
    # Bug: the first message was told from on_start, i.e. after anything sent the
    # moment `start` returned (a reply, a timer) — which then met an actor with no
    # runner and crashed it.
    seen = []

    def fake_load(hub, flow_id):
        seen.append("load")
        return None, None

    def fake_receive(self, message):
        if message[0] == "load":
            return fake_load(self.hub, self.flow_id)
        seen.append(message[0])
    monkeypatch.setattr(FlowActor, "on_receive", fake_receive)
    gate = threading.Event()

    class Slow(Dispatcher):
        def schedule(self, actor):  # hold the actor until both messages are queued
            threading.Thread(target=lambda: (gate.wait(5), super(Slow, self).schedule(actor)),
                             daemon=True).start()
    monkeypatch.setattr(FlowActor, "dispatcher", Slow(1))
    ref = FlowActor.start(_Hub(store), "f", None, ("load",))
    ref.tell(("resume", 1, ("ok", None)))
    gate.set()
    deadline = time.monotonic() + 10
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen == ["load", "resume"]
    ref.stop()


# ---------------------------------------------------------------- protocol steps

SRC = '''
def _noop_impl(fctx):
    print("child ran")
    return 1

noop = flow(implementation = _noop_impl)

def _main_impl(fctx):
    t = unwrap(noop())
    sleep(5)
    return t + 1

main = flow(implementation = _main_impl)

def _ex_impl(fctx):
    r = fctx.actions.exec(["sh", "-c", "echo x >> " + fctx.args.path])
    t = unwrap(noop())
    sleep(5)
    return t

ex = flow(implementation = _ex_impl, args = {"path": args.string()})

def _apply_impl(fctx):
    sleep(1)
    return fctx.args.f(20)

apply = flow(implementation = _apply_impl, args = {"f": args.any()})

def _uses_fn_impl(fctx):
    return unwrap(apply(lambda x: x + 1))

uses_fn = flow(implementation = _uses_fn_impl)
'''


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    p = tmp_path / "protocol.flow"
    p.write_text(SRC)
    return p


def test_request_is_sent_only_once_its_commit_is_durable(store: Store, flows: Path) -> None:
    """Protocol step 1 with asynchronous commits: checkpoint + intent are durable
    before the hub hears of (and sends) the request."""
    from flowmetal.loading import FileLoader
    from flowmetal.prelude import packages
    pre = predeclared("__main__")
    g = exec_file(flows.read_text(), str(flows), predeclared=pre,
                  loader=FileLoader(str(flows), pre, packages()))
    from store import Batch
    store.commit(Batch().create_run("r1", file=str(flows), root_flow="r1")
                 .create_flow("r1", run_id="r1", name="main", state="running"))
    hub = _Hub(store)
    fdef = g["main"].__wrapped__ if hasattr(g["main"], "__wrapped__") else g["main"]
    runner = FlowRunner(hub, "r1", parent=None, name="main",
                        image=FlowImage(None, None, 0, None, False, (fdef, (), {})), fresh=True)
    queued = []

    class Parking:
        def commit(self, batch, quiet=False):
            queued.append(batch)
            return False
    runner.committer = Parking()
    runner.step(("ok", None))
    # The inline call's batch is queued: the flow is parked, nothing announced.
    assert len(queued) == 1 and hub.events == [] and runner.pending is None
    store.commit(queued[0])
    runner.durable()
    assert len(queued) == 2 and hub.events == []   # the sleep's checkpoint + intent
    assert store.get_intent("r1", 2) is None       # not durable yet
    store.commit(queued[1])
    runner.durable()
    assert hub.events == [("suspended", "r1", 2, "sleep")]
    assert store.get_intent("r1", 2).request["kind"] == "sleep"
    assert store.get_checkpoint("r1").seq == 2


def test_a_flow_checkpointed_at_its_start_point_still_starts(store: Store, flows: Path) -> None:
    """A flow that has not started is checkpointed as its (flow, args, kwargs) and
    runs through the prelude's start point; earlier versions stored a Thread stopped
    there. Such a checkpoint must still start, and run the flow once."""
    from flowmetal.loading import FileLoader
    from flowmetal.prelude import StartRequest, flow_main, packages
    from flowmetal.starlark import Suspended, start_call
    from actors.codec import dumps_image
    from store import Batch
    pre = predeclared("__main__")
    g = exec_file(flows.read_text(), str(flows), predeclared=pre,
                  loader=FileLoader(str(flows), pre, packages()))
    t = start_call(flow_main(), g["main"], (), {})
    r = t.run()
    assert isinstance(r, Suspended) and isinstance(r.request, StartRequest)
    store.commit(Batch().create_run("r1", file=str(flows), root_flow="r1")
                 .create_flow("r1", run_id="r1", name="main", state="running")
                 .put_checkpoint("r1", dumps_image(FlowImage(t, None, 0, None, False))))
    with Runtime(store, virtual_time=True, max_restarts=0) as rt:
        rt.resume_run("r1")
        w = rt.wait_run("r1", 60)
    assert repr(result_of(w)) == "Ok(2)", w.result
    assert _output(store, "r1") == "child ran\n"


def test_failed_commit_crashes_the_flow_and_nothing_is_announced(store: Store, flows: Path,
                                                                 monkeypatch) -> None:
    calls = []
    real = Store.commit_group

    def failing(self, batches, **kw):
        calls.append(batches)
        if len(calls) == 1:
            raise OSError("disk on fire")   # the whole turn's transaction fails
        return real(self, batches, **kw)
    monkeypatch.setattr(Store, "commit_group", failing)
    with Runtime(store, virtual_time=True, max_restarts=3, backoff=0.01) as rt:
        rid, w = _run(rt, flows, "main")
    assert len(calls) > 1
    assert repr(result_of(w)) == "Ok(2)"
    assert _output(store, rid) == "child ran\n"   # the failed batch left no trace


def _crash_once_at_sleep(monkeypatch) -> list:
    """The first flow to suspend on a sleep crashes there (its infrastructure, once);
    the list it returns names it."""
    real = FlowRunner._suspend_on
    crashed: list = []

    def once(self, k, kind, *a, **kw):
        if kind == "sleep" and not crashed:
            crashed.append(self.flow_id)
            raise RuntimeError("infrastructure hiccup")
        return real(self, k, kind, *a, **kw)
    monkeypatch.setattr(FlowRunner, "_suspend_on", once)
    return crashed


def test_restarted_flow_finds_its_inline_children(store: Store, flows: Path,
                                                  monkeypatch) -> None:
    """A flow restarted from a checkpoint older than its last inline call re-executes
    the call and must take the child's stored Result, not run it again (the runtime
    skips that lookup only for flows that never ran before)."""
    crashed = _crash_once_at_sleep(monkeypatch)
    with Runtime(store, virtual_time=True, max_restarts=2, backoff=0.01) as rt:
        rid, w = _run(rt, flows, "main")
    assert crashed == [rid]
    assert repr(result_of(w)) == "Ok(2)"
    assert _output(store, rid) == "child ran\n"
    assert len(store.children(rid)) == 1


def test_inline_call_journals_the_action_it_resumed_from(store: Store, flows: Path,
                                                         tmp_path: Path, monkeypatch) -> None:
    """Bug: an inline call's commit did not journal the result of the action the
    flow had just resumed from; a crash before the next checkpoint then performed
    that action again, though a later commit had happened."""
    marker = tmp_path / "ran.txt"
    crashed = _crash_once_at_sleep(monkeypatch)
    with Runtime(store, virtual_time=True, max_restarts=2, backoff=0.01) as rt:
        rid, w = _run(rt, flows, "ex", {"path": str(marker)})
    assert crashed
    assert repr(result_of(w)) == "Ok(1)"
    assert marker.read_text() == "x\n"   # the command ran once


def test_flow_argument_holding_a_function_survives_a_checkpoint(store: Store,
                                                                flows: Path) -> None:
    """Bug: `fctx` (outside the Thread's own pickle) was pickled with plain pickle, so a
    flow called with a Starlark function argument crashed at its first checkpoint."""
    with Runtime(store, virtual_time=True, max_restarts=0) as rt:
        rid, w = _run(rt, flows, "uses_fn")
    assert repr(result_of(w)) == "Ok(21)", w.result


def test_many_flows_run_on_a_few_threads_and_sleepers_leave_memory(store: Store) -> None:
    text = '''
def _nap_impl(fctx):
    sleep(3600)
    return 1

nap = flow(implementation = _nap_impl)

def _many_impl(fctx):
    hs = [fctx.actions.run(nap) for i in range(fctx.args.n)]
    return len(fctx.actions.wait(hs))

many = flow(implementation = _many_impl, args = {"n": args.int()})
'''
    path = Path(store.home) / "many.flow"
    path.write_text(text)
    before = threading.active_count()
    with Runtime(store) as rt:
        rt.max_starting = 50
        peak = [0]
        rid = rt.create_run(str(path), text, flow="many", args={"n": "400"})
        deadline = time.monotonic() + 60
        while rt.timer.ask(("pending",)) < 400 and time.monotonic() < deadline:
            peak[0] = max(peak[0], len(rt.starting))
            time.sleep(0.005)
        assert rt.timer.ask(("pending",)) == 400
        assert peak[0] <= 50
        assert threading.active_count() <= before + 12
        with rt.lock:
            assert list(rt.actors) == [rid]   # sleeping flows live in the store only
        # Their due times are durable: a new runtime would find all 400.
        assert len(store.due_timers(float("inf"), limit=1000)) == 400
