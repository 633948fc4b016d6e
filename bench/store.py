"""Store benchmarks against raw LMDB on the same machine, in one run.

    python bench/store.py [--quick]

Baseline: raw py-lmdb, one 1 KB `put` + `commit` per write transaction, sync=True.
(a) one flow's sequential cycle through `Store.commit` (sync=True): commit 1 =
    checkpoint (1 KB) + intent (`flow_suspended`), commit 2 = journaled result + next
    checkpoint (`action_completed`); reported as durable commits/s and as a ratio of
    the raw rate. Raw and (a) alternate in short rounds so that both see the same
    machine; medians are reported.
(b) 1,000 concurrent flows through group commit (sync=True): each flow repeatedly
    commits `action_completed` (result + 1 KB checkpoint + next intent) and starts its
    next one only when the previous is durable. Driven event-style (`Store.submit` +
    done-callbacks, no thread per flow) and, for comparison, with one blocking thread
    per flow. Reported as durable checkpoints/s.
The last line of output is one JSON object with all figures.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import deque

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import lmdb  # noqa: E402

from store import Batch, Store  # noqa: E402

CKPT = 1024


def raw_round(path: str, seconds: float) -> float:
    env = lmdb.open(path, map_size=1 << 30, max_dbs=4, sync=True, metasync=True)
    db = env.open_db(b"raw")
    value = os.urandom(CKPT)
    n = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while time.perf_counter() < end:
        with env.begin(write=True) as txn:
            txn.put(n.to_bytes(8, "big"), value, db=db)
        n += 1
    dt = time.perf_counter() - t0
    env.close()
    return n / dt


def cycle_round(st: Store, flow_id: str, start_seq: int, seconds: float) -> tuple[float, int]:
    ck = os.urandom(CKPT)
    seq = start_seq
    commits = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while time.perf_counter() < end:
        st.commit(Batch().flow_suspended(flow_id, seq, ck, {"op": "exec", "seq": seq}))
        st.commit(Batch().action_completed(flow_id, seq, {"rc": 0}, checkpoint=ck))
        commits += 2
        seq += 1
    return commits / (time.perf_counter() - t0), seq


def bench_a(tmp: str, rounds: int, seconds: float) -> dict:
    st = Store.open(os.path.join(tmp, "a"), sync=True)
    st.commit(Batch().create_run("ra", file="bench.flow", root_flow="fa")
              .create_flow("fa", run_id="ra", name="main", state="running"))
    raws, ours = [], []
    seq = 0
    for r in range(rounds):
        path = os.path.join(tmp, f"raw{r}")
        raws.append(raw_round(path, seconds))
        shutil.rmtree(path)
        rate, seq = cycle_round(st, "fa", seq, seconds)
        ours.append(rate)
    st.close()
    raw, a = statistics.median(raws), statistics.median(ours)
    ratios = [o / w for o, w in zip(ours, raws)]
    return {"raw_commits_per_s": round(raw), "a_commits_per_s": round(a),
            "a_ratio": round(a / raw, 3), "a_ratio_median_of_rounds":
            round(statistics.median(ratios), 3), "a_rounds": rounds}


def setup_flows(st: Store, n: int, run_id: str) -> list[str]:
    ids = [f"{run_id}-f{i}" for i in range(n)]
    b = Batch().create_run(run_id, file="bench.flow")
    for f in ids:
        b.create_flow(f, run_id=run_id, name="worker", state="running")
    st.commit(b)
    return ids


def b_event_round(st: Store, flows: list[str], seconds: float, warmup: float) -> float:
    """Each flow: submit its next checkpoint when the previous one is durable."""
    ck = os.urandom(CKPT)
    state = {"counting": False, "stop": False, "count": 0}
    ready: deque = deque()
    wake = threading.Event()
    live = [len(flows)]

    def on_done(p, flow_id, seq):
        p.result()
        if state["counting"]:
            state["count"] += 1
        ready.append((flow_id, seq + 1))
        wake.set()

    def submit(flow_id, seq):
        p = st.submit(Batch().action_completed(flow_id, seq, {"rc": 0}, checkpoint=ck,
                                               next_intent=(seq + 1, {"op": "exec"})))
        p.add_done_callback(lambda p: on_done(p, flow_id, seq))

    # One driver thread builds the next batches while the committer is in fsync.
    def driver():
        while True:
            wake.wait()
            wake.clear()
            while ready:
                flow_id, seq = ready.popleft()
                if state["stop"]:
                    live[0] -= 1
                    continue
                submit(flow_id, seq)
            if live[0] == 0:
                return
    for f in flows:
        ready.append((f, 0))
    t = threading.Thread(target=driver)
    wake.set()
    t.start()
    time.sleep(warmup)
    state["counting"] = True
    t0 = time.perf_counter()
    time.sleep(seconds)
    n = state["count"]
    dt = time.perf_counter() - t0
    state["stop"] = True
    wake.set()
    t.join()
    return n / dt


def b_thread_round(st: Store, flows: list[str], seconds: float, warmup: float) -> float:
    """One blocking thread per flow."""
    ck = os.urandom(CKPT)
    state = {"counting": False, "stop": False}
    counts = [0] * len(flows)

    def work(i, flow_id):
        seq = 10**6
        while not state["stop"]:
            st.commit(Batch().action_completed(flow_id, seq, {"rc": 0}, checkpoint=ck,
                                               next_intent=(seq + 1, {"op": "exec"})))
            seq += 1
            if state["counting"]:
                counts[i] += 1
    ts = [threading.Thread(target=work, args=(i, f)) for i, f in enumerate(flows)]
    for t in ts:
        t.start()
    time.sleep(warmup)
    state["counting"] = True
    t0 = time.perf_counter()
    time.sleep(seconds)
    n = sum(counts)
    dt = time.perf_counter() - t0
    state["stop"] = True
    for t in ts:
        t.join()
    return n / dt


def bench_b(tmp: str, rounds: int, seconds: float, nflows: int = 1000) -> dict:
    st = Store.open(os.path.join(tmp, "b"), sync=True)
    flows = setup_flows(st, nflows, "rb")
    g0, b0 = st.stats()["groups"], st.stats()["grouped_batches"]
    event = [b_event_round(st, flows, seconds, 0.5) for _ in range(rounds)]
    g1, b1 = st.stats()["groups"], st.stats()["grouped_batches"]
    threads = [b_thread_round(st, flows, seconds, 1.0) for _ in range(max(1, rounds // 2))]
    sizes = st.stats()
    st.close()
    return {"b_checkpoints_per_s": round(statistics.median(event)),
            "b_thread_per_flow_checkpoints_per_s": round(statistics.median(threads)),
            "b_mean_group_size": round((b1 - b0) / max(1, g1 - g0), 1),
            "b_flows": nflows, "b_rounds": rounds,
            "b_store_bytes": sizes["used_bytes"]}


def main() -> None:
    quick = "--quick" in sys.argv
    tmp = tempfile.mkdtemp(prefix="flowmetal-bench-", dir=os.environ.get("BENCH_DIR"))
    try:
        res = {"python": sys.version.split()[0], "lmdb": lmdb.__version__,
               "checkpoint_bytes": CKPT}
        res.update(bench_a(tmp, rounds=3 if quick else 7, seconds=0.5 if quick else 1.0))
        print(f"raw fsync'd commits/s {res['raw_commits_per_s']}; (a) one flow "
              f"{res['a_commits_per_s']} commits/s = {res['a_ratio']:.0%} of raw", flush=True)
        res.update(bench_b(tmp, rounds=3 if quick else 5, seconds=1.0 if quick else 2.0))
        print(f"(b) 1,000 flows: {res['b_checkpoints_per_s']} durable checkpoints/s "
              f"(event-driven), {res['b_thread_per_flow_checkpoints_per_s']}/s with a thread "
              f"per flow; mean group {res['b_mean_group_size']}", flush=True)
        res["a_target_met"] = res["a_ratio"] >= 0.8
        res["b_target_met"] = res["b_checkpoints_per_s"] >= 20_000
        print(json.dumps(res))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
