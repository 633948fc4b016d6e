"""Runs, flows, checkpoints, journal, intents, timers, inboxes, output, code, batches."""

import pickle
import sys
import time

import pytest

from store import (Batch, CheckpointError, ConflictError, MessageIdReusedError,
                   NotFoundError, StoreError)
from store.records import CHECKPOINT_FORMAT, wrap_checkpoint

from .conftest import make_flow


def test_runs_create_get_update(st):
    assert st.commit(Batch().create_run("r1", file="a.flow", root_flow="f1",
                                        meta={"args": {"n": 1}})) == [True]
    # idempotent by id; another file is a conflict
    assert st.commit(Batch().create_run("r1", file="a.flow")) == [False]
    with pytest.raises(ConflictError):
        st.commit(Batch().create_run("r1", file="b.flow"))
    r = st.get_run("r1")
    assert (r.id, r.file, r.root_flow, r.state, r.finished) == ("r1", "a.flow", "f1",
                                                               "running", None)
    assert r.meta == {"args": {"n": 1}}
    st.commit(Batch().set_run_state("r1", "ok", meta={"x": 2}))
    r = st.get_run("r1")
    assert r.state == "ok" and r.finished is not None and r.meta == {"args": {"n": 1}, "x": 2}
    assert st.get_run("nope") is None
    with pytest.raises(NotFoundError):
        st.commit(Batch().set_run_state("nope", "ok"))
    with pytest.raises(StoreError, match="unknown state"):
        Batch().set_run_state("r1", "happy")


def test_list_runs_10k_newest_first_by_state(st):
    t0 = 1_700_000_000.0
    b = Batch()
    for i in range(10_000):
        b.create_run(f"run{i:05d}", file="x.flow", created=t0 + i,
                     state="ok" if i % 3 == 0 else "running")
    st.commit(b)
    # The CPU time of this thread, the best of three: a loaded machine makes a read's
    # wall time anything, not the work it does. Measured against a listing of all
    # 10,000 runs: the pages cost about a hundredth of that, scans would cost as much.
    def cost(listing) -> float:
        times = []
        for _ in range(3):
            start = time.thread_time()
            listing()
            times.append(time.thread_time() - start)
        return min(times)

    def pages():
        return (st.list_runs(limit=20), st.list_runs("ok", limit=20),
                st.list_runs("running", limit=5, before=t0 + 9995))
    newest, ok, running_page2 = pages()
    elapsed = cost(pages)
    everything = cost(lambda: st.list_runs(limit=10_000))
    assert [r.id for r in newest] == [f"run{i:05d}" for i in range(9999, 9979, -1)]
    assert [r.id for r in ok] == [f"run{i:05d}" for i in range(9999, 9940, -3)]
    assert [r.id for r in running_page2] == ["run09994", "run09992", "run09991",
                                             "run09989", "run09988"]
    assert elapsed < everything / 10, "listing must not scan all runs"
    assert st.count_runs() == 10_000
    assert st.count_runs("ok") == 3334
    assert st.list_runs("cancelled") == []
    # a state change moves the run between state indexes
    st.commit(Batch().set_run_state("run09998", "cancelled"))
    assert [r.id for r in st.list_runs("cancelled")] == ["run09998"]
    assert "run09998" not in [r.id for r in st.list_runs("running", limit=5)]


def test_flows_tree_states_and_live_index(st):
    st.commit(Batch().create_run("r1", file="m.flow", root_flow="root")
              .create_flow("root", run_id="r1", name="main", args=b"\x80pickled",
                           state="running")
              .create_flow("c1", run_id="r1", name="child", parent="root", args={"n": 1})
              .create_flow("c2", run_id="r1", name="child", parent="root"))
    root = st.get_flow("root")
    assert root.args == b"\x80pickled" and root.started is not None and root.parent is None
    assert {f.id for f in st.children("root")} == {"c1", "c2"}
    assert {f.id for f in st.run_flows("r1")} == {"root", "c1", "c2"}
    assert {f.id for f in st.live_flows()} == {"root", "c1", "c2"}
    # idempotent by id; another parent is a conflict; unknown run/parent refused
    assert st.commit(Batch().create_flow("c1", run_id="r1", name="child", parent="root")) \
        == [False]
    with pytest.raises(ConflictError):
        st.commit(Batch().create_flow("c1", run_id="r1", name="child", parent="c2"))
    with pytest.raises(NotFoundError):
        st.commit(Batch().create_flow("x", run_id="r9", name="child"))
    with pytest.raises(NotFoundError):
        st.commit(Batch().create_flow("x", run_id="r1", name="child", parent="zz"))
    st.commit(Batch().set_flow_state("c1", "running").set_flow_state("c1", "waiting"))
    st.commit(Batch().set_flow_state("c2", "err", error={"message": "boom"}))
    c2 = st.get_flow("c2")
    assert c2.state == "err" and c2.error == {"message": "boom"} and c2.finished
    assert {f.id for f in st.live_flows()} == {"root", "c1"}
    with pytest.raises(ConflictError, match="already ended"):
        st.commit(Batch().set_flow_state("c2", "running"))


