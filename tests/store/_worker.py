"""Subprocess bodies for the multi-process and crash tests (run as a script)."""

import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from store import Batch, Store  # noqa: E402


def ensure_flow(st, run_id, flow_id):
    b = Batch()
    if st.get_run(run_id) is None:
        b.create_run(run_id, file="w.flow")
    b.create_flow(flow_id, run_id=run_id, name="w", state="running")
    st.commit(b)


def cycle(run_id, flow_id, i, blob, keep=b""):
    """One multi-database transaction whose parts all carry ``i`` (``keep`` is journaled,
    so that the store grows)."""
    return (Batch()
            .journal_result(flow_id, i, {"i": i}, request={"i": i, "keep": keep})
            .flow_suspended(flow_id, i, i.to_bytes(8, "big") + blob, {"i": i})
            .inbox_append(flow_id, i)
            .append_output(run_id, f"{flow_id} {i}\n", flow_id=flow_id))


def crash_writer(home, name, threads, sync, map_size=1 << 20):
    """Commit cycles forever from several threads; print 'flow i' once i is durable.
    The map starts small, so that kills also land in the middle of map growth."""
    st = Store.open(home, sync=sync, map_size=map_size)
    run_id = f"run-{name}"
    out_lock = threading.Lock()

    def work(t):
        flow_id = f"{name}-t{t}"
        ensure_flow(st, run_id, flow_id)
        done = {e.seq for e in st.journal(flow_id)}
        i = max(done) + 1 if done else 0
        blob = os.urandom(1500)
        while True:
            st.commit(cycle(run_id, flow_id, i, blob, keep=blob[:i % 700]))
            with out_lock:
                os.write(1, f"{flow_id} {i}\n".encode())
            i += 1
    ts = [threading.Thread(target=work, args=(t,), daemon=True) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def writer(home, name, count, blob_size, map_size):
    st = Store.open(home, sync=False, map_size=map_size)
    run_id = f"run-{name}"
    ensure_flow(st, run_id, name)
    for i in range(count):
        blob = os.urandom(blob_size)
        st.commit(cycle(run_id, name, i, blob, keep=blob))
    print("done", name, flush=True)
    st.close()


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "crash":
        crash_writer(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == "1")
    elif cmd == "writer":
        writer(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
