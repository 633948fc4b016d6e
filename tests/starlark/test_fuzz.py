"""Fuzz: random token soup and mutated valid programs fed to exec_file.

The only exception allowed to escape is StarlarkError; any other exception
type (IndexError from the lexer, RecursionError from the parser, TypeError from
the compiler, MemoryError, ...) fails the test. Every run has a hard wall-clock
guard (SIGALRM) and, when the API supports it, a small step budget.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import signal
import textwrap
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flowmetal.starlark as sl

WALL_LIMIT_S = 10.0
"""Hard per-run limit: a run that takes longer is a hang."""

_KW = {"max_steps": 20_000} if "max_steps" in inspect.signature(sl.exec_file).parameters else {}

FUZZ_SETTINGS = settings(
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


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
    """Cap the address space while a run executes, so that a missing size limit shows up as an
    error here instead of OOM-killing the machine."""
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


class _Hang(BaseException):
    """Raised by the alarm; a BaseException so that no `except Exception` in the code under test eats it."""


def _loader(name):
    return {"x": 1, "f": len, "L": [1, 2], "lib_fn": lambda *a, **k: len(a)}


def _predeclared():
    return {
        "host": lambda *a, **k: len(a) + len(k),
        "boom": _boom,
        "s": sl.struct(a=1, b="two"),
        "data": {"k": [1, 2, 3]},
    }


def _boom(*args):
    raise ValueError("host failure")


@contextlib.contextmanager
def wall_clock_guard(seconds: float, what: str):
    """Fail the test if the block runs longer than `seconds` (SIGALRM in the main thread).

    Any timer already armed (pytest-timeout's, for one) is re-armed with its remaining time.
    """
    fired = []

    def on_alarm(signum, frame):
        fired.append(True)
        raise _Hang()

    started = time.monotonic()
    previous_handler = signal.signal(signal.SIGALRM, on_alarm)
    previous_delay, previous_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except _Hang:
        pytest.fail(f"ran longer than {seconds}s on:\n{what!r}")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_handler)
        if previous_delay:
            remaining = previous_delay - (time.monotonic() - started)
            signal.setitimer(signal.ITIMER_REAL, max(remaining, 0.001), previous_interval)
    if fired:  # the alarm was swallowed somewhere inside the interpreter
        pytest.fail(f"ran longer than {seconds}s (alarm swallowed) on:\n{what!r}")


def run_guarded(src: str) -> None:
    """exec_file(src); only StarlarkError may escape, and it must finish within WALL_LIMIT_S."""
    with wall_clock_guard(WALL_LIMIT_S, src):
        try:
            with contextlib.redirect_stdout(io.StringIO()), memory_cap():
                sl.exec_file(src, "fuzz.star", predeclared=_predeclared(), loader=_loader, **_KW)
        except sl.StarlarkError as err:
            if isinstance(err.__cause__, MemoryError) or isinstance(err.__context__, MemoryError):
                pytest.fail(f"stopped only by running out of memory on:\n{src!r}")


# ---- corpus of valid programs ----------------------------------------------------------------

CORPUS = [textwrap.dedent(s).lstrip("\n") for s in [
    """
    def fib(n):
        if n < 2:
            return n
        return fib(n - 1) + fib(n - 2)
    x = fib(10)
    print(x)
    """,
    """
    load("lib", "x", g="f")
    def main(items, *args, sep=", ", **kw):
        out = []
        for i, item in enumerate(items):
            if i % 2 == 0:
                continue
            out.append("%s=%r" % (i, item))
        return sep.join(out) + str(len(kw)) + str(g([x]))
    result = main(["a", "b", "c", "d"], 1, 2, z=3)
    """,
    """
    d = {"a": 1, "b": [2, 3], "c": {"d": (4, 5)}}
    keys = sorted(d.keys(), reverse=True)
    vals = [v for k, v in d.items() if type(v) != "int"]
    d2 = {k: len(str(v)) for k, v in d.items()}
    merged = d | d2
    s = set([1, 2, 3]) | set([3, 4])
    t = s & set([1, 4]) ^ set([9])
    """,
    """
    def collatz(n):
        steps = 0
        while n != 1:
            n = n // 2 if n % 2 == 0 else 3 * n + 1
            steps += 1
            if steps > 1000:
                break
        return steps
    r = [collatz(i) for i in range(1, 20)]
    """,
    """
    text = "Hello, World! 123"
    parts = text.lower().split(" ")
    caps = [p.capitalize() for p in parts if p.isalpha() or p.endswith("!")]
    joined = "-".join(caps).replace("-", "+", 1)
    fmt = "{0} {x} {0!r}".format(joined, x=text.find("W"))
    sl = text[::-2] + text[1:5] + text[-3:]
    b = bytes(text)[2:6]
    e = list("abc".elems())
    """,
    """
    add = lambda a, b=2: a + b
    compose = lambda f, g: lambda x: f(g(x))
    inc2 = compose(add, add)
    y = inc2(1)
    z = sorted([3, 1, 2], key=lambda v: -v)
    m = max(["aa", "b", "cccc"], key=len)
    n = min(1, 2.5, -3)
    """,
    """
    acc = []
    for i in range(5):
        for j in range(i):
            if j == 3:
                break
            acc.append((i, j))
    total = 0
    for pair in acc:
        total += pair[0] * pair[1]
    q = all([a >= b for a, b in acc]) and any([a == 4 for a, b in acc])
    """,
    """
    v = host(1, 2, k=3) + s.a + len(s.b) + data["k"][-1]
    w = getattr(s, "b", "none") + str(hasattr(s, "zz"))
    u = int("0x1f", 16) + int(3.9) + int("-7") + float("1.5")
    t = (1 << 70) // 3 % 1000 | 5 & 3 ^ ~2
    r = 7.5 // 2 + 7 % -3 - 2.0 / 4
    p = str(1.0) + repr("q\\n") + str([1, (2,), None, True])
    """,
    """
    def outer():
        x = [0]
        def inner(n):
            x[0] += n
            return x[0]
        return inner
    c = outer()
    vals = [c(i) for i in range(4)]
    def kw_only(a, *, b, c=3):
        return a + b + c
    k = kw_only(1, b=2)
    def varargs(*a, **k):
        return len(a), sorted(k)
    va = varargs(*[1, 2], **{"z": 1, "y": 2})
    """,
    """
    x = 10
    if x > 5:
        y = "big"
    elif x > 2:
        y = "medium"
    else:
        y = "small"
    z = [i * i for i in range(10) if i % 3 == 0]
    w = {"%d" % i: i for i in z}
    lst = list(range(10))[2:8:2] + [None] * 2
    tpl = tuple(lst) + (1,)
    rv = reversed(tpl)
    zp = zip(lst, tpl, "ab".elems())
    """,
    """
    def f(x: int, y: str = "a") -> str:
        return y * x
    r = f(3)
    n = 0
    while n < 10:
        n += 1
    s2 = "%s-%d-%x-%o-%e-%g" % ("a", 10, 255, 8, 1.5, 2.25)
    sp = "a,b,,c".split(",") + "  x y ".split() + "a\\nb".splitlines()
    st = "  pad  ".strip() + "xxhixx".strip("x") + "abc".upper()
    """,
]]


# ---- strategies ------------------------------------------------------------------------------

TOKENS = [
    # keywords, including reserved ones
    "def", "return", "if", "elif", "else", "for", "in", "not", "and", "or", "lambda", "pass",
    "break", "continue", "load", "while", "None", "True", "False", "import", "class", "is",
    "yield", "try", "del", "global", "with", "as",
    # identifiers and builtins
    "x", "y", "f", "g", "_a", "len", "print", "range", "str", "list", "dict", "set", "sorted",
    "getattr", "hasattr", "dir", "fail", "host", "boom", "s", "data", "type", "zip", "enumerate",
    "__class__", "__globals__", "__import__",
    # literals
    "0", "1", "7", "0x1f", "0o7", "1.5", "1e309", ".5", "1 << 40", "(1 << 40)", "'s'", '"d"', "'''t'''",
    'b"b"', "r'\\d'", "'\\x41'", "'\\u00e9'", "'\\q'", "'unterminated", '"""', "''",
    # punctuation and operators
    "(", ")", "[", "]", "{", "}", ",", ":", ";", ".", "=", "==", "!=", "<", ">", "<=", ">=",
    "+", "-", "*", "/", "//", "%", "**", "~", "&", "|", "^", "<<", ">>",
    "+=", "-=", "*=", "/=", "//=", "%=", "&=", "|=", "^=", "<<=", ">>=", "->", "@", "!", "$", "?",
    "\\", "#", "\t",
    # layout
    "\n", "\n    ", "\n        ", "\n  ", "\n\n",
]