def test_values_must_be_plain_data(st):
    make_flow(st)

    class Thing:
        pass
    with pytest.raises(TypeError, match="cannot store a value of type Thing"):
        st.commit(Batch().add_intent("f1", 1, {"x": Thing()}))
    assert st.intents("f1") == []
    value = {"a": [1, 2.5, None, True], "b": b"\x00\xff", "t": (1, "x"), "s": {1, 2}}
    st.commit(Batch().add_intent("f1", 1, value))
    assert st.get_intent("f1", 1).request == value


def test_bad_ids_refused_in_caller():
    for bad in ("", "a\x00b", "x" * 300, 5, None):
        with pytest.raises(StoreError):
            Batch().create_run(bad, file="x")


def test_checkpoint_envelope(st):
    make_flow(st)
    payload = pickle.dumps({"frames": [1, 2, 3]})
    st.commit(Batch().put_checkpoint("f1", payload, seq=4))
    ck = st.get_checkpoint("f1")
    assert ck.payload == payload and ck.seq == 4 and ck.format == CHECKPOINT_FORMAT
    assert ck.python == sys.version_info[:2] and ck.flowmetal_version
    assert ck.load() == {"frames": [1, 2, 3]}
    assert st.load_checkpoint("f1") == {"frames": [1, 2, 3]}
    assert st.get_checkpoint("zz") is None
    with pytest.raises(CheckpointError, match="'zz'.*no checkpoint"):
        st.load_checkpoint("zz", required=True)
    with pytest.raises(NotFoundError):
        st.commit(Batch().put_checkpoint("zz", b"x"))


def test_checkpoint_errors_name_the_flow(st):
    make_flow(st)
    # payload that does not unpickle
    st.commit(Batch().put_checkpoint("f1", b"\x80\x05garbage"))
    with pytest.raises(CheckpointError) as ei:
        st.load_checkpoint("f1")
    assert "'f1'" in str(ei.value) and ei.value.flow_id == "f1"
    assert "\n" not in str(ei.value)
    # an envelope that is not one
    st.commit(Batch().put("checkpoints", b"f1", b"not an envelope"))
    with pytest.raises(CheckpointError, match="'f1'.*bad envelope"):
        st.get_checkpoint("f1")
    # written by a future checkpoint format
    future = bytearray(wrap_checkpoint(b"x", "9.9", None, 0.0))
    future[4:6] = (CHECKPOINT_FORMAT + 1).to_bytes(2, "big")
    st.commit(Batch().put("checkpoints", b"f1", bytes(future)))
    with pytest.raises(CheckpointError, match="format 2.*upgrade"):
        st.get_checkpoint("f1")
    # truncated envelope
    st.commit(Batch().put("checkpoints", b"f1", wrap_checkpoint(b"", "1.0", 1, 0.0)[:-2]))
    with pytest.raises(CheckpointError, match="truncated"):
        st.get_checkpoint("f1")
    # another Python's pickle that fails: the message says which Python wrote it
    other = wrap_checkpoint(b"\x80\x05bad", "0.1", 1, 0.0, python=(3, 99))
    st.commit(Batch().put("checkpoints", b"f1", other))
    with pytest.raises(CheckpointError, match=r"Python 3\.99"):
        st.load_checkpoint("f1")


