"""Suspension at every kind of point: pickled, resumed (in this and in a fresh
process), and compared with an uninterrupted run of the same program."""

import os
import pickle
import subprocess
import sys
import textwrap

import cloudpickle
import pytest

import flowmetal.starlark as sl
from flowmetal.starlark import Done, Failed, Suspended

from . import suspend_host
from .suspend_host import act, answer, tools

PROGRAMS = {
    "for_loop": """
        total = 0
        for i in range(4):
            total += act(i)
        print(total)
    """,
    "while_loop_condition": """
        i = 0
        while act(i) < 40:
            i += 1
        print(i)
    """,
    "break_continue": """
        out = []
        for i in range(6):
            if i == 1:
                continue
            out.append(act(i))
            if i == 3:
                break
        print(out)
    """,
    "closure_sees_rebinding": """
        def outer():
            n = act(1)
            def get():
                return n
            n = act(2)
            return get() + act(get())
        print(outer())
    """,
    "lambda": """
        f = lambda x, y=2: act(x) + y
        print(f(3), f(4, y=act(0)))
    """,
    "comprehensions": """
        xs = [act(x) for x in range(5) if act(x) % 20 == 1]
        d = {str(k): act(k) for k in range(3)}
        nested = [[act(a) + b for b in range(2)] for a in range(2)]
        print(xs, d, nested)
    """,
    "recursion": """
        def fact(n):
            if n == 0:
                return 1
            return n * (act(fact(n - 1)) // 10)
        print(fact(5))
    """,
    "default_arguments": """
        def g(x, y = act(5), *, z = act(6)):
            return [x, y, z, act(x)]
        print(g(1), g(2, 3, z = 4))
    """,
    "star_args": """
        def h(*args, **kwargs):
            return act(len(args)) + act(len(kwargs))
        print(h(*[1, 2], **{"a": 1, "b": act(0)}))
    """,
    "conditional_and_short_circuit": """
        a = act(1) if act(0) else act(2)
        b = act(0) and act(1)
        c = 0 and act(1)
        d = act(0) or act(3)
        e = None or act(4)
        print(a, b, c, d, e)
    """,
    "nested_calls": """
        print(act(act(act(1))))
    """,
    "top_level": """
        x = act(1)
        y = [x, act(2)]
        if act(3) > 0:
            z = act(4)
        print(x, y, z)
    """,
    "aliasing": """
        def f():
            a = [1]
            b = a
            act(0)
            b.append(2)
            return a
        print(f())
    """,
    "method_call_on_struct": """
        def f(t):
            return [t.act(i) for i in range(3)]
        print(f(tools))
    """,
    "function_in_container": """
        def f(x):
            return act(x)
        fs = {"f": f, "g": lambda y: f(y) + act(y)}
        print(fs["f"](1), fs["g"](2))
    """,
    "seed_retry": """
        def sleep(duration):
            act(duration)

        def retry(subflow, should_retry = None, limit = 3,
                  backoff = lambda count: 2 * count * count):
            def _inner(*args, limit = limit, should_retry = should_retry,
                       backoff = backoff, **kwargs):
                result = None
                for count in range(limit):
                    result = subflow(*args, **kwargs)
                    if result == "ok":
                        return result
                    if should_retry:
                        if not should_retry(result):
                            return result
                    sleep(backoff(count))
                return result
            return _inner

        attempts = []
        def check(x):
            attempts.append(act(x))
            return "bad"

        print(retry(check)(7), attempts)
    """,
    "loop_var_closure": """
        fs = []
        for i in range(3):
            fs.append(lambda: i)
            act(i)
        print([f() for f in fs])
    """,
    "dict_iteration": """
        d = {"a": 1, "b": 2, "c": 3}
        out = []
        for k, v in d.items():
            out.append((k, act(v)))
        for k in d:
            out.append(act(k))
        print(out)
    """,
}



