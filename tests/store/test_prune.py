"""Retention: prune removes finished runs and everything of theirs, nothing live."""

import datetime
import time

from store import Batch, DB_NAMES


def build_run(st, run_id, finish):
    root, child = f"{run_id}-root", f"{run_id}-child"
    st.commit(Batch().create_run(run_id, file="x.flow", root_flow=root)
              .create_flow(root, run_id=run_id, name="main", state="running"))
    st.commit(Batch().flow_suspended(root, 1, b"ck", {"op": "call"}, timer=1e9,
                                     children=[{"id": child, "name": "c"}],
                                     output=["out\n"])
              .inbox_append(root, "msg", msg_id="m1")
              .journal_result(root, 0, "r0"))
    st.commit(Batch().flow_suspended(child, 1, b"ck", {"op": "sleep"}, timer=5.0))
    if finish:
        st.commit(Batch().flow_finished(child, "ok", result=1, wake=(root, 1, 1)))
        st.commit(Batch().flow_finished(root, "ok", result=2))


def test_prune_removes_finished_runs_entirely(st):
    build_run(st, "old", finish=True)
    build_run(st, "live", finish=False)
    before = st.stats()["entries"]
    cutoff = time.time() + 1
    assert st.prune(cutoff) == 1
    assert st.get_run("old") is None
    assert st.get_flow("old-root") is None and st.get_flow("old-child") is None
    assert st.journal("old-root") == [] and st.read_output("old") == []
    assert st.inbox_messages("old-root") == []
    # the live run is untouched
    assert st.get_run("live").state == "running"
    assert {f.id for f in st.live_flows()} == {"live-root", "live-child"}
    assert st.get_checkpoint("live-root").payload == b"ck"
    assert [t.flow_id for t in st.due_timers(10)] == ["live-child"]
    assert st.read_output("live")[0].text == "out\n"
    # every database lost exactly the old run's entries: nothing of it remains
    after = st.stats()["entries"]
    build_run(st, "again", finish=True)
    one_run = st.stats()["entries"]
    for name in DB_NAMES:
        if name not in ("meta", "code", "batches", "batch_items"):
            assert before[name] - after[name] == one_run[name] - after[name], name
    assert st.prune(datetime.timedelta(seconds=-10)) == 1


def test_prune_keeps_recent_and_live_runs(st):
    build_run(st, "a", finish=True)
    build_run(st, "b", finish=False)
    assert st.prune(time.time() - 3600) == 0          # finished too recently
    assert st.prune(datetime.timedelta(hours=1)) == 0
    # a finished run whose flows are somehow still live is kept too
    st.commit(Batch().set_run_state("b", "cancelled"))
    assert st.prune(time.time() + 10) == 1
    assert st.get_run("b") is not None and st.get_run("a") is None
    # ... unless forced
    assert st.commit(Batch().delete_run("b", force=True)) == [True]
    assert st.list_runs() == [] and st.live_flows() == [] and st.due_timers(2e9) == []


def test_prune_many(st):
    b = Batch()
    for i in range(500):
        b.create_run(f"r{i}", file="x", root_flow=f"f{i}", state="running")
        b.create_flow(f"f{i}", run_id=f"r{i}", name="m", state="running")
        b.append_output(f"r{i}", "x")
    st.commit(b)
    b = Batch()
    for i in range(0, 500, 2):
        b.flow_finished(f"f{i}", "ok")
    st.commit(b)
    assert st.prune(time.time() + 1, chunk=37) == 250
    assert st.count_runs() == 250 and st.count_runs("ok") == 0


def test_prune_keeps_the_runs_of_a_batch_until_the_batch_ends(st):
    # The batch supervisor reads an item's result from its run after the run ended:
    # a run pruned before that left the item `running` for ever, and the item ran
    # again at the next start.
    st.commit(Batch().create_batch("b1", [{}]).set_batch_state("b1", "running"))
    st.commit(Batch().create_run("b1-0", file="x.flow", root_flow="b1-0",
                                 meta={"batch": "b1"})
              .create_flow("b1-0", run_id="b1-0", name="main", state="running"))
    st.commit(Batch().flow_finished("b1-0", "ok", result=1))
    build_run(st, "plain", finish=True)
    assert st.prune(time.time() + 10) == 1            # "plain" only
    assert st.get_run("b1-0") is not None
    st.commit(Batch().set_batch_item("b1", 0, state="ok")
              .set_batch_state("b1", "ok"))
    assert st.prune(time.time() + 10) == 1
    assert st.get_run("b1-0") is None


def test_prune_sweeps_the_sources_nothing_refers_to(st):
    from store import code_hash
    srcs = {n: f"x = {n!r}\n" for n in ("shared", "old", "loaded", "batch", "ghost")}
    h = {n: code_hash(s.encode()) for n, s in srcs.items()}
    b = Batch()
    for s in srcs.values():
        b.put_code(s)
    st.commit(b)
    for rid, code in (("r-old", "old"), ("r-a", "shared"), ("r-b", "shared")):
        st.commit(Batch().create_run(rid, file="x.flow", root_flow=rid, meta={"code": h[code]})
                  .create_flow(rid, run_id=rid, name="main", state="running"))
    # A live flow's checkpoint pickles a loaded module as its hash; a batch names its file.
    st.commit(Batch().put_checkpoint("r-b", b"\x80\x05" + h["loaded"].encode() + b"."))
    st.commit(Batch().create_batch("b1", [{}], meta={"code": h["batch"]}))
    for rid in ("r-old", "r-a"):
        st.commit(Batch().flow_finished(rid, "ok", result=1))
    assert st.prune(time.time() + 1) == 2
    left = {n for n in srcs if st.get_code(h[n]) is not None}
    assert left == {"shared", "loaded", "batch"}    # r-b still names "shared"
    assert st.sweep_code() == 0
    st.commit(Batch().flow_finished("r-b", "ok", result=1))   # its checkpoint goes
    assert st.prune(time.time() + 1) == 1
    assert {n for n in srcs if st.get_code(h[n]) is not None} == {"batch"}