def test_protocol_suspend_complete_finish(st):
    st.commit(Batch().create_run("r1", file="m.flow", root_flow="p")
              .create_flow("p", run_id="r1", name="main", state="running"))
    # step 1: suspend on action 1, starting a child flow, in one txn
    st.commit(Batch().flow_suspended("p", 1, b"ck1", {"op": "call"}, state="waiting",
                                     children=[{"id": "c", "name": "child",
                                                "args": {"n": 2}}]))
    assert st.get_checkpoint("p").payload == b"ck1"
    assert st.get_checkpoint("p").seq == 1
    assert [(i.seq, i.request) for i in st.intents("p")] == [(1, {"op": "call"})]
    assert st.get_flow("p").state == "waiting"
    c = st.get_flow("c")
    assert (c.parent, c.run_id, c.args, c.state) == ("p", "r1", {"n": 2}, "pending")
    # child suspends on a timer
    st.commit(Batch().set_flow_state("c", "running"))
    st.commit(Batch().flow_suspended("c", 1, b"cck", {"op": "sleep"}, timer=100.0))
    assert [(t.flow_id, t.seq, t.due) for t in st.due_timers(200)] == [("c", 1, 100.0)]
    # step 2: timer fired; result journaled with the next checkpoint; timer consumed
    st.commit(Batch().action_completed("c", 1, None, checkpoint=b"cck2",
                                       next_intent=(2, {"op": "exec"}), output=["hi\n"]))
    assert st.due_timers(200) == [] and st.timers("c") == []
    assert [i.seq for i in st.intents("c")] == [2]
    j = st.get_journal("c", 1)
    assert j.request == {"op": "sleep"} and j.result is None and j.started <= j.finished
    assert st.read_output("r1")[0].text == "hi\n"
    # step 3: child finishes and wakes the parent's pending action 1
    st.commit(Batch().flow_finished("c", "ok", result=42, wake=("p", 1, {"ok": 42})))
    c = st.get_flow("c")
    assert c.state == "ok" and c.result == 42
    assert st.get_checkpoint("c") is None and st.intents("c") == []
    assert st.inbox_closed("c")
    assert st.get_journal("p", 1).result == {"ok": 42}
    assert [i.seq for i in st.intents("p")] == [1]  # consumed by the parent's next step
    # the parent resumes with the journaled result (result omitted: already there)
    st.commit(Batch().action_completed("p", 1, checkpoint=b"ck2", state="running"))
    assert st.intents("p") == [] and st.get_journal("p", 1).result == {"ok": 42}
    # first result wins
    assert st.commit(Batch().journal_result("p", 1, "late")) == [False]
    assert st.get_journal("p", 1).result == {"ok": 42}
    # root flow finishing ends the run
    st.commit(Batch().flow_finished("p", "err", error="boom"))
    assert st.get_run("r1").state == "err" and st.get_run("r1").finished
    assert st.live_flows() == []
    assert [e.seq for e in st.journal("p")] == [1]


def test_journal_order_and_paging(st):
    make_flow(st)
    b = Batch()
    for seq in (300, 2, 1, 256, 70000):
        b.journal_result("f1", seq, seq * 10, request={"n": seq})
    st.commit(b)
    assert [e.seq for e in st.journal("f1")] == [1, 2, 256, 300, 70000]
    assert [e.seq for e in st.journal("f1", after=2, limit=2)] == [256, 300]
    assert st.get_journal("f1", 256).result == 2560
    make_flow(st, "f10", "r1")  # a flow id that extends another must not mix in
    st.commit(Batch().journal_result("f10", 1, "x"))
    assert [e.seq for e in st.journal("f1")] == [1, 2, 256, 300, 70000]


def test_timers_ordered_by_due(st):
    make_flow(st, "a")
    make_flow(st, "b", "r1")
    b = Batch()
    b.add_timer("a", 1, 50.5, {"k": 1}).add_timer("b", 7, 10.25).add_timer("a", 2, 10.25)
    b.add_timer("b", 8, 1e9)
    st.commit(b)
    assert [(t.flow_id, t.seq) for t in st.due_timers(60)] == [("a", 2), ("b", 7), ("a", 1)]
    assert st.next_timer().due == 10.25
    assert st.due_timers(60, limit=1)[0].seq == 2
    # moving a timer: same (flow, seq) again
    st.commit(Batch().add_timer("a", 1, 5.0, {"k": 2}))
    assert [(t.flow_id, t.seq, t.payload) for t in st.due_timers(6)] == [("a", 1, {"k": 2})]
    assert st.commit(Batch().cancel_timer("a", 1).cancel_timer("a", 1)) == [True, False]
    taken = st.commit(Batch().take_due_timers(20))[0]
    assert [(t.flow_id, t.seq) for t in taken] == [("a", 2), ("b", 7)]
    assert [(t.flow_id, t.seq) for t in st.due_timers(2e9)] == [("b", 8)]
    assert [t.seq for t in st.timers("b")] == [8]