SEPARATORS = ["", " ", " ", "\n", "\n    "]

token_soup = st.lists(
    st.tuples(st.sampled_from(TOKENS), st.sampled_from(SEPARATORS)), min_size=1, max_size=60,
).map(lambda pairs: "".join(tok + sep for tok, sep in pairs))


@st.composite
def mutated_program(draw):
    src = draw(st.sampled_from(CORPUS))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        kind = draw(st.sampled_from(
            ["delete_chars", "duplicate_chars", "swap_chars", "delete_line", "duplicate_line",
             "swap_lines", "insert_token", "replace_char", "indent_line", "dedent_line"]))
        if not src:
            break
        lines = src.split("\n")
        i = draw(st.integers(min_value=0, max_value=max(0, len(src) - 1)))
        n = draw(st.integers(min_value=1, max_value=8))
        li = draw(st.integers(min_value=0, max_value=max(0, len(lines) - 1)))
        lj = draw(st.integers(min_value=0, max_value=max(0, len(lines) - 1)))
        if kind == "delete_chars":
            src = src[:i] + src[i + n:]
        elif kind == "duplicate_chars":
            src = src[:i + n] + src[i:i + n] + src[i + n:]
        elif kind == "swap_chars":
            j = draw(st.integers(min_value=0, max_value=len(src) - 1))
            chars = list(src)
            chars[i], chars[j] = chars[j], chars[i]
            src = "".join(chars)
        elif kind == "delete_line":
            del lines[li]
            src = "\n".join(lines)
        elif kind == "duplicate_line":
            lines.insert(li, lines[li])
            src = "\n".join(lines)
        elif kind == "swap_lines":
            lines[li], lines[lj] = lines[lj], lines[li]
            src = "\n".join(lines)
        elif kind == "insert_token":
            tok = draw(st.sampled_from(TOKENS))
            src = src[:i] + tok + src[i:]
        elif kind == "replace_char":
            c = draw(st.sampled_from(list("()[]{}:,.=+-*/%<>!'\"\\#\t\n 0123456789abxyz_")))
            src = src[:i] + c + src[i + 1:]
        elif kind == "indent_line":
            lines[li] = " " * draw(st.integers(min_value=1, max_value=5)) + lines[li]
            src = "\n".join(lines)
        elif kind == "dedent_line":
            lines[li] = lines[li][draw(st.integers(min_value=1, max_value=4)):]
            src = "\n".join(lines)
    return src


