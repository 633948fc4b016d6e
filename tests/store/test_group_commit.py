"""Group commit: many writers share transactions; each batch stands or falls alone."""

import threading
import time

import pytest

from store import Batch, ConflictError, NotFoundError, Store
from store.committer import Pending, apply_group

from .conftest import make_flow


def test_many_threads_each_get_their_own_results(st, monkeypatch):
    # Every batch through the committer: an idle store commits inline, and on a
    # loaded machine the threads may then never overlap enough to share one.
    import store.core
    monkeypatch.setattr(store.core, "INLINE_WHEN_IDLE", False)
    st.commit(Batch().create_run("r1", file="x"))
    for i in range(50):
        make_flow(st, f"f{i}", "r1")
    errors = []

    def work(i):
        try:
            for n in range(40):
                res = st.commit(Batch().inbox_append(f"f{i}", n).inbox_append(f"f{i}", -n))
                assert res == [2 * n, 2 * n + 1]
        except Exception as e:  # noqa: BLE001
            errors.append(e)
    ts = [threading.Thread(target=work, args=(i,)) for i in range(50)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
    assert all(st.inbox_count(f"f{i}") == 80 for i in range(50))
    assert st.stats()["groups"] > 0
    # several batches shared a transaction
    assert st.stats()["grouped_batches"] > st.stats()["groups"]


def test_a_failing_batch_fails_alone_in_its_group(st):
    make_flow(st)
    env = st._env
    good1 = Pending(Batch().add_intent("f1", 1, "a").inbox_append("f1", "m1"))
    bad = Pending(Batch().add_intent("f1", 2, "b").add_intent("ghost", 1, "x"))
    good2 = Pending(Batch().add_intent("f1", 3, "c").inbox_append("f1", "m2"))
    conflict = Pending(Batch().create_run("r1", file="other.flow"))
    group = [good1, bad, good2, conflict]
    with env.write_lock:
        apply_group(env, group)
    for p in group:
        p._finish()
    assert good1.result() == [None, 0]
    assert good2.result() == [None, 1]  # saw good1's inbox write, not bad's
    with pytest.raises(NotFoundError, match="ghost"):
        bad.result()
    assert isinstance(conflict.exception(), ConflictError)
    assert [i.seq for i in st.intents("f1")] == [1, 3]


def test_failures_under_concurrency_do_not_leak(st):
    make_flow(st)
    outcomes = []
    lock = threading.Lock()

    def work(i):
        for n in range(30):
            b = Batch().add_intent("f1", i * 1000 + n, n)
            if n % 3 == 0:
                b.add_intent("missing", 1, "x")
            try:
                st.commit(b)
                ok = True
            except NotFoundError:
                ok = False
            with lock:
                outcomes.append((i * 1000 + n, ok))
    ts = [threading.Thread(target=work, args=(i,)) for i in range(20)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    stored = {i.seq for i in st.intents("f1")}
    assert stored == {seq for seq, ok in outcomes if ok}
    assert len(stored) == 20 * 20


def test_submit_and_callbacks(st):
    make_flow(st)
    done = threading.Event()
    seen = []
    pendings = [st.submit(Batch().inbox_append("f1", i)) for i in range(100)]

    def cb(p):
        seen.append(p.result()[0])
        if len(seen) == 100:
            done.set()
    for p in pendings:
        p.add_done_callback(cb)
    assert done.wait(10)
    assert sorted(seen) == list(range(100))
    assert all(p.done() for p in pendings)
    late = []
    pendings[0].add_done_callback(late.append)  # already done: called at once
    assert late == [pendings[0]]
    assert st.commit(Batch()) == []


def test_commit_timeout(st):
    make_flow(st)
    env = st._env
    with env.write_lock:  # hold the writer: the committer cannot run
        p = st.submit(Batch().add_intent("f1", 1, "x"))
        with pytest.raises(TimeoutError):
            p.result(timeout=0.05)
    assert p.result(timeout=5) == [None]


def test_close_commits_what_is_queued(home):
    st = Store.open(home, sync=False)
    make_flow(st)
    env = st._env
    with env.write_lock:
        ps = [st.submit(Batch().add_intent("f1", i, i)) for i in range(10)]
        t = threading.Thread(target=st.close)
        t.start()
        time.sleep(0.05)
    t.join(5)
    assert all(p.result(0) == [None] for p in ps)
    with Store.open(home, sync=False) as again:
        assert len(again.intents("f1")) == 10


def test_one_oversized_batch_fails_alone(home):
    from store import StoreFullError
    st = Store.open(home, sync=False, map_size=1 << 20, max_map_size=4 << 20)
    make_flow(st)
    env = st._env
    small = [Pending(Batch().add_intent("f1", i, "x")) for i in range(5)]
    huge = Pending(Batch().journal_result("f1", 99, b"x" * (8 << 20)))
    group = small[:2] + [huge] + small[2:]
    with env.write_lock:
        apply_group(env, group)
    for p in group:
        p._finish()
    assert isinstance(huge.exception(), StoreFullError)
    assert all(p.result() == [None] for p in small)
    assert len(st.intents("f1")) == 5
    st.close()


def test_commit_group_on_the_callers_thread(st):
    make_flow(st)
    groups = st.stats()["groups"]
    ps = st.commit_group([Batch().inbox_append("f1", "a"), Batch(),
                          Batch().add_intent("f1", 2, "b").add_intent("ghost", 1, "x"),
                          Batch().inbox_append("f1", "c")])
    assert all(p.done() for p in ps)
    assert ps[0].result() == [0] and ps[1].result() == [] and ps[3].result() == [1]
    assert isinstance(ps[2].exception(), NotFoundError)   # rolled back alone
    assert [i.seq for i in st.intents("f1")] == []
    assert [m.body for m in st.inbox_messages("f1")] == ["a", "c"]
    assert st.stats()["groups"] == groups   # no committer thread was involved


def test_commit_group_calls_before_commit_between_its_writes_and_its_commit(st, monkeypatch):
    # The hook runs once the batches are written into the transaction and before it
    # commits: a reader on another thread does not see them yet; afterwards it does.
    from store.batch import Writer
    make_flow(st)
    order = []
    real_apply = Writer.apply

    def apply(self, batch):
        order.append("apply")
        return real_apply(self, batch)
    monkeypatch.setattr(Writer, "apply", apply)

    def before_commit():
        out = []
        t = threading.Thread(target=lambda: out.append(
            [m.body for m in st.inbox_messages("f1")]))
        t.start()
        t.join()
        order.append(("before_commit", out[0]))
    ps = st.commit_group([Batch().inbox_append("f1", "a"), Batch().inbox_append("f1", "b")],
                         before_commit=before_commit)
    assert [p.result() for p in ps] == [[0], [1]]
    assert order == ["apply", "apply", ("before_commit", [])]
    assert [m.body for m in st.inbox_messages("f1")] == ["a", "b"]


def test_a_batch_that_follows_a_failed_one_fails_with_it(st):
    make_flow(st)
    lost = Pending(Batch().inbox_append("nope", 1))       # no such flow
    st.commit_group([lost])
    assert isinstance(lost.exception(), NotFoundError)
    nxt = Pending(Batch().inbox_append("f1", 1), after=lost)
    fine = Pending(Batch().inbox_append("f1", 2))
    st.commit_group([nxt, fine])
    assert nxt.exception() is lost.exception()
    assert fine.exception() is None
    empty = Pending(Batch(), after=lost)    # nothing to write, and yet it follows
    st.commit_group([empty])
    assert empty.exception() is lost.exception()
    assert [m.body for m in st.inbox_messages("f1")] == [2]   # nothing of `nxt`
    ok = st.commit_group([Batch().inbox_append("f1", 3)])[0]
    after_ok = Pending(Batch().inbox_append("f1", 4), after=ok)
    st.commit_group([after_ok])
    assert after_ok.exception() is None and after_ok.after is None   # no chains kept
    assert st.inbox_count("f1") == 3


def test_start_group_commits_on_the_committer_thread_in_turn(st):
    make_flow(st)
    threads = []
    first = st.submit(Batch().inbox_append("f1", 1))
    group = st.start_group([Batch().inbox_append("f1", 2), Batch().inbox_append("f1", 3)],
                           before_commit=lambda: threads.append(threading.current_thread().name),
                           durable=False)
    last = st.submit(Batch().inbox_append("f1", 4))
    for p in [first, *group, last]:
        p.result(10)
    assert threads and set(threads) == {"flowmetal-store-committer"}
    assert [m.body for m in st.inbox_messages("f1")] == [1, 2, 3, 4]


def test_settle_waits_for_what_the_committer_thread_has(st):
    make_flow(st)
    group = st.start_group([Batch().inbox_append("f1", 1)],
                           before_commit=lambda: time.sleep(0.2))
    st.settle()
    assert group[0].done() and st.inbox_count("f1") == 1
