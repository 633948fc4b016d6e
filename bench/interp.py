"""Interpreter speed: the same programs as Python under CPython and as Starlark
under Flowmetal, in one run. Prints a table and, last, one JSON object with the
per-program ratios (Starlark time / CPython time) and their geometric mean.

    python bench/interp.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flowmetal.starlark as sl  # noqa: E402

# Each program is valid Starlark and valid Python: a `main()` returning a value.
PROGRAMS = {
    "int_arith": """
def main():
    total = 0
    for i in range(300000):
        total += (i * i) % 7 - (i // 3) + (i & 15)
    return total
""",
    "bigint": """
def main():
    out = 0
    for _ in range(30):
        a, b = 0, 1
        for i in range(3000):
            a, b = b, a + b
        out += a % 1000003
    return out
""",
    "floats": """
def main():
    acc = 0.0
    n = 200000
    h = 1.0 / n
    for i in range(n):
        x = (i + 0.5) * h
        acc += 4.0 / (1.0 + x * x)
    return acc * h
""",
    "strings": """
def main():
    parts = []
    for i in range(20000):
        s = "item-%d" % i
        parts.append(s.upper().replace("ITEM", "x"))
    text = ",".join(parts)
    words = text.split(",")
    n = 0
    for w in words:
        if w.startswith("x-1"):
            n += len(w)
    return n + len(text.strip())
""",
    "dicts": """
def main():
    counts = {}
    for i in range(200000):
        k = i % 1000
        counts[k] = counts.get(k, 0) + 1
    total = 0
    for k, v in counts.items():
        total += k * v
    return total
""",
    "comprehensions": """
def main():
    total = 0
    for r in range(200):
        rows = [[x * y for x in range(50)] for y in range(20)]
        flat = [v for row in rows for v in row if v % 3 == 0]
        d = {i: i * i for i in range(100)}
        total += len(flat) + len(d)
    return total
""",
    "sort_key": """
def main():
    recs = [{"id": i, "score": (i * 7919) % 1000} for i in range(20000)]
    total = 0
    for _ in range(5):
        s = sorted(recs, key=lambda r: r["score"])
        total += s[0]["id"] + s[-1]["score"]
    return total
""",
    "closures": """
def make_adder(n):
    def add(x):
        return x + n
    return add

def main():
    adders = [make_adder(i) for i in range(10)]
    total = 0
    for i in range(30000):
        for a in adders:
            total = a(total) % 1000003
    return total
""",
    "calls": """
def fib(n):
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)

def main():
    return fib(23)
""",
    "records": """
def main():
    records = []
    for i in range(50000):
        records.append({"name": "user%d" % (i % 500), "amount": i % 97, "ok": i % 3 != 0})
    totals = {}
    for r in records:
        if r["ok"]:
            name = r["name"]
            totals[name] = totals.get(name, 0) + r["amount"]
    best = sorted(totals.items(), key=lambda kv: -kv[1])[:5]
    return [b[0] for b in best]
""",
}


def run_python(src: str):
    g: dict = {}
    exec(compile(src, "<py>", "exec"), g)
    return g["main"]


def run_starlark(src: str):
    g = sl.exec_file(src, "bench.star")
    return g["main"]


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    v = fn()
    return time.perf_counter() - t0, v


def suspension_cost(samples: int = 200) -> dict:
    """Size of a suspended program with small live state, and unpickle+resume time."""
    src = """
def work(n):
    acc = []
    for i in range(n):
        acc.append(act(i))
    return acc

result = work(3)
"""
    t = sl.start(src, "susp.star", predeclared={"act": _act})
    t.run()
    data = pickle.dumps(t)
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        th = pickle.loads(data)
        r = th.resume(1)
        times.append(time.perf_counter() - t0)
        assert isinstance(r, sl.Suspended), r
    return {"checkpoint_bytes": len(data), "resume_ms_median": statistics.median(times) * 1000}


def _act(x):
    raise sl.Suspend(x)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    ratios = {}
    for name, src in PROGRAMS.items():
        py_main, sl_main = run_python(src), run_starlark(src)
        py_times, sl_times = [], []
        for _ in range(args.repeat):
            tp, vp = timed(py_main)
            ts, vs = timed(sl_main)
            py_times.append(tp)
            sl_times.append(ts)
        if vp != vs:
            raise SystemExit(f"{name}: results differ: python {vp!r} starlark {vs!r}")
        r = statistics.median(sl_times) / statistics.median(py_times)
        ratios[name] = round(r, 3)
        print(f"{name:16} python {statistics.median(py_times)*1000:8.1f} ms   "
              f"starlark {statistics.median(sl_times)*1000:8.1f} ms   ratio {r:5.2f}")
    geo = math.exp(sum(math.log(r) for r in ratios.values()) / len(ratios))
    susp = suspension_cost()
    print(f"geometric mean ratio {geo:.2f}; checkpoint {susp['checkpoint_bytes']} bytes; "
          f"unpickle+resume {susp['resume_ms_median']:.3f} ms")
    print(json.dumps({"ratios": ratios, "geomean": round(geo, 3), **susp}))


if __name__ == "__main__":
    main()