def test_inbox_message_id_with_a_digest(st):
    make_flow(st)
    assert st.commit(Batch().inbox_append("f1", "d", msg_id="m2")) == [0]
    # with a digest kept, the same id with another digest is refused, the same is not
    assert st.commit(Batch().inbox_append("f1", "d", msg_id="m3", digest=b"D1")) == [1]
    assert st.commit(Batch().inbox_append("f1", "d", msg_id="m3", digest=b"D1")) == [None]
    with pytest.raises(MessageIdReusedError, match="'m3' was used before"):
        st.commit(Batch().inbox_append("f1", "e", msg_id="m3", digest=b"D2"))
    # an id kept without a digest (older stores) compares with nothing
    assert st.commit(Batch().inbox_append("f1", "e", msg_id="m2", digest=b"D2")) == [None]
    with pytest.raises(StoreError, match="needs a message id"):
        Batch().inbox_append("f1", "e", digest=b"D2")
    assert [m.body for m in st.inbox_messages("f1")] == ["d", "d"]
    # Once the inbox has closed, a retry of a delivered message is still "delivered
    # before" (not an error); a new message is refused.
    st.commit(Batch().inbox_close("f1"))
    assert st.commit(Batch().inbox_append("f1", "d", msg_id="m3", digest=b"D1")) == [None]
    with pytest.raises(MessageIdReusedError):
        st.commit(Batch().inbox_append("f1", "e", msg_id="m3", digest=b"D2"))
    with pytest.raises(ConflictError, match="closed"):
        st.commit(Batch().inbox_append("f1", "d", msg_id="m4", digest=b"D1"))


def test_inbox_fifo(st):
    make_flow(st)
    res = st.commit(Batch().inbox_append("f1", "a").inbox_append("f1", b"b", msg_id="m2")
                    .inbox_append("f1", {"c": 3}))
    assert res == [0, 1, 2]
    # idempotent delivery by message id
    assert st.commit(Batch().inbox_append("f1", b"b", msg_id="m2")) == [None]
    assert st.inbox_count("f1") == 3
    assert st.inbox_peek("f1").body == "a"
    m = st.commit(Batch().inbox_pop("f1", expect_seq=0))[0]
    assert (m.seq, m.body) == (0, "a")
    with pytest.raises(ConflictError):
        st.commit(Batch().inbox_pop("f1", expect_seq=0))
    assert [m.body for m in st.inbox_messages("f1")] == [b"b", {"c": 3}]
    st.commit(Batch().inbox_close("f1"))
    assert st.inbox_closed("f1")
    with pytest.raises(ConflictError, match="closed"):
        st.commit(Batch().inbox_append("f1", "late"))
    assert [st.commit(Batch().inbox_pop("f1"))[0].body for _ in range(2)] == [b"b", {"c": 3}]
    assert st.commit(Batch().inbox_pop("f1")) == [None]
    assert st.inbox_count("f1") == 0
    with pytest.raises(NotFoundError):
        st.commit(Batch().inbox_append("nope", "x"))


def test_output_stream_offsets(st):
    make_flow(st)
    offs = st.commit(Batch().append_output("r1", "héllo\n", flow_id="f1")
                     .append_output("r1", "world\n", stream="stderr"))
    assert offs == [0, 7]
    assert st.output_size("r1") == 13
    chunks = st.read_output("r1")
    assert [(c.offset, c.text, c.stream, c.flow_id) for c in chunks] == [
        (0, "héllo\n", "stdout", "f1"), (7, "world\n", "stderr", None)]
    assert [c.text for c in st.read_output("r1", chunks[0].end)] == ["world\n"]
    assert st.read_output("r1", 13) == []
    assert [c.offset for c in st.read_output("r1", 3)] == [0, 7]  # chunk spanning offset 3
    assert not st.wait_output("r1", 13, timeout=0.05)
    st.commit(Batch().append_output("r1", "more"))
    assert st.wait_output("r1", 13, timeout=1)
    assert st.read_output("r0") == []


