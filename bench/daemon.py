"""Daemon benchmarks (not part of the test suite).

1. Submit-to-result latency of a trivial flow through the daemon (one client
   connection, `submit` with `wait` in one request, so one round trip per run):
   p50 and p99 over ``--latency-n`` runs. Yardsticks measured on this machine
   (DESIGN.md): DBOS ≈ 9 ms per 3-step workflow, Temporal's dev server ≈ 190 ms,
   Prefect ≈ 1 s.
2. ``--n`` trivial runs submitted (pipelined on one connection) and completed: runs/s.
3. Cold start of `flowmetal list` (a fresh `python -m flowmetal list` process) against
   a store holding ``--runs`` runs, beside the cold start of a bare `python -c pass`
   as the machine's floor. Target: ≤ 300 ms.

The daemon is a real subprocess (``--workers``, default 2) on a temporary home, with
fsync on as a daemon runs by default (``--no-sync``: FLOWMETAL_SYNC=0, as the tests).
The last line of output is one JSON object with every figure.

    python bench/daemon.py [--latency-n 300] [--n 1000] [--runs 10000] [--workers 2]
                           [--no-sync]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# bench/store.py (the store's benchmark) would shadow the `store` package.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from flowmetal.daemon.client import Client, DaemonNotRunning  # noqa: E402

TRIVIAL = '''
load("pkg.flowmetal.io/v1/prelude", "args", "flow")

def _one(fctx):
    return fctx.args.n + 1

one = flow(implementation = _one, args = {"n": args.int(default = 0)})
'''


def _env(sync: bool) -> dict:
    env = dict(os.environ)
    env["FLOWMETAL_SYNC"] = "1" if sync else "0"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def start_daemon(home: Path, workers: int, sync: bool) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-m", "flowmetal", "daemon", "--home", str(home),
                          "--workers", str(workers)], env=_env(sync), cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with Client.connect(home) as c:
                c.ping()
                return p
        except (DaemonNotRunning, OSError):
            time.sleep(0.05)
    p.kill()
    raise SystemExit("the daemon did not start")


def stop_daemon(p: subprocess.Popen) -> None:
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(30)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def bench_latency(home: Path, file: str, n: int) -> dict:
    lat = []
    with Client.connect(home) as c:
        for i in range(n + 20):
            t0 = time.perf_counter()
            end = {}
            for f in c.stream("submit", file=file, source=TRIVIAL, flow="one",
                              args={"n": str(i)}, wait=True, output=False):
                end = f
            dt = time.perf_counter() - t0
            assert end.get("result") == f"Ok({i + 1})", end
            if i >= 20:   # the first runs warm the compile caches
                lat.append(dt * 1000)
    lat.sort()
    return {"latency_p50_ms": round(statistics.median(lat), 2),
            "latency_p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 2),
            "latency_n": n}


def bench_throughput(home: Path, file: str, n: int) -> dict:
    from store import Store
    reqs = [{"file": file, "source": TRIVIAL, "flow": "one", "args": {"n": str(i)}}
            for i in range(n)]
    st = Store.open(home, sync=False)
    t0 = time.perf_counter()
    with Client.connect(home) as c:
        ids = c.submit_many(reqs)
    t_sub = time.perf_counter() - t0
    left = set(ids)
    while left:
        left = {r for r in left if st.get_run(r).state != "ok"}
        if left:
            time.sleep(0.01)
    total = time.perf_counter() - t0
    st.close()
    return {"runs": n, "submit_s": round(t_sub, 3), "total_s": round(total, 3),
            "runs_per_s": round(n / total, 1)}


def make_store(home: Path, runs: int) -> None:
    """A store with `runs` finished runs (written directly: what matters is the size)."""
    from store import Batch, Store
    st = Store.open(home, sync=False)
    for start in range(0, runs, 500):
        b = Batch()
        for i in range(start, min(runs, start + 500)):
            rid = f"r2026010100{i:08d}"
            b.create_run(rid, file="/x/trivial.flow", root_flow=rid,
                         meta={"mode": "flow", "flow": "one"})
            b.create_flow(rid, run_id=rid, name="one", state="running")
            b.flow_finished(rid, "ok", result={"ok": True, "repr": f"Ok({i})", "json": i})
        st.commit(b)
    st.close()


def bench_list(home: Path, runs: int, repeat: int = 7) -> dict:
    make_store(home, runs)
    env = _env(False)

    def cold(cmd: list[str]) -> float:
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            p = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
            times.append(time.perf_counter() - t0)
            assert p.returncode == 0, p.stderr
        return statistics.median(times) * 1000
    list_ms = cold([sys.executable, "-m", "flowmetal", "list", "--home", str(home)])
    floor_ms = cold([sys.executable, "-c", "pass"])
    return {"list_cold_ms": round(list_ms, 1), "python_floor_ms": round(floor_ms, 1),
            "list_runs_in_store": runs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency-n", type=int, default=300)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=10000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--sync", action=argparse.BooleanOptionalAction, default=True,
                    help="fsync every commit (the daemon's default)")
    a = ap.parse_args()
    out: dict = {"workers": a.workers, "sync": a.sync}
    with tempfile.TemporaryDirectory(prefix="fmb-", dir="/tmp") as tmp:
        home = Path(tmp) / "h"
        file = str(Path(tmp) / "trivial.flow")
        Path(file).write_text(TRIVIAL)
        d = start_daemon(home, a.workers, a.sync)
        try:
            r = bench_latency(home, file, a.latency_n)
            print(f"latency: p50 {r['latency_p50_ms']} ms, p99 {r['latency_p99_ms']} ms "
                  f"(DBOS ≈ 9 ms, Temporal dev ≈ 190 ms, Prefect ≈ 1 s)", flush=True)
            out.update(r)
            r = bench_throughput(home, file, a.n)
            print(f"throughput: {r['runs']} runs in {r['total_s']} s = "
                  f"{r['runs_per_s']} runs/s (submitted in {r['submit_s']} s)", flush=True)
            out.update(r)
        finally:
            stop_daemon(d)
        r = bench_list(Path(tmp) / "l", a.runs)
        print(f"list cold start with {a.runs} runs: {r['list_cold_ms']} ms "
              f"(bare python: {r['python_floor_ms']} ms)", flush=True)
        out.update(r)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