def _elif_chain(n: int) -> str:
    # Longer than CPython's ~100 levels of indentation if each `elif` nested one
    # deeper in the generated code (it did: "program too complex"); suspends inside
    # branches early and late in the chain, in a function and at top level.
    body = ["def pick(x):"]
    for i in range(n):
        body += [f"    {'if' if i == 0 else 'elif'} x == {i}:", f"        return act({i}) + {i}"]
    body += ["    else:", "        return act(-1)", "out = []",
             "for x in (0, 1, 57, 149, 150, 7):", "    out.append(pick(x))", "print(out)",
             "y = 140"]
    for i in range(n):
        body += [f"{'if' if i == 0 else 'elif'} y == {i}:", f"    print(act({i}))"]
    body += ["else:", "    print('none')"]
    return "\n".join(body) + "\n"


PROGRAMS["long_elif_chain"] = _elif_chain(150)


def _operator_chains(n: int) -> str:
    # Chains of n operators in one expression (the generated code nested one call per
    # operator: "program too complex" past ~200), with suspends early, in the middle
    # and last, in a function and at top level, mixed with operators of higher
    # precedence and string concatenation.
    terms = " + ".join(f"act({i})" if i in (0, n // 2, n - 1) else f"{i} * 2"
                       for i in range(n))
    words = " + ".join(f'"{i % 10}"' if i != n // 3 else "str(act(7))" for i in range(n))
    return (f"def total():\n    return {terms}\n"
            f"s = {words}\n"
            f"print(total(), len(s), s[:12], {' - '.join(['1'] * n)})\n")


PROGRAMS["long_operator_chains"] = _operator_chains(450)


def _run(src, suspend, roundtrip=pickle):
    suspend_host.MODE["suspend"] = suspend
    lines = []
    try:
        t = sl.start(textwrap.dedent(src), "prog.star",
                     predeclared={"act": act, "tools": tools}, print=lines.append)
        r = t.run()
        steps = 0
        while isinstance(r, Suspended):
            steps += 1
            t = roundtrip.loads(roundtrip.dumps(t))
            t.print = lines.append
            r = t.resume(answer(r.request))
        return r, lines, steps
    finally:
        suspend_host.MODE["suspend"] = False


@pytest.mark.parametrize("name", sorted(PROGRAMS))
@pytest.mark.parametrize("roundtrip", [pickle, cloudpickle], ids=["pickle", "cloudpickle"])
def test_suspended_run_matches_direct_run(name, roundtrip):
    direct, direct_lines, _ = _run(PROGRAMS[name], False)
    assert isinstance(direct, Done), direct
    resumed, lines, steps = _run(PROGRAMS[name], True, roundtrip)
    assert isinstance(resumed, Done), resumed
    assert steps > 0
    assert lines == direct_lines
    assert sorted(resumed.value) == sorted(direct.value)


def test_expected_outputs():
    _, lines, _ = _run(PROGRAMS["closure_sees_rebinding"], True)
    assert lines == ["232"]
    _, lines, _ = _run(PROGRAMS["aliasing"], True)
    assert lines == ["[1, 2]"]
    _, lines, _ = _run(PROGRAMS["conditional_and_short_circuit"], True)
    assert lines == ["11 11 0 1 41"]
    _, lines, _ = _run(PROGRAMS["loop_var_closure"], True)
    assert lines == ["[2, 2, 2]"]
    _, lines, _ = _run(PROGRAMS["long_elif_chain"], True)
    assert lines == ["[1, 12, 628, 1640, -9, 78]", "1401"]
    n = 450
    _, lines, steps = _run(PROGRAMS["long_operator_chains"], True)
    total = sum(2 * i for i in range(n) if i not in (0, n // 2, n - 1)) + \
        answer(0) + answer(n // 2) + answer(n - 1)
    assert lines == [f"{total} {n - 1 + len(str(answer(7)))} 012345678901 {2 - n}"]
    assert steps == 4


def test_checkpoint_holds_no_code_objects():
    suspend_host.MODE["suspend"] = True
    try:
        t = sl.start("def f(x):\n    return act(x)\ny = f(1)\n", "p.star", predeclared={"act": act})
        assert isinstance(t.run(), Suspended)
    finally:
        suspend_host.MODE["suspend"] = False
    data = pickle.dumps(t)
    assert b"code" not in pickle.loads.__module__.encode()  # sanity of the import
    ops = [op.name for op, _, _ in __import__("pickletools").genops(data)]
    assert "GLOBAL" in ops or "STACK_GLOBAL" in ops
    inner = pickle.loads(data)
    assert isinstance(inner, sl.Thread)
    # No marshal/code reconstruction anywhere in the payload.
    assert b"CodeType" not in data and b"_make_code" not in data and b"marshal" not in data


def test_suspend_inside_sorted_key_is_a_clear_error():
    suspend_host.MODE["suspend"] = True
    try:
        t = sl.start("x = sorted([3, 1, 2], key = lambda v: act(v))\n", "p.star",
                     predeclared={"act": act})
        r = t.run()
    finally:
        suspend_host.MODE["suspend"] = False
    assert isinstance(r, Failed)
    assert "suspend" in r.error.msg


def test_resume_error_raises_at_the_call_with_a_traceback():
    suspend_host.MODE["suspend"] = True
    try:
        t = sl.start("def f():\n    return act(1)\n\nx = f()\n", "p.star", predeclared={"act": act})
        assert isinstance(t.run(), Suspended)
        r = pickle.loads(pickle.dumps(t)).resume_error("boom")
    finally:
        suspend_host.MODE["suspend"] = False
    assert isinstance(r, Failed)
    assert r.error.msg == "boom"
    text = str(r.error)
    assert "p.star:4:5 in <toplevel>" in text and "p.star:2:12 in f" in text


def test_mutation_during_iteration_is_still_an_error_after_resume():
    suspend_host.MODE["suspend"] = True
    try:
        t = sl.start("def f():\n    l = [1, 2]\n    for x in l:\n        act(x)\n        l.append(3)\n\nf()\n",
                     "p.star", predeclared={"act": act})
        r = t.run()
        r = pickle.loads(pickle.dumps(t)).resume(1)
    finally:
        suspend_host.MODE["suspend"] = False
    assert isinstance(r, Failed)
    assert "iteration" in r.error.msg


def _run_parked(src, capture_every=0):
    """Run `src` with `act` parking; every `capture_every`-th suspension is captured
    and pickled instead (0: never). Returns (result, lines, suspensions, parked)."""
    suspend_host.MODE["park"] = True
    lines = []
    parked = 0
    try:
        t = sl.start(textwrap.dedent(src), "prog.star",
                     predeclared={"act": act, "tools": tools}, print=lines.append)
        t.parkable = True
        r = t.run()
        steps = 0
        while isinstance(r, Suspended):
            steps += 1
            if t.status == "parked":
                parked += 1
                assert t.frames is None   # nothing captured
                if capture_every and steps % capture_every == 0:
                    t.capture()
                    assert t.status == "suspended" and t.frames
                    t = pickle.loads(pickle.dumps(t))
                    t.parkable = True
                    t.print = lines.append
            r = t.resume(answer(r.request))
        return r, lines, steps, parked
    finally:
        suspend_host.MODE["park"] = False


@pytest.mark.parametrize("name", sorted(PROGRAMS))
@pytest.mark.parametrize("capture_every", [0, 2], ids=["parked", "captured-every-2nd"])
def test_parked_run_matches_direct_run(name, capture_every):
    direct, direct_lines, _ = _run(PROGRAMS[name], False)
    r, lines, steps, parked = _run_parked(PROGRAMS[name], capture_every)
    assert isinstance(r, Done), r
    assert steps > 0 and parked > 0
    assert lines == direct_lines
    assert sorted(r.value) == sorted(direct.value)


def test_park_off_a_parkable_thread_or_in_a_host_callback_suspends_as_before():
    suspend_host.MODE["park"] = True
    try:
        t = sl.start("x = act(1)\n", "p.star", predeclared={"act": act})
        r = t.run()   # not parkable: an ordinary suspension
        assert isinstance(r, Suspended) and t.status == "suspended" and t.frames
        for src in ["x = sorted([3, 1, 2], key = lambda v: act(v))\n",
                    "def f(v):\n    return act(v)\nx = sorted([3, 1, 2], key = f)\n"]:
            suspend_host.MODE["park"] = True
            t = sl.start(src, "p.star", predeclared={"act": act})
            t.parkable = True
            parked = t.run()
            suspend_host.MODE["park"] = False
            suspend_host.MODE["suspend"] = True
            raised = sl.start(src, "p.star", predeclared={"act": act}).run()
            suspend_host.MODE["suspend"] = False
            # The error a suspension there gives, not a park.
            assert isinstance(parked, Failed) and isinstance(raised, Failed)
            assert parked.error.msg == raised.error.msg
            assert "suspend" in parked.error.msg
    finally:
        suspend_host.MODE["park"] = suspend_host.MODE["suspend"] = False


def test_parked_thread_resume_error_has_a_traceback_and_locks_hold_while_parked():
    suspend_host.MODE["park"] = True
    try:
        t = sl.start("def f():\n    return act(1)\n\nx = f()\n", "p.star", predeclared={"act": act})
        t.parkable = True
        assert isinstance(t.run(), Suspended) and t.status == "parked"
        r = t.resume_error("boom")
        assert isinstance(r, Failed) and r.error.msg == "boom"
        assert "p.star:4:5 in <toplevel>" in str(r.error) and "p.star:2:12 in f" in str(r.error)
        t = sl.start("def f():\n    l = [1, 2]\n    for x in l:\n        act(x)\n        l.append(3)\n\nf()\n",
                     "p.star", predeclared={"act": act})
        t.parkable = True
        t.run()
        r = t.resume(1)
    finally:
        suspend_host.MODE["park"] = False
    assert isinstance(r, Failed) and "iteration" in r.error.msg


def test_parked_thread_pickles_only_once_captured_and_resumes_only_on_its_os_thread():
    import threading
    suspend_host.MODE["park"] = True
    try:
        t = sl.start("x = act(1) + act(2)\n", "p.star", predeclared={"act": act})
        t.parkable = True
        assert isinstance(t.run(), Suspended)
        with pytest.raises(pickle.PicklingError):
            pickle.dumps(t)
        errors = []

        def other():
            try:
                t.resume(5)
            except RuntimeError as e:
                errors.append(str(e))
        th = threading.Thread(target=other)
        th.start()
        th.join()
        assert errors and "OS thread it parked on" in errors[0]
        assert t.status == "parked"   # still there, on its own thread
        r = t.resume(5)
        assert isinstance(r, Suspended) and r.request == 2
        t.capture()
        t = pickle.loads(pickle.dumps(t))
        r = t.resume(7)
    finally:
        suspend_host.MODE["park"] = False
    assert isinstance(r, Done) and r.value["x"] == 12


DRIVER = r"""
import pickle, sys
sys.path.insert(0, sys.argv[3])
import flowmetal.starlark as sl
from tests.starlark import suspend_host
t = pickle.load(open(sys.argv[1], "rb"))
lines = []
t.print = lines.append
suspend_host.MODE["suspend"] = True
r = t.resume(suspend_host.answer(pickle.loads(bytes.fromhex(sys.argv[2]))))
with open(sys.argv[1], "wb") as f:
    pickle.dump(t, f)
print(repr(("suspended", r.request) if isinstance(r, sl.Suspended) else
           ("done", sorted(r.value)) if isinstance(r, sl.Done) else ("failed", str(r.error))))
for l in lines:
    print(l)
"""


@pytest.mark.parametrize("name", ["for_loop", "closure_sees_rebinding", "seed_retry", "comprehensions"])
def test_resume_in_fresh_processes(name, tmp_path):
    """Each step runs in a new Python process that only has the pickle."""
    direct, direct_lines, _ = _run(PROGRAMS[name], False)
    suspend_host.MODE["suspend"] = True
    try:
        lines = []
        t = sl.start(textwrap.dedent(PROGRAMS[name]), "prog.star",
                     predeclared={"act": act, "tools": tools}, print=lines.append)
        r = t.run()
    finally:
        suspend_host.MODE["suspend"] = False
    ckpt = tmp_path / "ckpt"
    ckpt.write_bytes(pickle.dumps(t))
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    request = r.request
    for _ in range(20):
        proc = subprocess.run([sys.executable, "-c", DRIVER, str(ckpt), pickle.dumps(request).hex(), root],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        head, *printed = proc.stdout.splitlines()
        lines.extend(printed)
        kind, payload = eval(head)
        if kind != "suspended":
            break
        request = payload
    assert kind == "done", payload
    assert lines == direct_lines


def test_suspended_stack_names_frames_positions_and_locals():
    suspend_host.MODE["suspend"] = True
    try:
        t = sl.start("def outer(n):\n    items = [n, n + 1]\n    return inner(items)\n\n"
                     "def inner(xs):\n    total = 0\n    for x in xs:\n        total += act(x)\n    return total\n\n"
                     "r = outer(4)\n", "stk.star", predeclared={"act": act})
        assert isinstance(t.run(), Suspended)
    finally:
        suspend_host.MODE["suspend"] = False
    t = pickle.loads(pickle.dumps(t))
    frames = t.stack()
    assert [f.function_name() for f in frames] == ["<toplevel>", "outer", "inner"]
    assert [f.position()[1:] for f in frames] == [(11, 5), (3, 12), (8, 18)]
    assert frames[1].starlark_locals() == {"n": 4, "items": [4, 5]}
    assert frames[2].starlark_locals() == {"xs": [4, 5], "total": 0, "x": 4}


def test_pickler_names_importable_functions_like_cloudpickle_and_notices_rebinding():
    import types
    from flowmetal.starlark.thread import Pickler

    def plain(value):
        # cloudpickle's own decision for every object (no cache of ours)
        buf = __import__("io").BytesIO()
        cloudpickle.Pickler(buf, protocol=5).dump(value)
        return buf.getvalue()

    def ours(value):
        buf = __import__("io").BytesIO()
        Pickler(buf, protocol=5).dump(value)
        return buf.getvalue()
    mod = types.ModuleType("fm_rebind_probe")
    exec("def f(x):\n    return x + 1\nclass C:\n    pass\n", mod.__dict__)
    sys.modules[mod.__name__] = mod
    try:
        value = [mod.f, mod.C, os.path.join, pickle.dumps, len, sl.start, (lambda: 3)]
        for _ in range(2):   # the second time from the cache: the same bytes
            assert ours(value) == plain(value)
        old_f, old_c = mod.f, mod.C
        exec("def f(x):\n    return x + 2\nclass C:\n    pass\n", mod.__dict__)
        # No longer importable under their names: pickled by value, as cloudpickle does.
        back = pickle.loads(ours([old_f, old_c]))
        assert back[0](1) == 2 and back[1] is not mod.C
        assert ours([mod.f]) == plain([mod.f])
    finally:
        del sys.modules[mod.__name__]


def _suspended_thread(src: str, filename: str) -> sl.Thread:
    suspend_host.MODE["suspend"] = True
    try:
        t = sl.start(src, filename, predeclared={"act": act})
        assert isinstance(t.run(), Suspended)
    finally:
        suspend_host.MODE["suspend"] = False
    return t


def _forget_compiled(monkeypatch):
    """This process has compiled nothing: a source comes only from the resolver."""
    from flowmetal.starlark import thread as th
    monkeypatch.setattr(th, "_CACHE", {})
    monkeypatch.setattr(th, "_BY_REF", {})


def test_module_sources_pickle_modules_by_hash_and_resolve_them(monkeypatch):
    import hashlib
    marker = "# " + "a comment only the source has " * 40
    src = f"{marker}\ndef f(x):\n    return act(x) + 1\ny = f(2)\nprint(y)\n"
    t = _suspended_thread(src, "byref.star")
    inline = pickle.dumps(t)
    sink = {}
    with sl.module_sources(sink=sink):
        data = pickle.dumps(t)
    assert marker.encode() in inline and marker.encode() not in data
    assert len(data) < len(inline) // 2
    h = hashlib.sha256(src.encode()).hexdigest()
    assert sink == {h: src.encode()}

    _forget_compiled(monkeypatch)
    asked = []

    def resolve(ref):
        asked.append(ref)
        return sink.get(ref)

    with sl.module_sources(resolve=resolve):
        t2 = pickle.loads(data)
    assert asked == [h]
    lines = []
    t2.print = lines.append
    assert isinstance(t2.resume(answer(2)), Done)
    assert lines == [str(answer(2) + 1)]
    # Loaded once, this process knows the module: no second look-up.
    with sl.module_sources(resolve=resolve):
        pickle.loads(data)
    assert asked == [h]


def test_a_module_whose_source_is_missing_or_altered_is_a_clear_error(monkeypatch):
    t = _suspended_thread("y = act(1)\n", "gone.star")
    sink = {}
    with sl.module_sources(sink=sink):
        data = pickle.dumps(t)
    _forget_compiled(monkeypatch)
    with pytest.raises(sl.StarlarkError, match=r"source of module gone.star .* is not stored"):
        pickle.loads(data)   # no resolver at all
    with sl.module_sources(resolve=lambda ref: None):
        with pytest.raises(sl.StarlarkError, match="is not stored"):
            pickle.loads(data)
    with sl.module_sources(resolve=lambda ref: b"y = act(2)\n"):
        with pytest.raises(sl.StarlarkError, match="does not match its hash"):
            pickle.loads(data)
    # An inline pickle (made outside `module_sources`) needs no resolver.
    assert isinstance(pickle.loads(pickle.dumps(t)), sl.Thread)


def test_suspending_in_a_loop_costs_no_budget_beyond_its_iterations():
    # Each suspension unwinds the loop's frame; the steps it drew and had not taken
    # go back to the budget (before, up to 255 were lost per suspension).
    src = "t = 0\nfor i in range(2000):\n    t += act(i)\n"
    suspend_host.MODE["suspend"] = True
    try:
        t = sl.start(src, "loop.star", predeclared={"act": act}, max_steps=2000)
        r = t.run()
        n = 0
        while isinstance(r, Suspended):
            n += 1
            t = pickle.loads(pickle.dumps(t))
            r = t.resume(answer(r.request))
    finally:
        suspend_host.MODE["suspend"] = False
    assert isinstance(r, Done), r
    assert n == 2000


@pytest.mark.parametrize("mode", ["suspend", "park"])
def test_a_suspension_too_deep_to_resume_is_refused_and_one_at_the_bound_resumes(mode):
    # Review: 3,000 frames deep a suspension was checkpointed (and its action done),
    # but the re-entry of its stack needs ~3 Python frames per Starlark frame and
    # failed with "maximum call depth exceeded" at every resume.
    from flowmetal.starlark.thread import MAX_SUSPENDED_DEPTH
    src = "def f(n):\n    if n == 0:\n        return act(1)\n    return 1 + f(n - 1)\n\n" \
          "x = f(N)\n"
    for depth, ok in [(MAX_SUSPENDED_DEPTH - 2, True), (MAX_SUSPENDED_DEPTH + 50, False)]:
        suspend_host.MODE[mode] = True
        try:
            t = sl.start(src.replace("N", str(depth)), "p.star", predeclared={"act": act})
            t.parkable = mode == "park"
            r = t.run()
            if not ok:
                assert isinstance(r, Failed), r
                assert r.error.msg == (f"cannot suspend {depth + 2} Starlark frames deep (at "
                                       f"most {MAX_SUSPENDED_DEPTH}): its checkpoint could not "
                                       f"be resumed")
                continue
            assert isinstance(r, Suspended)
            if t.status == "parked":
                t.capture()
            r = pickle.loads(pickle.dumps(t)).resume(7)
        finally:
            suspend_host.MODE[mode] = False
        assert isinstance(r, Done), r
        assert r.value["x"] == depth + 7
