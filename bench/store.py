"""Store benchmarks against raw LMDB on the same machine, in one run.

    python bench/store.py [--quick]

Baseline: raw py-lmdb, one 1 KB `put` + `commit` per write transaction, sync=True.
(a) one flow's sequential cycle through `Store.commit` (sync=True): commit 1 =
    checkpoint (1 KB) + intent (`flow_suspended`), commit 2 = journaled result + next
    checkpoint (`action_completed`); reported as durable commits/s and as a ratio of
    the raw rate. Raw and (a) commits alternate one by one, each timed alone, so that
    both see the same disk at the same moments; medians over rounds are reported.
(b) 1,000 concurrent flows through group commit (sync=True): each flow repeatedly
    commits `action_completed` (result + 1 KB checkpoint + next intent) and starts its
    next one only when the previous is durable. Driven event-style (`Store.submit` +
    done-callbacks, no thread per flow) and, for comparison, with one blocking thread
    per flow. Reported as durable checkpoints/s, with the process's CPU time per
    checkpoint and the share of a core it got (the rate is CPU-bound: on a busy
    machine it falls with that share).
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
CPU: list[tuple[float, float, int]] = []  # (cpu s, wall s, checkpoints) of (b) event rounds


def bench_a(tmp: str, rounds: int, seconds: float) -> dict:
    """Raw commits and the flow's cycle commits alternate one by one, each timed alone,
    so that both see the same disk and the same neighbours; per-round rates are
    commits / summed commit time, and the figures are medians over rounds."""
    env = lmdb.open(os.path.join(tmp, "raw"), map_size=1 << 30, max_dbs=4, sync=True,
                    metasync=True)
    db = env.open_db(b"raw")
    st = Store.open(os.path.join(tmp, "a"), sync=True)
    st.commit(Batch().create_run("ra", file="bench.flow", root_flow="fa")
              .create_flow("fa", run_id="ra", name="main", state="running"))
    ck = os.urandom(CKPT)
    value = os.urandom(CKPT)
    clock = time.perf_counter
    raws, ours, ratios = [], [], []
    seq = key = 0
    for _ in range(rounds):
        t_raw = t_ours = 0.0
        n = 0
        end = clock() + seconds
        while clock() < end:
            t0 = clock()
            with env.begin(write=True) as txn:
                txn.put(key.to_bytes(8, "big"), value, db=db)
            t1 = clock()
            st.commit(Batch().flow_suspended("fa", seq, ck, {"op": "exec", "seq": seq}))
            t2 = clock()
            with env.begin(write=True) as txn:
                txn.put((key + 1).to_bytes(8, "big"), value, db=db)
            t3 = clock()
            st.commit(Batch().action_completed("fa", seq, {"rc": 0}, checkpoint=ck))
            t4 = clock()
            t_raw += (t1 - t0) + (t3 - t2)
            t_ours += (t2 - t1) + (t4 - t3)
            n += 2
            key += 2
            seq += 1
        raws.append(n / t_raw)
        ours.append(n / t_ours)
        ratios.append(t_raw / t_ours)
    st.close()
    env.close()
    return {"raw_commits_per_s": round(statistics.median(raws)),
            "a_commits_per_s": round(statistics.median(ours)),
            "a_ratio": round(statistics.median(ratios), 3), "a_rounds": rounds}


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
        if not wake.is_set():
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
    t0, c0 = time.perf_counter(), time.process_time()
    time.sleep(seconds)
    n = state["count"]
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    state["stop"] = True
    wake.set()
    t.join()
    CPU.append((cpu, dt, n))
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
    cpu_us = statistics.median(c / n * 1e6 for c, _, n in CPU if n)
    share = statistics.median(c / w for c, w, _ in CPU)
    return {"b_checkpoints_per_s": round(statistics.median(event)),
            "b_cpu_us_per_checkpoint": round(cpu_us, 1),
            "b_cpu_share": round(share, 2),
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
              f"per flow; mean group {res['b_mean_group_size']}; "
              f"{res['b_cpu_us_per_checkpoint']} us CPU per checkpoint, "
              f"process got {res['b_cpu_share']:.0%} of a core", flush=True)
        res["a_target_met"] = res["a_ratio"] >= 0.8
        res["b_target_met"] = res["b_checkpoints_per_s"] >= 20_000
        print(json.dumps(res))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
