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
    cpu = {}

    def run():
        # The CPU time of the program's own thread: a step budget bounds the work done,
        # which a loaded machine does not change (it stretches the wall time only).
        start = time.thread_time()
        try:
            sl.exec_file(textwrap.dedent(src), "limit.star", **kw)
        finally:
            cpu["seconds"] = time.thread_time() - start
    exc, elapsed = _run_guarded(run, seconds)
    assert exc is not None, "the program completed instead of hitting a limit"
    assert isinstance(exc, sl.StarlarkError), f"{type(exc).__name__}: {exc}"
    # A limit must stop the program before the host runs out of memory: an error that merely
    # wraps the MemoryError raised under this test's address-space cap does not count.
    for inner in (exc.__cause__, exc.__context__):
        assert not isinstance(inner, MemoryError), \
            f"stopped only by running out of memory ({elapsed:.1f}s): {exc.msg}"
    if kw.get("max_steps"):
        assert cpu["seconds"] < 20, \
            f"a {kw['max_steps']}-step budget took {cpu['seconds']:.1f}s of CPU to stop the program"
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


def test_a_budget_of_n_steps_allows_n_loop_iterations(sl):
    src = "t = 0\nfor i in range(300):\n    t += i\n"
    assert sl.exec_file(src, max_steps=300)["t"] == sum(range(300))
    with pytest.raises(sl.StarlarkError, match="step budget exhausted"):
        sl.exec_file(src, max_steps=299)
    # Two loops share one budget, each taking only what it runs.
    two = src + "for j in range(30):\n    t += j\n"
    assert sl.exec_file(two, max_steps=330)["t"] == sum(range(300)) + sum(range(30))
    with pytest.raises(sl.StarlarkError):
        sl.exec_file(two, max_steps=329)


def test_a_small_budget_is_not_starved_by_an_outer_loop(sl):
    # 3 outer + 9 inner iterations: the outer frame must not hold the whole budget.
    src = "t = 0\nfor i in range(3):\n    for j in range(3):\n        t += 1\n"
    assert sl.exec_file(src, max_steps=12)["t"] == 9 if _budget() else True


def test_a_function_with_a_short_loop_is_charged_its_iterations_only(sl):
    # Loops draw steps in chunks of 256; a returning frame gives back what it did not
    # use (before, each of these 2,000 calls kept its chunk: 512,000 steps charged).
    # A frame still holds the rest of its chunk while it calls: up to 255 more.
    src = ("def f(x):\n    n = 0\n    for c in x:\n        n += 1\n        if n == 2:\n"
           "            return n\n    return n\n"
           "t = 0\nfor i in range(2000):\n    t += f([1, 2, 3]) + f([])\n")
    assert sl.exec_file(src, max_steps=6_000 + 255)["t"] == 4000
    with pytest.raises(sl.StarlarkError, match="step budget exhausted"):
        sl.exec_file(src, max_steps=5_999)


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


HUGE_ALLOCATIONS = [
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
    # many allocations, each under any per-value size limit, that add up to far more
    # memory than a host has: a few thousand steps must not be able to exhaust memory
    """
    def f():
        keep = []
        for i in range(100000):
            keep.append("x" * (1 << 26))
        return len(keep)
    x = f()
    """,
    """
    def f():
        keep = []
        for i in range(100000):
            keep.append([None] * (1 << 25))
        return len(keep)
    x = f()
    """,
]
HUGE_IDS = [
    'str-times-2^40', 'int-times-str', 'bytes-times', 'list-times', 'tuple-times', 'list-range',
    'tuple-range', 'sorted-range', 'list-times-2^62', 'str-times-2^62', 'shift-2^40', 'bigint-shift',
    'str-doubling-plus', 'str-doubling-augmented', 'list-extend-self', 'list-doubling', 'bytes-doubling',
    'join-doubling', 'replace-doubling', 'percent-doubling', 'format-doubling', 'int-squaring',
    'accumulate-64MB-strings', 'accumulate-big-lists',
]


@pytest.mark.parametrize("src", HUGE_ALLOCATIONS, ids=HUGE_IDS)
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


# ---- edge operations: a value or a StarlarkError, never a Python exception -------------------

