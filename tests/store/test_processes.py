"""Several processes on one store, and SIGKILL in the middle of commits."""

import os
import random
import select
import signal
import subprocess
import sys
import time

from store import Store

WORKER = os.path.join(os.path.dirname(__file__), "_worker.py")


def spawn(*args):
    return subprocess.Popen([sys.executable, WORKER, *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def check_flow(st, run_id, flow_id, acked):
    """Every acknowledged cycle is there, and every cycle there is whole."""
    seqs = [e.seq for e in st.journal(flow_id)]
    n = len(seqs)
    assert seqs == list(range(n)), f"{flow_id}: journal has gaps"
    assert n - 1 >= acked, f"{flow_id}: acknowledged cycle {acked} lost (have {n})"
    assert [i.seq for i in st.intents(flow_id)] == seqs
    assert [m.body for m in st.inbox_messages(flow_id, limit=10**6)] == seqs
    if n:
        ck = st.get_checkpoint(flow_id)
        assert ck.seq == n - 1 and int.from_bytes(ck.payload[:8], "big") == n - 1
        assert st.get_journal(flow_id, n - 1).result == {"i": n - 1}
    else:
        assert st.get_checkpoint(flow_id) is None
    lines = [c.text for c in st.read_output(run_id, limit=10**6)
             if c.flow_id == flow_id]
    assert lines == [f"{flow_id} {i}\n" for i in range(n)]
    return n


def test_sigkill_at_random_points_loses_nothing_acknowledged(tmp_path):
    home = tmp_path / "home"
    rng = random.Random(1234)
    threads = 3
    acked = {}
    kills = 0
    deadline = time.monotonic() + 40   # 6 rounds at least, on a loaded machine too
    rounds = 0
    while rounds < 12 and time.monotonic() < deadline:
        rounds += 1
        sync = rounds % 2 == 0
        p = spawn("crash", home, "w", threads, int(sync))
        buf = b""
        wait_for = rng.uniform(0.01, 0.3)
        t_end = None
        while True:
            r, _, _ = select.select([p.stdout], [], [], 0.02)
            if r:
                chunk = os.read(p.stdout.fileno(), 65536)
                if not chunk:
                    break
                buf += chunk
                if t_end is None:
                    t_end = time.monotonic() + wait_for  # count from the first ack
            if t_end is not None and time.monotonic() >= t_end:
                break
            if p.poll() is not None:
                break
        p.send_signal(signal.SIGKILL)
        p.wait()
        assert p.returncode == -signal.SIGKILL, p.stderr.read().decode()
        kills += 1
        buf += p.stdout.read()  # acks written before the kill
        for line in buf.decode().splitlines():
            flow, i = line.split()
            acked[flow] = max(acked.get(flow, -1), int(i))
        with Store.open(home, sync=False) as st:
            st.reader_check()
            for t in range(threads):
                check_flow(st, "run-w", f"w-t{t}", acked.get(f"w-t{t}", -1))
    total = sum(n + 1 for n in acked.values())
    print(f"{kills} SIGKILLs, {total} acknowledged commits checked")
    assert kills >= 6
    assert total > 1000


def test_processes_share_one_store_and_grow_its_map(tmp_path):
    home = tmp_path / "home"
    Store.open(home, sync=False, map_size=1 << 20).close()
    procs = [spawn("writer", home, f"p{i}", 150, 8000, 1 << 20) for i in range(4)]
    # read while they write
    with Store.open(home, sync=False, map_size=1 << 20) as st:
        while any(p.poll() is None for p in procs):
            st.list_runs()
            for i in range(4):
                st.journal(f"p{i}", limit=5)
            time.sleep(0.01)
        for p in procs:
            out, err = p.communicate()
            assert p.returncode == 0, err.decode()
        for i in range(4):
            assert check_flow(st, f"run-p{i}", f"p{i}", 149) == 150
        assert st.stats()["map_size"] > 4 << 20


def test_killed_writer_does_not_block_the_others(tmp_path):
    home = tmp_path / "home"
    Store.open(home, sync=False).close()
    victim = spawn("crash", home, "v", 2, 0)
    os.read(victim.stdout.fileno(), 100)  # it is committing
    others = [spawn("writer", home, f"o{i}", 300, 2000, 1 << 24) for i in range(2)]
    time.sleep(0.1)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    for p in others:
        out, err = p.communicate(timeout=30)
        assert p.returncode == 0, err.decode()
    with Store.open(home, sync=False) as st:
        st.reader_check()
        for i in range(2):
            assert check_flow(st, f"run-o{i}", f"o{i}", 299) == 300
        for t in range(2):
            check_flow(st, "run-v", f"v-t{t}", -1)