def test_code_blobs(st):
    h = st.put_code("def f():\n    return 1\n")
    assert len(h) == 64 and st.put_code(b"def f():\n    return 1\n") == h
    assert st.get_code(h) == b"def f():\n    return 1\n"
    assert st.get_code("0" * 64) is None


def test_batches_of_runs(st):
    assert st.commit(Batch().create_batch("b1", [{"n": 1}, {"n": 2}], meta={"file": "x"})) \
        == [True]
    assert st.commit(Batch().create_batch("b1", [])) == [False]
    st.commit(Batch().create_run("r1", file="x")
              .set_batch_item("b1", 1, state="running", run_id="r1"))
    items = st.batch_items("b1")
    assert [(i.index, i.args, i.state, i.run_id) for i in items] == [
        (0, {"n": 1}, "pending", None), (1, {"n": 2}, "running", "r1")]
    st.commit(Batch().set_batch_state("b1", "running"))
    b = st.get_batch("b1")
    assert (b.state, b.size, b.meta) == ("running", 2, {"file": "x"})
    assert [x.id for x in st.list_batches()] == ["b1"]
    with pytest.raises(NotFoundError):
        st.commit(Batch().set_batch_item("b1", 5, state="ok"))
    st.commit(Batch().set_batch_item("b1", 1, state="ok"))          # the run stays
    assert st.batch_items("b1")[1].run_id == "r1"
    st.commit(Batch().set_batch_item("b1", 1, state="cancelled", run_id=None))
    assert st.batch_items("b1")[1].run_id is None                    # it named no run


def test_failed_batch_writes_nothing(st):
    make_flow(st)
    with pytest.raises(NotFoundError):
        st.commit(Batch().add_intent("f1", 1, "x").put_checkpoint("f1", b"c")
                  .add_intent("ghost", 1, "y"))
    assert st.intents() == [] and st.get_checkpoint("f1") is None


def test_raw_put_delete_and_stats(st):
    st.commit(Batch().put("meta", b"note", b"v"))
    assert st.commit(Batch().delete("meta", b"note").delete("meta", b"note")) == [True, False]
    with pytest.raises(StoreError):
        Batch().put("nosuchdb", b"k", b"v")
    s = st.stats()
    assert s["schema"] == 2 and s["entries"]["meta"] == 2 and s["map_size"] > 0


def test_crashed_flow_keeps_its_state_and_can_be_revived(st):
    st.commit(Batch().create_run("r1", file="m.flow", root_flow="f")
              .create_flow("f", run_id="r1", name="main", state="running"))
    st.commit(Batch().flow_suspended("f", 3, b"ck", {"op": "exec"}, timer=50.0)
              .inbox_append("f", "hello"))
    st.commit(Batch().flow_finished("f", "crashed", error="worker died 5 times"))
    f = st.get_flow("f")
    assert f.state == "crashed" and f.finished and st.live_flows() == []
    assert st.get_run("r1").state == "crashed"
    assert st.get_checkpoint("f").payload == b"ck"
    assert [i.seq for i in st.intents("f")] == [3] and st.timers("f")
    assert not st.inbox_closed("f") and st.inbox_count("f") == 1
    # resume
    st.commit(Batch().set_flow_state("f", "running").set_run_state("r1", "running"))
    assert st.get_flow("f").finished is None and [x.id for x in st.live_flows()] == ["f"]
    st.commit(Batch().flow_finished("f", "cancelled"))
    assert st.inbox_closed("f") and st.get_checkpoint("f") is None and st.intents("f") == []
    with pytest.raises(ConflictError):
        st.commit(Batch().set_flow_state("f", "running"))