EDGE_EXPRS = [
    "len(range(1 << 100))",
    "range(1 << 100)[-1]",
    "range(1 << 100)[5]",
    "(1 << 100) in range(1 << 101)",
    "'abc'[1 << 100]",
    "'abc'[-(1 << 100)]",
    "[1][1 << 100]",
    "(1,)[1 << 100]",
    "b'a'[1 << 100]",
    "'abc'[:1 << 100]",
    "'abc'[-(1 << 100):]",
    "'abc'[::1 << 100]",
    "[1, 2, 3][::-(1 << 100)]",
    "range(10)[::1 << 100]",
    "'abc'.find('b', 1 << 100)",
    "'abc'.count('a', -(1 << 100), 1 << 100)",
    "[1].insert(1 << 100, 2)",
    "[1].pop(1 << 100)",
    "[1, 2].index(2, -(1 << 100))",
    "'%d' % float('inf')",
    "'%d' % float('nan')",
    "'%x' % 1.5",
    "'%e' % (1 << 2000)",
    "'%f' % (1 << 2000)",
    "'%g' % (1 << 2000)",
    "'%o' % -(1 << 100)",
    "int(1e308 * 10)",
    "(1 << 2000) / (1 << 1999)",
    "1 / (1 << 2000)",
    "(1 << 2000) // 1.5",
    "(1 << 2000) % 1.5",
    "(1 << 2000) * 1.0",
    "(1 << 2000) < float('inf')",
    "(1 << 2000) == float('inf')",
    "float('inf') - float('inf')",
    "float('inf') * 0",
    "float('nan') // 1",
    "float('inf') % 2",
    "-(1 << 100) >> (1 << 100)",
    "(1 << 100) >> (1 << 100)",
    "1 << 100000",
    "abs(-(1 << 2000))",
    "str(float(1 << 1000))",
    "int('1' * 5000)",
    "hash('x' * 100000)",
    "repr('\\x00\\x1f\\x7f\\u2028\\U0010ffff')",
    "bytes('\\udc80' if False else 'ok')",
    "'x'.join(['a'] * 10000)",
    "sorted([float('nan'), 1, float('nan'), 0.5])",
    "max([float('nan'), 1])",
    "min(float('nan'), 1)",
    "set([float('nan'), float('nan')])",
    "{float('nan'): 1}",
    "[0.0, -0.0, 0] == [0, 0, 0]",
    "dict([(0.0, 'a'), (-0.0, 'b')])",
    "range(0, 10, 1 << 100)",
    "list(range(0, 1 << 100, 1 << 98))",
    "enumerate([1], 1 << 100)",
    "zip(range(1 << 100), [1])",
    "'a'.replace('', '-')",
    "'a'.split('a', 1 << 100)",
    "'aaa'.replace('a', 'b', 1 << 100)",
    "'a b'.split(None, -(1 << 100))",
    "'{0}'.format(*range(3))",
    "'{}'.format(**{'a': 1})",
    "'{a}'.format(**{'a': 1})",
    "'{:}'.format(1)",
    "'{!}'.format(1)",
    "'{0!r:}'.format(1)",
    "'{0:>5}'.format(1)",
    "'{0:{1}}'.format(1, 2)",
    "'%s %s' % [1, 2]",
    "'%(a)s' % {'a': 1}",
    "'%5d' % 1",
    "'%-5s' % 'a'",
    "'%.2f' % 1.0",
    "'%c' % 65",
    "'%i' % 1",
    "'%u' % 1",
    "int('1_000')",
    "float('1_0.5')",
    "int(' 1')",
    "float(' 1.5 ')",
    "int('\\u0661')",
    "float('\\u0661')",
    "int('0x', 16)",
    "int('-', 10)",
    "int('0b', 0)",
    "int('0o8', 0)",
    "float('0x10')",
    "float('1e')",
    "float('--1')",
    "int('++1')",
    "int('0x-1', 16)",
]


@pytest.mark.parametrize("expr", EDGE_EXPRS)
def test_edge_expression_yields_value_or_starlark_error(sl, expr):
    def go():
        try:
            sl.eval_expr(expr)
        except sl.StarlarkError:
            pass

    exc, _ = _run_guarded(go, 60)
    assert exc is None, f"{type(exc).__name__}: {str(exc)[:300]}"


