"""Conformance: the error model. Error classes, positions, the Starlark
traceback in str(err), syntax-error rendering (file:line:col, source line,
caret), and the resource limits that must end in a clean StarlarkError
(step budget, recursion, huge allocations)."""

import contextlib
import textwrap
import threading
import time

import pytest


def _vm_size() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@contextlib.contextmanager
def memory_cap(extra: int = 2 << 30):
    """Cap this process's address space to its current size + `extra` while the block runs,
    so that an unbounded allocation raises MemoryError here instead of OOM-killing the machine."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    current = _vm_size()
    if not current:
        yield
        return
    cap = current + extra
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    if soft != resource.RLIM_INFINITY:
        cap = min(cap, soft)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))

def _budget(steps=2_000_000):
    import inspect

    import flowmetal.starlark as sl

    return {"max_steps": steps} if "max_steps" in inspect.signature(sl.exec_file).parameters else {}


# ---- classes ------------------------------------------------------------------------------


def test_error_class_hierarchy(sl):
    assert issubclass(sl.StarlarkSyntaxError, sl.StarlarkError)
    assert issubclass(sl.ResolveError, sl.StarlarkError)
    assert issubclass(sl.EvalError, sl.StarlarkError)
    assert issubclass(sl.StarlarkError, Exception)


@pytest.mark.parametrize("src,cls", [
    ("x = (\n", "StarlarkSyntaxError"),
    ("x = y\n", "ResolveError"),
    ("x = 1 // 0\n", "EvalError"),
    ("x = [][0]\n", "EvalError"),
    ("x = {}['k']\n", "EvalError"),
    ("x = {[]: 1}\n", "EvalError"),
    ("x = 1 < 'a'\n", "EvalError"),
    ("x = True + 1\n", "EvalError"),
    ("x = None.attr\n", "EvalError"),
    ("x = 'a'.nope()\n", "EvalError"),
    ("x = len(1)\n", "EvalError"),
    ("fail('f')\n", "EvalError"),
])
def test_error_classes(sl, src, cls):
    with pytest.raises(sl.StarlarkError) as info:
        sl.exec_file(src, "c.star")
    assert type(info.value).__name__ == cls or isinstance(info.value, getattr(sl, cls)), \
        f"want {cls}, got {type(info.value).__name__}: {info.value}"


# ---- positions and tracebacks -------------------------------------------------------------


def test_runtime_error_position_and_bare_message(sl):
    with pytest.raises(sl.EvalError) as info:
        sl.exec_file("x = 1\ny = x // 0\n", "t.star")
    err = info.value
    assert err.filename == "t.star"
    assert err.line == 2
    assert err.col >= 1
    assert "t.star:2:" not in err.msg   # .msg is the bare message
    assert "t.star:2:" in str(err)


def test_traceback_lists_every_frame(sl):
    src = textwrap.dedent("""\
        def inner(x):
            return 1 // x

        def outer():
            return inner(0)

        outer()
        """)
    with pytest.raises(sl.EvalError) as info:
        sl.exec_file(src, "tb.star")
    text = str(info.value)
    assert "tb.star:2:" in text and "in inner" in text
    assert "tb.star:5:" in text and "in outer" in text
    assert "tb.star:7:" in text
    # most recent call last
    assert text.index("tb.star:7:") < text.index("tb.star:5:") < text.index("tb.star:2:")
    assert info.value.line == 2 and info.value.filename == "tb.star"


def test_traceback_through_lambda_and_comprehension(sl):
    src = "f = lambda x: [1 // v for v in x]\ndef g():\n    return f([1, 0])\ng()\n"
    with pytest.raises(sl.EvalError) as info:
        sl.exec_file(src, "lc.star")
    text = str(info.value)
    assert "lc.star:1:" in text and "lc.star:3:" in text and "lc.star:4:" in text
    assert "in g" in text


def test_traceback_across_loaded_modules(sl):
    lib = sl.exec_file("def boom():\n    return {}['missing']\n", "lib.star")
    with pytest.raises(sl.EvalError) as info:
        sl.exec_file('load("lib.star", "boom")\n\nboom()\n', "main.star", loader=lambda name: lib)
    text = str(info.value)
    assert "lib.star:2:" in text and "in boom" in text
    assert "main.star:3:" in text


def test_error_from_python_called_function_has_traceback(sl):
    g = sl.exec_file("def f(x):\n    return g(x)\ndef g(x):\n    return x[3]\n", "py.star")
    with pytest.raises(sl.EvalError) as info:
        g["f"]([1])
    text = str(info.value)
    assert "py.star:4:" in text and "py.star:2:" in text


def test_host_exception_message_and_position(sl):
    def host(x):
        raise RuntimeError("host says no")

    with pytest.raises(sl.StarlarkError) as info:
        sl.exec_file("a = 1\nb = host(a)\n", "h.star", predeclared={"host": host})
    err = info.value
    assert "host says no" in err.msg
    assert err.line == 2 and err.filename == "h.star"


@pytest.mark.parametrize("exc", [ValueError("v"), TypeError("t"), KeyError("k"), IndexError("i"),
                                 ZeroDivisionError("z"), AttributeError("a"), OverflowError("o"),
                                 RecursionError("r"), AssertionError("as")])
def test_any_host_exception_becomes_starlark_error(sl, exc):
    def host():
        raise exc

    with pytest.raises(sl.StarlarkError):
        sl.exec_file("host()\n", predeclared={"host": host})


# ---- syntax errors --------------------------------------------------------------------------


def test_misindented_return_is_syntax_error_at_that_line(sl):
    src = (
        "def retry(subflow):\n"
        "    def _inner(*args):\n"
        "        return subflow(*args)\n"
        "\n"
        "   return _inner\n"
        "\n"
        "x = 1\n"
    )
    with pytest.raises(sl.StarlarkSyntaxError) as info:
        sl.exec_file(src, "etl.flow")
    err = info.value
    assert err.filename == "etl.flow"
    assert err.line == 5
    text = str(err)
    assert "etl.flow:5:" in text
    assert "return _inner" in text
    assert "^" in text


def test_syntax_error_rendering(sl):
    with pytest.raises(sl.StarlarkSyntaxError) as info:
        sl.exec_file("a = 1\nb = = 2\nc = 3\n", "s.star")
    err = info.value
    assert (err.filename, err.line) == ("s.star", 2)
    assert err.col >= 1
    text = str(err)
    assert f"s.star:2:{err.col}" in text
    lines = text.splitlines()
    src_idx = next(i for i, l in enumerate(lines) if "b = = 2" in l)
    caret_line = lines[src_idx + 1]
    assert caret_line.strip() == "^"
    # the caret sits under the column the error reports
    src_line = lines[src_idx]
    assert caret_line.index("^") - src_line.index("b") == err.col - 1


@pytest.mark.parametrize("src,lines", [
    ("x = 'unterminated\n", (1,)),
    ("\n\nx = (1,\n     2\ny = 3\n", (3, 5)),     # the unclosed bracket, or the token that cannot follow
    ("def f():\n    return 1\n  x = 2\n", (3,)),
    ("x = 1\nif x\n    pass\n", (2,)),
    ("x = 1\ndef f():\n\treturn 1\n", (3,)),
])
def test_syntax_error_lines(sl, src, lines):
    with pytest.raises(sl.StarlarkSyntaxError) as info:
        sl.exec_file(src, "l.star")
    line = info.value.line
    assert line in lines, str(info.value)
    assert info.value.filename == "l.star"
    assert f"l.star:{line}:" in str(info.value)


def test_resolve_error_position(sl):
    with pytest.raises(sl.ResolveError) as info:
        sl.exec_file("x = 1\n\ndef f():\n    return x + undefined_y\n", "r.star")
    err = info.value
    assert (err.filename, err.line) == ("r.star", 4)
    assert err.col == len("    return x + ") + 1
    assert "undefined_y" in err.msg
    assert "r.star:4:" in str(err)


def test_eval_expr_errors(sl):
    with pytest.raises(sl.StarlarkSyntaxError):
        sl.eval_expr("1 +")
    with pytest.raises(sl.ResolveError):
        sl.eval_expr("nope + 1")
    with pytest.raises(sl.EvalError):
        sl.eval_expr("1 // 0")


def test_errors_are_exceptions_with_plain_str(sl):
    with pytest.raises(sl.StarlarkError) as info:
        sl.exec_file("x = [1][2]\n", "i.star")
    assert isinstance(str(info.value), str) and "i.star" in str(info.value)
    assert isinstance(info.value.msg, str) and info.value.msg


# ---- limits ---------------------------------------------------------------------------------


def _run_guarded(fn, seconds):
    """Run fn() in a thread; fail if it does not finish in `seconds`. Returns the exception raised."""
    box = {}

    def target():
        try:
            fn()
            box["result"] = "returned"
        except BaseException as e:  # noqa: BLE001 - we classify below
            box["exc"] = e

    t = threading.Thread(target=target, daemon=True)
    start = time.monotonic()
    with memory_cap():
        t.start()
        t.join(seconds)
        alive = t.is_alive()
    assert not alive, f"did not finish within {seconds}s (a hang)"
    return box.get("exc"), time.monotonic() - start


def _must_fail_cleanly(sl, src, seconds=60, **kw):
    exc, elapsed = _run_guarded(lambda: sl.exec_file(textwrap.dedent(src), "limit.star", **kw), seconds)
    assert exc is not None, "the program completed instead of hitting a limit"
    assert isinstance(exc, sl.StarlarkError), f"{type(exc).__name__}: {exc}"
    # A limit must stop the program before the host runs out of memory: an error that merely
    # wraps the MemoryError raised under this test's address-space cap does not count.
    for inner in (exc.__cause__, exc.__context__):
        assert not isinstance(inner, MemoryError), \
            f"stopped only by running out of memory ({elapsed:.1f}s): {exc.msg}"
    if kw.get("max_steps"):
        assert elapsed < 20, f"a {kw['max_steps']}-step budget took {elapsed:.1f}s to stop the program"
    return exc, elapsed


def test_step_budget_stops_infinite_while_loop(sl):
    _must_fail_cleanly(sl, "while True:\n    pass\n", **_budget(100_000))


def test_step_budget_stops_infinite_loop_in_function(sl):
    _must_fail_cleanly(sl, """
    def spin():
        n = 0
        while True:
            n += 1
    spin()
    """, **_budget(100_000))


def test_default_step_budget_stops_infinite_loop(sl):
    # No explicit budget: the default (~10 s of work) must still end it.
    exc, elapsed = _must_fail_cleanly(sl, "while True:\n    pass\n", seconds=120)
    assert elapsed < 60


def test_step_budget_counts_nested_loops(sl):
    _must_fail_cleanly(sl, """
    def f():
        for i in range(1 << 30):
            for j in range(1 << 30):
                pass
    f()
    """, **_budget(100_000))


def test_step_budget_is_large_enough_for_ordinary_work(sl):
    g = sl.exec_file("def f():\n    t = 0\n    for i in range(100000):\n        t += i\n    return t\nx = f()\n")
    assert g["x"] == sum(range(100000))


def test_small_budget_rejects_what_a_large_one_allows(sl):
    if not _budget():
        pytest.skip("exec_file has no max_steps")
    src = "def f():\n    t = 0\n    for i in range(50000):\n        t += i\n    return t\nx = f()\n"
    assert sl.exec_file(src, max_steps=10_000_000)["x"] == sum(range(50000))
    with pytest.raises(sl.StarlarkError):
        sl.exec_file(src, max_steps=1_000)


def test_budget_exhaustion_via_comprehension_and_builtins(sl):
    _must_fail_cleanly(sl, "x = [i for i in range(1 << 40)]\n", **_budget(100_000))


@pytest.mark.parametrize("src", [
    "def f():\n    return f()\nf()\n",
    "def f(n):\n    return f(n + 1) + 1\nf(0)\n",
    "def a():\n    return b()\ndef b():\n    return a()\na()\n",
    "f = lambda: f()\nf()\n",
    "def f(x):\n    return [f(y) for y in [x]]\nf(1)\n",
    "def f(d):\n    return {k: f(d) for k in d}\nf({'a': 1})\n",
    "def f():\n    return sorted([1, 2], key=lambda x: f())\nf()\n",
])
def test_infinite_recursion(sl, src):
    _must_fail_cleanly(sl, src, **_budget())


@pytest.mark.parametrize("src", [
    'x = "x" * (1 << 40)\n',
    'x = (1 << 40) * "x"\n',
    'x = b"x" * (1 << 40)\n',
    'x = [0] * (1 << 40)\n',
    'x = (0,) * (1 << 40)\n',
    'x = list(range(1 << 40))\n',
    'x = tuple(range(1 << 40))\n',
    'x = sorted(range(1 << 40))\n',
    'x = [1, 2] * (1 << 62)\n',
    'x = "ab" * (1 << 62)\n',
    'x = 1 << (1 << 40)\n',
    'x = (1 << 100) << (1 << 40)\n',
    """
    def f():
        s = "x"
        for i in range(64):
            s = s + s
        return len(s)
    x = f()
    """,
    """
    def f():
        s = "x"
        for i in range(64):
            s += s
        return len(s)
    x = f()
    """,
    """
    def f():
        l = [0]
        for i in range(64):
            l.extend(l)
        return len(l)
    x = f()
    """,
    """
    def f():
        l = [0]
        for i in range(64):
            l = l + l
        return len(l)
    x = f()
    """,
    """
    def f():
        b = b"x"
        for i in range(64):
            b = b + b
        return len(b)
    x = f()
    """,
    """
    def f():
        s = "x"
        for i in range(64):
            s = ",".join([s, s])
        return len(s)
    x = f()
    """,
    """
    def f():
        s = "ab"
        for i in range(64):
            s = s.replace("a", "aa")
        return len(s)
    x = f()
    """,
    """
    def f():
        s = "%s%s"
        for i in range(64):
            s = "%s%s" % (s, s)
        return len(s)
    x = f()
    """,
    """
    def f():
        s = "x"
        for i in range(64):
            s = "{0}{0}".format(s)
        return len(s)
    x = f()
    """,
    """
    def f():
        n = 2
        for i in range(64):
            n = n * n
        return n
    x = f()
    """,
])
def test_huge_allocations_fail_cleanly(sl, src):
    _must_fail_cleanly(sl, src, seconds=60, **_budget())


DEEP_SOURCES = {
    "nested-lists": "[" * 5000 + "]" * 5000,
    "nested-parens": "(" * 5000 + "1" + ")" * 5000,
    "unary-minus-chain": "-" * 20000 + "1",
    "not-chain": "not " * 20000 + "True",
    "long-sum": "1" + " + 1" * 50000,
    "long-list": "[1" + ", 1" * 100000 + "]",
    "nested-dicts": "{'a': " * 3000 + "1" + "}" * 3000,
    "dot-chain": "x" + ".y" * 10000,
    "call-chain": "f" + "()" * 10000,
    "nested-lambdas": "lambda: " * 3000 + "1",
    "conditional-chain": "1 if True else " * 5000 + "2",
    "nested-index": "r" + "[0]" * 10000,
    "nested-comprehension": "[" * 2000 + "x" + " for x in r]" * 2000,
}


@pytest.mark.parametrize("expr", list(DEEP_SOURCES.values()), ids=list(DEEP_SOURCES))
def test_deep_or_long_sources_never_crash_the_host(sl, expr):
    def go():
        try:
            sl.eval_expr(expr, predeclared={"x": 1, "f": len, "r": [0]})
        except sl.StarlarkError:
            pass

    exc, _ = _run_guarded(go, 60)
    assert exc is None, f"{type(exc).__name__}: {str(exc)[:200]}"


def test_deeply_nested_data_repr_is_safe(sl):
    src = "def f():\n    x = []\n    for i in range(100000):\n        x = [x]\n    return str(x)\ny = f()\n"

    def go():
        try:
            sl.exec_file(src, **_budget(50_000_000))
        except sl.StarlarkError:
            pass

    exc, _ = _run_guarded(go, 60)
    assert exc is None, f"{type(exc).__name__}: {str(exc)[:200]}"


def test_self_referential_list_repr_is_safe(sl):
    def go():
        try:
            sl.exec_file("x = [1]\nx.append(x)\ny = str(x)\nz = x == x\n")
        except sl.StarlarkError:
            pass

    exc, _ = _run_guarded(go, 60)
    assert exc is None, f"{type(exc).__name__}: {str(exc)[:200]}"
