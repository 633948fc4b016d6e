"""Supervised batch jobs: progress, summary, exit status, retry, and durability
across kill -9 of the daemon."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from .conftest import HERE, fm

MIXED = str(HERE / "mixed.flow")


def _items(home: Path, values: list[int]) -> str:
    p = home / "items.jsonl"
    p.write_text("".join(json.dumps({"i": v}) + "\n" for v in values) + "\n")
    return str(p)


def test_batch_summary_exit_status_and_retry(home: Path, daemon) -> None:
    inputs = _items(home, [1, 2, -1, 3, 4, 5])
    p = fm(home, "batch", MIXED, "--inputs", inputs, "--flow", "main",
           "--concurrency", "2", "--arg", "t=0")
    assert p.returncode == 1, p.stderr
    assert "progress: " in p.stderr          # plain lines without a terminal
    assert "5 ok, 1 failed of 6" in p.stdout
    assert 'item 2 (err): Err("negative")' in p.stdout
    bid = p.stdout.split()[1].rstrip(":")
    v = json.loads(fm(home, "batch", "status", bid, "--json").stdout)
    assert [i["state"] for i in v["items"]] == ["ok", "ok", "err", "ok", "ok", "ok"]
    assert [i["result"] for i in v["items"]][:2] == ["Ok(3)", "Ok(6)"]
    before = {i["index"]: i["run_id"] for i in v["items"]}
    p = fm(home, "batch", "retry", bid, "--failed")
    assert p.returncode == 1 and "retrying 1 item" in p.stderr
    v = json.loads(fm(home, "batch", "status", bid, "--json").stdout)
    after = {i["index"]: i["run_id"] for i in v["items"]}
    assert after[2] == f"{bid}-2-a1" and all(after[k] == before[k] for k in after if k != 2)
    p = fm(home, "batch", "list", "--json")
    assert [b["id"] for b in json.loads(p.stdout)] == [bid]
    p = fm(home, "batch", "status", "nope")
    assert p.returncode == 2 and "no batch" in p.stderr
    # Each item's run names its batch, so that `prune` spares it while the batch runs.
    from store import Store
    st = Store.open(home, sync=False)
    try:
        assert {st.get_run(r).meta.get("batch") for r in after.values()} == {bid}
    finally:
        st.close()


@pytest.mark.timeout(180)
def test_batch_survives_kill9(home: Path, daemons) -> None:
    d = daemons()
    n = 40
    inputs = _items(home, list(range(n)))
    p = fm(home, "batch", MIXED, "--inputs", inputs, "--flow", "main",
           "--concurrency", "4", "--arg", "t=0.15", "--detach", "--json")
    assert p.returncode == 0, p.stderr
    bid = json.loads(p.stdout)["batch_id"]
    from store import Store
    st = Store.open(home, sync=False)
    try:
        deadline = time.monotonic() + 60
        while True:
            counts = st.get_batch(bid).meta.get("counts", {})
            if counts.get("ok", 0) >= 8:
                break
            assert time.monotonic() < deadline
            time.sleep(0.05)
        d.kill9()
        done_before = {it.index: (it.run_id, st.get_run(it.run_id).finished)
                       for it in st.batch_items(bid) if it.state == "ok"}
        assert 8 <= len(done_before) < n
        daemons()
        deadline = time.monotonic() + 120
        while st.get_batch(bid).state != "ok":
            assert time.monotonic() < deadline, st.get_batch(bid)
            time.sleep(0.1)
        items = st.batch_items(bid)
        assert all(it.state == "ok" for it in items)
        for it in items:
            assert it.run_id == f"{bid}-{it.index}"           # one run per item, ever
            assert st.get_flow(it.run_id).result["repr"] == f"Ok({3 * it.index})"
        for index, (rid, finished) in done_before.items():   # not redone
            assert st.get_run(rid).finished == finished
        runs = [r for r in st.list_runs(limit=1000) if r.id.startswith(bid)]
        assert len(runs) == n
    finally:
        st.close()
    p = fm(home, "batch", "status", bid)
    assert "ok 40" in p.stdout


def test_batch_item_fields_are_typed_json_values(home: Path, daemon) -> None:
    flow = home / "typed.flow"
    flow.write_text('def _f(fctx):\n    return fctx.args.s + ":" + str(fctx.args.n)\n\n'
                    'f = flow(implementation = _f, args = {"s": args.string(), "n": args.int()})\n')
    items = home / "typed.jsonl"
    items.write_text("\n".join(json.dumps(i) for i in [
        {"s": "a", "n": 1},
        {"s": None, "n": 1},          # null is not a string (it was the text "null")
        {"s": 5, "n": 1},             # nor is 5 (it was "5")
        {"s": "b", "n": "2"},         # text for an int converts, as with --arg
        {"s": "c", "n": "x"},
    ]) + "\n")
    p = fm(home, "batch", str(flow), "--inputs", str(items), "--flow", "f")
    assert p.returncode == 1, p.stderr
    bid = p.stdout.split()[1].rstrip(":")
    v = json.loads(fm(home, "batch", "status", bid, "--json").stdout)
    assert [i["state"] for i in v["items"]] == ["ok", "err", "err", "ok", "err"]
    assert [i["result"] for i in v["items"]][0] == 'Ok("a:1")'
    assert [i["result"] for i in v["items"]][3] == 'Ok("b:2")'
    errors = [i["result"] for i in v["items"]]
    assert "argument s" in errors[1] and "argument s" in errors[2]
    assert errors[4].startswith("n=x: not a valid int"), errors[4]


def test_a_batch_wider_than_the_quota_waits_for_slots(home: Path, daemons) -> None:
    # concurrent_flows = 2 and --concurrency 4: items the quota refuses before they
    # run wait for a free slot instead of failing.
    (home / "quotas.toml").write_text("[default]\nconcurrent_flows = 2\n")
    daemons()
    flow = home / "nap.flow"
    # (Its top level prints: each run's output starts with that, refused or not.)
    flow.write_text('print("loaded")\n\n'
                    'def _f(fctx):\n    fctx.actions.sleep(0.2)\n    return fctx.args.i\n\n'
                    'f = flow(implementation = _f, args = {"i": args.int()})\n')
    inputs = _items(home, list(range(6)))
    p = fm(home, "batch", str(flow), "--inputs", inputs, "--flow", "f", "--concurrency", "4")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "6 ok, 0 failed of 6" in p.stdout
    bid = p.stdout.split()[1].rstrip(":")
    v = json.loads(fm(home, "batch", "status", bid, "--json").stdout)
    assert [i["result"] for i in v["items"]] == [f"Ok({i})" for i in range(6)]


def test_retry_of_a_running_batch_with_nothing_failed_says_so(home: Path, daemon) -> None:
    inputs = _items(home, [1, 2, 3])
    p = fm(home, "batch", MIXED, "--inputs", inputs, "--flow", "main",
           "--concurrency", "1", "--arg", "t=2", "--detach", "--json")
    assert p.returncode == 0, p.stderr
    bid = json.loads(p.stdout)["batch_id"]
    p = fm(home, "batch", "retry", bid, "--failed")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"batch {bid}: 0 failed item(s) queued again"
    assert f"batch {bid} is still running" in p.stderr


def test_batch_cancel_stops_the_batch_and_retry_brings_it_back(home: Path, daemon) -> None:
    # There was no way to stop a batch: interrupting `batch` leaves it running, and
    # cancelling its runs one by one let the daemon start the next items.
    inputs = _items(home, [1, 2, 3, 4, 5])
    p = fm(home, "batch", MIXED, "--inputs", inputs, "--flow", "main",
           "--concurrency", "2", "--arg", "t=60", "--detach", "--json")
    assert p.returncode == 0, p.stderr
    bid = json.loads(p.stdout)["batch_id"]
    deadline = time.monotonic() + 60
    while json.loads(fm(home, "batch", "status", bid, "--json").stdout)["counts"]["running"] < 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    p = fm(home, "batch", "cancel", bid)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"batch {bid}: cancelled 5 item(s)"
    deadline = time.monotonic() + 60
    while (v := json.loads(fm(home, "batch", "status", bid, "--json").stdout))["state"] \
            != "cancelled":
        assert time.monotonic() < deadline, v
        time.sleep(0.1)
    assert [i["state"] for i in v["items"]] == ["cancelled"] * 5
    # The counts kept with the batch (what `batch list` shows) and the daemon's log
    # call cancelled items cancelled, not failed.
    from store import Store
    with Store.open(home, sync=False) as st:
        assert st.get_batch(bid).meta["counts"] == {"ok": 0, "failed": 0, "running": 0,
                                                    "pending": 0, "cancelled": 5}
    deadline = time.monotonic() + 10
    while f"batch {bid} ended: 0 ok, 0 failed, 5 cancelled" not in \
            (home / "daemon.log").read_text():
        assert time.monotonic() < deadline, (home / "daemon.log").read_text()[-2000:]
        time.sleep(0.05)
    runs = [i["run_id"] for i in v["items"] if i["run_id"]]
    assert len(runs) == 2     # the three items not started never got a run
    for rid in runs:
        assert json.loads(fm(home, "status", rid, "--json").stdout)["state"] == "cancelled"
    p = fm(home, "batch", "cancel", bid)
    assert p.returncode == 0 and "nothing to cancel (state cancelled)" in p.stdout
    p = fm(home, "batch", "cancel", "nope")
    assert p.returncode == 2 and "no batch" in p.stderr
    # A cancelled batch's items can be run again.
    p = fm(home, "batch", "retry", bid, "--failed", "--no-wait", "--json")
    assert p.returncode == 0 and json.loads(p.stdout)["retried"] == 5, p.stderr
    v = json.loads(fm(home, "batch", "status", bid, "--json").stdout)
    assert v["state"] == "running"
    assert fm(home, "batch", "cancel", bid).returncode == 0


@pytest.mark.timeout(180)
def test_a_cancel_cut_short_by_kill9_is_finished_by_the_next_daemon(home: Path,
                                                                   daemons) -> None:
    # The cancel is recorded in the batch before any run is cancelled; a daemon
    # killed in between leaves that mark, and the next one carries the cancel out.
    d = daemons()
    inputs = _items(home, [1, 2, 3, 4])
    p = fm(home, "batch", MIXED, "--inputs", inputs, "--flow", "main",
           "--concurrency", "2", "--arg", "t=60", "--detach", "--json")
    bid = json.loads(p.stdout)["batch_id"]
    from store import Batch, Store
    st = Store.open(home, sync=False)
    try:
        deadline = time.monotonic() + 60
        # Two items running, their runs created (an item is marked running with its
        # run id just before its run is created).
        while len([it for it in st.batch_items(bid)
                   if it.run_id and st.get_run(it.run_id) is not None]) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        d.kill9()
        # As if the daemon had been killed between marking a third item running and
        # creating its run: that run never exists.
        from flowmetal.daemon.batches import item_run_id
        st.commit(Batch().set_batch_item(bid, 2, state="running",
                                         run_id=item_run_id(bid, 2, 0))
                  .set_batch_state(bid, "running", meta={"cancel": True}))
        daemons()
        deadline = time.monotonic() + 60
        while st.get_batch(bid).state != "cancelled":
            assert time.monotonic() < deadline, st.get_batch(bid)
            time.sleep(0.1)
        items = st.batch_items(bid)
        assert [it.state for it in items] == ["cancelled"] * 4
        assert [st.get_run(it.run_id).state for it in items if it.run_id] == ["cancelled"] * 2
        assert items[2].run_id is None   # it names no run
    finally:
        st.close()


def test_batch_progress_counts_cancelled_items_as_done(capsys) -> None:
    from flowmetal.cli.daemon_cmds import _Progress
    p = _Progress(5, tty=False)
    p.show({"ok": 1, "failed": 1, "cancelled": 3, "running": 0, "pending": 0}, final=True)
    line = capsys.readouterr().err
    assert line.startswith("progress: 5/5 done, 1 failed, 3 cancelled, 0 running"), line
