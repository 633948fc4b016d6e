"""Reliability with real processes: kill -9 the daemon with 200 runs in flight, and
1,000 runs submitted as fast as one client can."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from flowmetal.daemon.client import Client

from .conftest import HERE

MIXED = str(HERE / "mixed.flow")
TRIVIAL = str(HERE / "trivial.flow")


def _open_store(home: Path):
    from store import Store
    return Store.open(home, sync=False)


def _wait_all_ended(st, ids: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    left = set(ids)
    while left:
        left = {r for r in left if st.get_run(r).state not in ("ok", "err", "cancelled",
                                                                "crashed")}
        if not left:
            return
        assert time.monotonic() < deadline, f"{len(left)} runs did not end"
        time.sleep(0.2)


@pytest.mark.timeout(240)
def test_kill9_with_200_runs_in_flight(home: Path, daemons) -> None:
    d = daemons()
    src = open(MIXED).read()
    reqs = [{"file": MIXED, "source": src, "flow": "main",
             "args": {"i": str(i), "t": str(0.3 + (i % 5) * 0.3)}} for i in range(200)]
    with Client.connect(home) as c:
        ids = c.submit_many(reqs)
    assert all(isinstance(r, str) for r in ids), [r for r in ids if not isinstance(r, str)]
    time.sleep(0.8)
    d.kill9()
    st = _open_store(home)
    try:
        live = [r for r in ids if st.get_run(r).state in ("pending", "running", "waiting")]
        assert len(live) >= 50, f"only {len(live)} runs in flight at the kill"
        daemons()   # a new daemon recovers them all
        _wait_all_ended(st, ids, 180)
        for i, rid in enumerate(ids):
            run = st.get_run(rid)
            assert run.state == "ok", (rid, run.state, run.meta)
            root = st.get_flow(rid)
            assert root.result["repr"] == f"Ok({3 * i})"
            out = "".join(ch.text for ch in st.read_output(rid, 0, limit=100))
            assert out == f"item {i}\n", (rid, out)          # printed once: ended once
            flows = st.run_flows(rid)
            assert len(flows) == 3 and all(f.state == "ok" for f in flows)
            # every action journaled once, none still pending
            for f in flows:
                assert not st.intents(f.id)
                seqs = [j.seq for j in st.journal(f.id)]
                assert len(seqs) == len(set(seqs))
    finally:
        st.close()


@pytest.mark.timeout(240)
def test_1000_runs_as_fast_as_possible(home: Path, daemons) -> None:
    daemons()
    src = open(TRIVIAL).read()
    reqs = [{"file": TRIVIAL, "source": src, "flow": "one", "args": {"n": str(i)}}
            for i in range(1000)]
    t0 = time.monotonic()
    with Client.connect(home) as c:
        ids = c.submit_many(reqs)
    assert all(isinstance(r, str) for r in ids)
    assert len(set(ids)) == 1000
    st = _open_store(home)
    try:
        _wait_all_ended(st, ids, 180)
        elapsed = time.monotonic() - t0
        for i, rid in enumerate(ids):
            assert st.get_run(rid).state == "ok"
            assert st.get_flow(rid).result["repr"] == f"Ok({i + 1})"
        print(f"1000 runs in {elapsed:.2f} s")
    finally:
        st.close()


def test_submit_wait_follows_its_run_across_a_daemon_restart(home: Path, daemons) -> None:
    import subprocess
    from .conftest import CLI, ROOT, env_for
    flow = home / "nap.flow"
    flow.write_text('def _s(fctx):\n    print("before")\n    sleep(3)\n    print("after")\n'
                    '    return 1\n\ns = flow(implementation = _s)\n')
    d = daemons(workers=0)
    p = subprocess.Popen(CLI + ["submit", str(flow), "--flow", "s", "--wait"],
                         env=env_for(home), cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "before\n"
        d.kill9()           # the run goes on at the next start
        daemons(workers=0)
        stdout, stderr = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, stderr
    assert stdout == "after\nOk(1)\n"
    assert "the daemon went away" in stderr