def test_recover_snapshot(st):
    st.commit(Batch().create_run("r1", file="m.flow", root_flow="a")
              .create_flow("a", run_id="r1", name="main", state="running")
              .create_flow("b", run_id="r1", name="main", parent="a", state="running")
              .create_flow("c", run_id="r1", name="main", parent="a", state="running")
              .create_flow("done", run_id="r1", name="main", parent="a", state="ok"))
    st.commit(Batch().flow_suspended("a", 1, pickle.dumps("A"), {"op": "call"})
              .flow_suspended("b", 4, pickle.dumps("B"), {"op": "sleep"})
              .journal_result("b", 4, "slept")
              .put("checkpoints", b"c", b"garbage"))
    rec = {r.flow.id: r for r in st.recover()}
    assert set(rec) == {"a", "b", "c"}
    assert rec["a"].checkpoint.load() == "A" and rec["a"].error is None
    [(intent, done)] = rec["a"].pending
    assert intent.seq == 1 and done is None                 # issue again
    [(intent, done)] = rec["b"].pending
    assert intent.seq == 4 and done.result == "slept"       # resume with the result
    assert rec["c"].checkpoint is None and "'c'" in str(rec["c"].error)


def test_call_ended_writes_an_ended_child_and_the_callers_journal(st):
    make_flow(st, "r1")
    res = {"ok": True, "repr": "Ok(1)"}
    st.commit(Batch().call_ended("r1", 1, "r1.1", run_id="r1", name="noop", state="ok",
                                 result=res, error=None, value={"v": 1},
                                 request={"kind": "call"}))
    child = st.get_flow("r1.1")
    assert (child.state, child.parent, child.name, child.result) == ("ok", "r1", "noop", res)
    assert child.started is not None and child.finished is not None
    assert [f.id for f in st.children("r1")] == ["r1.1"]
    assert "r1.1" in [f.id for f in st.run_flows("r1")]
    assert "r1.1" not in [f.id for f in st.live_flows()]
    assert st.inbox_closed("r1.1")
    j = st.get_journal("r1", 1)
    assert (j.request, j.result) == ({"kind": "call"}, {"v": 1})
    with pytest.raises(ConflictError):   # the same child twice
        st.commit(Batch().call_ended("r1", 2, "r1.1", run_id="r1", name="noop", state="ok",
                                     result=res, error=None, value=1, request=None))
    with pytest.raises(NotFoundError):   # no such caller
        st.commit(Batch().call_ended("ghost", 1, "ghost.1", run_id="r1", name="noop",
                                     state="err", result=res, error="x", value=1,
                                     request=None))
    with pytest.raises(StoreError, match="terminal"):
        Batch().call_ended("r1", 3, "r1.3", run_id="r1", name="noop", state="running",
                           result=None, error=None, value=1, request=None)
    # A caller that ended (cancelled under it) cannot go on calling.
    st.commit(Batch().flow_finished("r1", "cancelled", result=res, error="cancelled"))
    with pytest.raises(ConflictError, match="ended"):
        st.commit(Batch().call_ended("r1", 4, "r1.4", run_id="r1", name="noop", state="ok",
                                     result=res, error=None, value=1, request=None))
    assert st.get_flow("r1.4") is None


