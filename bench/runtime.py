"""Runtime benchmarks (not part of the test suite): durable child calls, concurrent
steps, resume latency vs history length, memory of sleeping flows; DBOS as the
baseline when it is installed (``pip install -e '.[bench]'``).

    python bench/runtime.py [--n 2000] [--flows 1000] [--sleepers 10000] [--repeat 3]
                            [--workers 0,2] [--skip a,b,c,d,dbos]

(b) runs in-process and with worker processes (as the daemon runs flows), each
after a warm-up run in the same runtime.

(a), (b) and (c) run `--repeat` rounds (DBOS right after (a) in each round, so each
round has its own ratio); the figures are medians over rounds. (d) runs once, last.
Prints one line per figure and, last, all figures (and every round) as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

# bench/store.py (the store's benchmark) would shadow the `store` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

from actors import Runtime, result_of  # noqa: E402
from actors.memory import freeze_startup_objects  # noqa: E402
from store import Store  # noqa: E402

FLOWS = '''
def _noop_impl(fctx):
    return 1

noop = flow(implementation = _noop_impl)

def _seq_impl(fctx):
    t = 0
    for i in range(fctx.args.n):
        t += unwrap(noop())
    return t

seq = flow(implementation = _seq_impl, args = {"n": args.int()})

def _fan_impl(fctx):
    hs = [fctx.actions.run(seq, fctx.args.steps) for i in range(fctx.args.flows)]
    return len([r for r in fctx.actions.wait(hs) if is_ok(r)])

fan = flow(implementation = _fan_impl, args = {"flows": args.int(), "steps": args.int()})

def _then_sleep_impl(fctx):
    t = 0
    for i in range(fctx.args.n):
        t += unwrap(noop())
    sleep(fctx.args.seconds)
    return t

then_sleep = flow(implementation = _then_sleep_impl,
                  args = {"n": args.int(), "seconds": args.float()})

def _sleepers_impl(fctx):
    hs = [fctx.actions.run(then_sleep, 0, 3600.0) for i in range(fctx.args.count)]
    return len(fctx.actions.wait(hs))

sleepers = flow(implementation = _sleepers_impl, args = {"count": args.int()})
'''


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _run(rt: Runtime, file: Path, flow: str, args: dict, timeout: float = 600):
    rid = rt.create_run(str(file), file.read_text(), flow=flow,
                        args={k: str(v) for k, v in args.items()})
    return rid, rt.wait_run(rid, timeout)


def bench_sequential(home: Path, file: Path, n: int) -> float:
    st = Store.open(home, sync=True)
    with Runtime(st) as rt:
        freeze_startup_objects()   # as `flowmetal run` and the daemon do at start
        t0 = time.perf_counter()
        _, w = _run(rt, file, "seq", {"n": n})
        dt = time.perf_counter() - t0
    assert repr(result_of(w)) == f"Ok({n})", result_of(w)
    st.close()
    return n / dt


def bench_concurrent(home: Path, file: Path, flows: int, steps: int, workers: int,
                     sync: bool = True) -> float:
    st = Store.open(home, sync=sync)
    with Runtime(st, workers=workers) as rt:
        # Warm up first, as a daemon is: worker processes started (they spawn on first
        # use, importing everything) and the flow file compiled.
        _run(rt, file, "fan", {"flows": max(workers, 1) * 4, "steps": 1})
        freeze_startup_objects()   # as the daemon does at start (and its workers do)
        t0 = time.perf_counter()
        _, w = _run(rt, file, "fan", {"flows": flows, "steps": steps})
        dt = time.perf_counter() - t0
    assert repr(result_of(w)) == f"Ok({flows})", result_of(w)
    st.close()
    return flows * steps / dt


def bench_resume(home: Path, file: Path, steps: int, trials: int = 9) -> float:
    """Seconds from a cold runtime to the end of a flow that slept after `steps` calls:
    the least of `trials` resumes, each from its own copy of the same store (the
    figure is a few ms, so one sample is mostly scheduling noise)."""
    st = Store.open(home, sync=True)
    with Runtime(st) as rt:
        rid = rt.create_run(str(file), file.read_text(), flow="then_sleep",
                            args={"n": str(steps), "seconds": "3600"})
        while not st.timers(rid):
            time.sleep(0.01)
    timer = st.timers(rid)[0]
    st.close()
    best = float("inf")
    for i in range(trials):
        copy = home.with_name(f"{home.name}-t{i}")
        shutil.copytree(home, copy)
        for f in copy.rglob("*"):  # else the first commit's fsync writes the copy out
            if f.is_file():
                fd = os.open(f, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        # And let the file system finish with the copy (its journal, the writeback of
        # other files): a 12 MB copy's tail otherwise lands in the timed commit.
        os.sync()
        time.sleep(0.2)
        st = Store.open(copy, sync=True)
        t0 = time.perf_counter()
        with Runtime(st) as rt:
            rt.resume_run(rid)
            rt.deliver(rid, timer.seq, ("ok", None))  # the timer, as if it were due
            w = rt.wait_run(rid, 60)
            dt = time.perf_counter() - t0
        assert repr(result_of(w)) == f"Ok({steps})"
        st.close()
        best = min(best, dt)
    return best


def bench_sleepers(home: Path, file: Path, count: int) -> tuple[float, float]:
    st = Store.open(home, sync=False)
    before = _rss_mb()
    with Runtime(st) as rt:
        rt.create_run(str(file), file.read_text(), flow="sleepers",
                            args={"count": str(count)})
        t0 = time.perf_counter()
        while True:
            n = rt.timer.ask(("pending",))
            if n >= count:
                break
            time.sleep(0.2)
            if time.perf_counter() - t0 > 900:
                raise RuntimeError(f"only {n} sleeping after 900 s")
        time.sleep(0.5)
        rss = _rss_mb()
        live_actors = len(rt.actors)
    st.close()
    return rss, before, live_actors


_DBOS_WF = None


def bench_dbos(n: int, tmp: Path) -> float | None:
    """DBOS 3.x on SQLite: one workflow of `n` steps (each step a durable commit)."""
    global _DBOS_WF
    try:
        from dbos import DBOS, DBOSConfig
    except ImportError:
        return None
    db = tmp / f"dbos-{time.monotonic_ns()}.sqlite"
    config: DBOSConfig = {"name": "flowmetal-bench", "system_database_url": f"sqlite:///{db}"}
    DBOS(config=config)
    if _DBOS_WF is None:
        # Registered once per process: DBOS keeps its registry across destroy().
        @DBOS.step()
        def step(i: int) -> int:
            return 1

        @DBOS.workflow()
        def wf(n: int) -> int:
            return sum(step(i) for i in range(n))
        _DBOS_WF = wf

    DBOS.launch()
    try:
        t0 = time.perf_counter()
        assert _DBOS_WF(n) == n
        return n / (time.perf_counter() - t0)
    finally:
        DBOS.destroy()


def _median(xs: list) -> float:
    return statistics.median(xs) if xs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--flows", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--workers", default="0,2",
                    help="(b) once per worker count, comma-separated (0: in-process)")
    ap.add_argument("--sleepers", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=3,
                    help="rounds of (a)+DBOS, (b), (c); medians are reported")
    ap.add_argument("--skip", default="", help="comma-separated: a,b,c,d,dbos")
    opts = ap.parse_args()
    skip = set(opts.skip.split(","))
    rounds: dict[str, list] = {}

    def note(key: str, value: float) -> None:
        rounds.setdefault(key, []).append(value)

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        file = tmp / "bench.flow"
        file.write_text(FLOWS)
        for r in range(opts.repeat):
            tag = f"[{r + 1}/{opts.repeat}]"
            if "a" not in skip:
                a = bench_sequential(tmp / f"a{r}", file, opts.n)
                note("a_durable_calls_per_s", a)
                line = f"{tag} (a) sequential durable child calls: {a:.0f}/s"
                if "dbos" not in skip:
                    try:
                        dbos = bench_dbos(opts.n, tmp)
                    except Exception as e:  # noqa: BLE001 - the baseline is optional
                        print(f"    DBOS failed: {type(e).__name__}: {e}")
                        dbos = None
                    if dbos:
                        # The ratio of this round: both measured back to back.
                        note("dbos_steps_per_s", dbos)
                        note("a_ratio_vs_dbos", a / dbos)
                        line += f"; DBOS {dbos:.0f}/s; ratio {a / dbos:.2f}x"
                print(line, flush=True)
            if "b" not in skip:
                for n in [int(x) for x in opts.workers.split(",")]:
                    b = bench_concurrent(tmp / f"b{r}-{n}", file, opts.flows, opts.steps, n)
                    key = "b_concurrent_steps_per_s" + (f"_workers{n}" if n else "")
                    note(key, b)
                    where = f"{n} worker processes" if n else "in-process"
                    print(f"{tag} (b) {opts.flows} flows x {opts.steps} steps, {where}: "
                          f"{b:.0f} steps/s", flush=True)
            if "c" not in skip:
                short = bench_resume(tmp / f"c10-{r}", file, 10)
                long = bench_resume(tmp / f"c10k-{r}", file, 10000)
                note("c_resume_s_after_10", short)
                note("c_resume_s_after_10000", long)
                note("c_ratio", long / short)
                print(f"{tag} (c) resume after 10 steps {short:.4f} s, after 10,000 "
                      f"{long:.4f} s: ratio {long / short:.2f}", flush=True)
        figures: dict = {k: round(_median(v), 4 if k.startswith("c_resume") else 2)
                         for k, v in rounds.items()}
        for k in list(figures):
            if k.startswith(("a_durable", "dbos_steps", "b_concurrent")):
                figures[k] = round(figures[k])
        if rounds:
            print(f"medians of {opts.repeat}: " + ", ".join(f"{k} {v}" for k, v in figures.items()))
        if "d" not in skip:
            # Once, last: RSS never shrinks, so a second round would measure the first.
            rss, before, actors = bench_sleepers(tmp / "d", file, opts.sleepers)
            figures["d_sleepers"] = opts.sleepers
            figures["d_rss_mb"] = round(rss, 1)
            figures["d_rss_before_mb"] = round(before, 1)
            print(f"(d) {opts.sleepers} flows asleep: RSS {rss:.1f} MB "
                  f"(before {before:.1f} MB), live actors {actors}")
    figures["rounds"] = {k: [round(x, 4) for x in v] for k, v in rounds.items()}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