# ---- tests -------------------------------------------------------------------------------------


@pytest.mark.parametrize("src", CORPUS)
def test_corpus_is_valid(src):
    """The seeds themselves run without error (otherwise the mutation test fuzzes less than it seems)."""
    with contextlib.redirect_stdout(io.StringIO()):
        sl.exec_file(src, "corpus.star", predeclared=_predeclared(), loader=_loader)


@FUZZ_SETTINGS
@given(token_soup)
def test_token_soup(src):
    run_guarded(src)


@FUZZ_SETTINGS
@given(mutated_program())
def test_mutated_programs(src):
    run_guarded(src)


BLOCK_HEADERS = ["for i in range(2):", "while False:", "if True:", "if False:\n{pad}    pass\n{pad}else:",
                 "def g(a, *b, **c):", "for k, v in {{'a': 1}}.items():"]
BLOCK_BODIES = ["pass", "x = [i for i in range(2) if i]", "break", "continue", "return 1", "y = lambda: 1",
                "print(1)", "z = {'k': [1]}"]


@st.composite
def nested_blocks(draw):
    """Random block structure: nesting depth is what stresses a compiler targeting Python."""
    depth = draw(st.integers(min_value=1, max_value=40))
    lines = ["def f():"]
    for level in range(1, depth + 1):
        pad = "    " * level
        header = draw(st.sampled_from(BLOCK_HEADERS)).format(pad=pad)
        lines.append(pad + header)
    lines.append("    " * (depth + 1) + draw(st.sampled_from(BLOCK_BODIES)))
    lines += ["x = f()", ""]
    return "\n".join(lines)


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(nested_blocks())
def test_nested_blocks(src):
    run_guarded(src)


@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.text(max_size=80))
def test_arbitrary_text(src):
    run_guarded(src)


@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.text(alphabet=st.sampled_from(list("()[]{}'\"\\ \n\t:,.=+-*%<>#xbr0123456789")), max_size=60))
def test_expression_soup(src):
    """eval_expr on bracket/quote-heavy garbage."""
    with wall_clock_guard(WALL_LIMIT_S, src):
        try:
            with memory_cap():
                sl.eval_expr(src, predeclared={"x": 1, "b": b"b", "r": [1]})
        except sl.StarlarkError:
            pass