def test_a_called_flow_is_kept_in_its_callers_journal_entry(st):
    """A child named CALLER.SEQ that ended within the call writes only the journal
    entry, and every reader finds it there as it would find a flow of its own."""
    make_flow(st, "r1")
    st.commit(Batch().create_flow("r1.2", run_id="r1", name="kid", parent="r1",
                                  state="running"))
    before = st.stats()["entries"]
    res = {"ok": True, "repr": "Ok(1)"}
    call = dict(run_id="r1", name="noop", state="ok", result=res, error=None, value=1,
                request={"kind": "call"})
    st.commit(Batch().call_ended("r1", 1, "r1.1", **call)
              .call_ended("r1", 10, "r1.10", **call)
              .call_ended("r1.2", 1, "r1.2.1", **call))
    grown = {db: n - before[db] for db, n in st.stats()["entries"].items() if n != before[db]}
    assert grown == {"journal": 3}
    assert st.get_flow("r1.10").parent == "r1" and st.get_flow("r1.2.1").parent == "r1.2"
    # In the order of their ids, as the indexes list flows of their own.
    assert [f.id for f in st.children("r1")] == ["r1.1", "r1.10", "r1.2"]
    assert [f.id for f in st.run_flows("r1")] == ["r1", "r1.1", "r1.10", "r1.2", "r1.2.1"]
    assert [f.id for f in st.run_flows("r1", called=False)] == ["r1", "r1.2"]
    assert st.inbox_closed("r1.1") and not st.inbox_closed("r1.2")
    assert st.get_journal("r1", 10).result == 1
    assert st.get_flow("r1.3") is None and st.get_flow("r1.01") is None
    # It has ended for good: nothing more is written of it, nor can it be called twice.
    with pytest.raises(ConflictError, match="inbox is closed"):
        st.commit(Batch().inbox_append("r1.1", "hi"))
    for b in (Batch().set_flow_state("r1.1", "ok"), Batch().put_checkpoint("r1.1", b"c"),
              Batch().add_timer("r1.1", 1, time.time()), Batch().add_intent("r1.1", 1, "x")):
        with pytest.raises(ConflictError, match="has ended"):
            st.commit(b)
    with pytest.raises(ConflictError, match="exists already"):
        st.commit(Batch().call_ended("r1", 11, "r1.1", **call))
    with pytest.raises(ConflictError):   # a flow of its own of the same id
        st.commit(Batch().create_flow("r1.1", run_id="r1", name="x", parent="r2"))
    assert st.commit(Batch().create_flow("r1.1", run_id="r1", name="noop",
                                         parent="r1")) == [False]
    with pytest.raises(ConflictError, match="cannot start"):   # it calls nothing
        st.commit(Batch().create_flow("r1.1.1", run_id="r1", name="x", parent="r1.1"))
    with pytest.raises(ConflictError, match="its caller 'r1' in run 'r1'"):
        st.commit(Batch().create_run("r9", file="x").call_ended("r1", 6, "r1.6",
                                                                **{**call, "run_id": "r9"}))
    # Ids that only look like a call's are flows like any other.
    assert st.get_flow("r1." + "9" * 30) is None and not st.inbox_closed("r1." + "9" * 30)
    with pytest.raises(NotFoundError):
        st.commit(Batch().inbox_append("r1." + "9" * 30, "hi"))
    # A crashed one keeps records of its own: it can be revived.
    st.commit(Batch().call_ended("r1", 7, "r1.7", **{**call, "state": "crashed"}))
    st.commit(Batch().set_flow_state("r1.7", "running"))
    assert st.get_flow("r1.7").state == "running"
    with pytest.raises(ConflictError, match="journaled action 5"):
        st.commit(Batch().journal_result("r1", 5, "done").call_ended("r1", 5, "r1.5", **call))
    assert st.get_flow("r1.5") is None
    # They go with their run.
    st.commit(Batch().flow_finished("r1.2", "ok").flow_finished("r1.7", "ok")
              .flow_finished("r1", "ok"))
    assert st.commit(Batch().delete_run("r1")) == [True]
    assert st.get_flow("r1.1") is None and st.get_flow("r1.2.1") is None
    assert st.stats()["entries"]["journal"] == 0


def test_a_schema_1_store_is_marked_2_with_its_first_called_flow(home):
    import lmdb

    from store import SchemaError, Store
    with Store.open(home, sync=False) as st:
        assert st.stats()["schema"] == 2     # a new store
        make_flow(st, "r1")
    env = lmdb.open(str(home / "store"), max_dbs=64)
    with env.begin(write=True) as txn:
        txn.put(b"schema", b"1", db=env.open_db(b"meta", txn=txn))
    env.close()
    # Opened, read, written: still usable by a Flowmetal of schema 1 ...
    with Store.open(home, sync=False) as st:
        st.commit(Batch().journal_result("r1", 1, "x"))
        assert st.stats()["schema"] == 1 and st.get_flow("r1") is not None
        # ... until it holds something only schema 2 reads.
        st.commit(Batch().call_ended("r1", 2, "r1.2", run_id="r1", name="noop", state="ok",
                                     result=None, error=None, value=1, request=None))
        assert st.stats()["schema"] == 2
    env = lmdb.open(str(home / "store"), max_dbs=64)
    with env.begin(write=True) as txn:
        txn.put(b"schema", b"3", db=env.open_db(b"meta", txn=txn))
    env.close()
    with pytest.raises(SchemaError, match="schema 3, newer"):
        Store.open(home, sync=False)