@pytest.mark.parametrize("expr", [
    "int('1_000')",
    "float('1_0.5')",
    "int(' 1')",
    "float(' 1.5 ')",
    "int('\\u0661')",
    "int('0x', 16)",
    "int('-', 10)",
    "int('0b', 0)",
    "int('0o8', 0)",
    "float('0x10')",
    "float('1e')",
    "int('++1')",
    "'%5d' % 1",
    "'%.2f' % 1.0",
    "'{0:>5}'.format(1)",
    "'%(a)s' % {'a': 1}",
])
def test_python_only_syntax_in_conversions_is_rejected(sl, expr):
    """Conversions follow Starlark's literal syntax, not Python's (no `_` separators,
    whitespace, non-ASCII digits, printf flags/width/precision, format specs or mapping keys)."""
    with pytest.raises(sl.StarlarkError):
        sl.eval_expr(expr)


def test_python_called_function_is_bounded_by_the_budget(sl):
    g = sl.exec_file("def spin():\n    while True:\n        pass\ndef deep():\n    return deep()\n")
    exc, elapsed = _run_guarded(lambda: g["spin"](), 90)
    assert isinstance(exc, sl.StarlarkError), f"{type(exc).__name__}: {exc}"
    exc, elapsed = _run_guarded(lambda: g["deep"](), 90)
    assert isinstance(exc, sl.StarlarkError), f"{type(exc).__name__}: {exc}"


def test_lambda_frames_are_named_lambda(sl):
    with pytest.raises(sl.EvalError) as info:
        sl.exec_file("f = lambda: 1 // 0\nf()\n", "lam.star")
    assert "in lambda" in str(info.value)


def test_compiling_starlark_emits_no_python_warnings(sl):
    """Programs whose errors are dynamic must compile silently: a Python SyntaxWarning
    leaking out of the compiler (e.g. "list indices must be integers") reaches the host's
    stderr and, under `-W error`, would turn a never-executed line into a failure."""
    import warnings

    src = "def f():\n    return [1]['a'] + (1, 2)[None] + b'x'[1.0] + 'abc'['x']\n"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sl.exec_file(src, "w.star")
    assert not [w for w in caught if issubclass(w.category, SyntaxWarning)], \
        [str(w.message) for w in caught]


def test_valid_program_runs_under_python_warnings_as_errors(sl):
    import warnings

    src = "def never_called():\n    return [1]['key'] + (2,)[None]\nok = 1\n"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g = sl.exec_file(src, "werror.star")
    assert g["ok"] == 1


def test_an_error_in_a_loaded_module_names_its_file_line_and_col(tmp_path):
    import flowmetal.starlark as fs
    from flowmetal.loading import FileLoader
    (tmp_path / "syn.star").write_text("x = 1 +\n")
    (tmp_path / "rt.star").write_text("def g():\n    return 1 // 0\nx = g()\n")
    (tmp_path / "mid.star").write_text('load("rt.star", "x")\n')
    cases = {
        "syn.star": ["syn.star:1:8 in <toplevel>"],
        "rt.star": ["rt.star:3:5 in <toplevel>", "rt.star:2:5 in g"],
        "mid.star": ["mid.star:1:1 in <toplevel>", "rt.star:3:5 in <toplevel>",
                     "rt.star:2:5 in g"],
    }
    for lib, inner in cases.items():
        main = tmp_path / "main.star"
        main.write_text(f'load("{lib}", "x")\nprint(x)\n')
        r = fs.start(main.read_text(), str(main), loader=FileLoader(str(main))).run()
        assert isinstance(r, fs.Failed)
        frames = [str(f).replace(str(tmp_path) + "/", "") for f in r.error.stack]
        assert frames == ["main.star:1:1 in <toplevel>"] + inner
        assert r.error.position().endswith(inner[-1].split(" in ")[0])
        assert f"cannot load {lib}: " in r.error.msg


def test_call_depth_exceeded_has_a_traceback_with_the_way_in_and_out():
    import flowmetal.starlark as fs
    src = "def rec(n):\n    return rec(n + 1)\n\nx = rec(0)\n"
    r = fs.start(src, "rec.star").run()
    assert isinstance(r, fs.Failed)
    assert r.error.msg.startswith("maximum call depth exceeded (")
    frames = [str(f) for f in r.error.stack]
    assert frames == ["rec.star:4:5 in <toplevel>"] + ["rec.star:2:12 in rec"] * 9
    assert r.error.position() == "rec.star:2:12"