def test_unless_run_exists_writes_a_creation_once(st):
    def creation(state):
        inner = (Batch().put_code("x = 1").create_run("r1", file="a.flow", root_flow="r1")
                 .create_flow("r1", run_id="r1", name="main", state="running")
                 .put_checkpoint("r1", b"start"))
        return Batch().unless_run_exists("r1", inner)
    # The first writer creates it, with the next step after it in the same batch.
    b = creation("running").flow_finished("r1", "ok", result={"ok": True, "repr": "Ok(1)"})
    assert st.commit(b)[0] is True
    assert st.get_run("r1").state == "ok" and st.get_code(
        __import__("store").code_hash(b"x = 1")) == b"x = 1"
    # A late second writer (the fallback) changes nothing: not the ended flow, not the
    # dropped checkpoint.
    assert st.commit(creation("running")) == [False]
    assert st.get_flow("r1").state == "ok" and st.get_run("r1").state == "ok"
    assert st.get_checkpoint("r1") is None
    # A failing inner op fails the batch, like any op.
    bad = Batch().unless_run_exists("r2", Batch().create_flow("f", run_id="r2", name="x"))
    with pytest.raises(NotFoundError):
        st.commit(bad)
    assert st.get_run("r2") is None


def test_a_big_record_does_not_slow_down_the_next_ones():
    # Pickler.clear_memo() costs the largest size its memo ever had, so the encoder
    # must not keep a pickler that encoded a big record (~60 us per record after).
    from store import records
    records.encode({"small": 1})
    first = records._tls.pickler
    records.encode({"small": 2})
    assert records._tls.pickler is first          # reused for small records
    records.encode([[i] for i in range(20_000)])
    assert getattr(records._tls, "pickler", None) is not first
    assert records.decode(records.encode({"a": [1, (2, b"3")]})) == {"a": [1, (2, b"3")]}


@pytest.mark.parametrize("state", ["cancelled", "err"])
def test_a_cancelled_flows_pending_actions_stay_in_its_journal(st, state):
    # `history` showed the command a cancelled flow was running, then lost it.
    make_flow(st)
    st.commit(Batch().flow_suspended("f1", 1, b"ck", {"kind": "exec", "argv": ["true"]})
              .action_completed("f1", 1, {"ok": True, "v": b""}, checkpoint=b"ck2",
                                next_intent=(2, {"kind": "exec", "argv": ["sleep", "60"]})))
    st.commit(Batch().flow_finished("f1", state, result=None, error=state))
    assert st.get_journal("f1", 1).result == {"ok": True, "v": b""}
    j = st.get_journal("f1", 2)
    if state == "cancelled":
        assert j.request == {"kind": "exec", "argv": ["sleep", "60"]}
        assert j.result == {"ok": False, "error": "cancelled"}
    else:
        assert j is None
    assert st.intents("f1") == []


def test_cancel_live_flows_ends_the_runs_live_flows_and_no_others(st):
    # What a run still runs when its root ends: its live flows (named RUN.…), not the
    # root, not ended ones, and not those of a run whose id merely starts the same.
    make_flow(st, "r1", "r1")
    make_flow(st, "r10", "r10")
    b = Batch()
    for fid, state in (("r1.1", "waiting"), ("r1.2", "pending"), ("r1.1.1", "running"),
                       ("r1.3", "ok"), ("r10.1", "waiting")):
        parent = fid.rsplit(".", 1)[0]
        b.create_flow(fid, run_id=parent.split(".")[0], name="kid", parent=parent,
                      state=state)
    st.commit(b)
    st.commit(Batch().flow_suspended("r1.1", 1, b"ck", {"kind": "sleep"})
              .add_timer("r1.1", 1, time.time() + 60))
    st.commit(Batch().flow_finished("r1", "ok", result=1)
              .cancel_live_flows("r1", result="gone", error="its run ended"))
    states = {f.id: f.state for f in st.run_flows("r1")}
    assert states == {"r1": "ok", "r1.1": "cancelled", "r1.2": "cancelled",
                      "r1.1.1": "cancelled", "r1.3": "ok"}
    assert st.get_flow("r1.1").error == "its run ended"
    assert st.get_flow("r10.1").state == "waiting"
    assert st.get_run("r1").state == "ok"
    assert st.intents("r1.1") == [] and st.get_checkpoint("r1.1") is None
    assert [t.flow_id for t in st.due_timers(time.time() + 3600)] == []
