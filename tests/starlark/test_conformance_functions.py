"""Conformance: function definitions and calls, parameters of every kind,
closures, lambdas, recursion, annotations, hoisting and host builtins
(spec: Functions, Function definitions, Function and method calls, Lambda
expressions, Return statements; dialect: recursion allowed, top-level defs
hoisted, annotations accepted)."""

import pytest

PROGRAMS = [
    # positional and named arguments (spec examples)
    ("""
    def idiv(x, y):
      return x // y
    print(idiv(6, 3), idiv(x=6, y=3), idiv(y=3, x=6), idiv(6, y=3))
    """, "2 2 2 2\n"),
    # optional parameters
    ("""
    def f(x, y=3):
      return x, y
    print(f(1, 2), f(1), f(1, y=5), f(y=0, x=9))
    """, "(1, 2) (1, 3) (1, 5) (9, 0)\n"),
    # defaults are evaluated once, when the def executes
    ("""
    n = [10]
    def f(x=n[0] + 1):
        return x
    print(f())
    """, "11\n"),
    # mutable default values are shared between calls (spec example)
    ("""
    def f(x, list=[]):
      list.append(x)
      return list
    print(f(4, [1, 2, 3]))
    print(f(1))
    print(f(2))
    """, "[1, 2, 3, 4]\n[1]\n[1, 2]\n"),
    # varargs
    ("""
    def f(x, y, *args):
      return x, y, args
    print(f(1, 2))
    print(f(1, 2, 3, 4))
    """, "(1, 2, ())\n(1, 2, (3, 4))\n"),
    # kwargs
    ("""
    def f(x, y, **kwargs):
      return x, y, kwargs
    print(f(1, 2))
    print(f(x=2, y=1))
    print(f(x=2, y=1, z=3))
    print(type(f(1, 2, a=1)[2]))
    """, '(1, 2, {})\n(2, 1, {})\n(2, 1, {"z": 3})\ndict\n'),
    # *args and **kwargs at the call site (spec examples)
    ("""
    def f(a, b, c=5):
      return a * b + c
    print(f(*[2, 3]), f(*[2, 3, 7]), f(*(2, 3)))
    print(f(**dict(b=3, a=2)), f(**dict(c=7, a=2, b=3)), f(**{"a": 1, "b": 1}))
    print(f(1, *[2]), f(1, c=0, *[2]), f(1, **{"b": 2}))
    """, "11 13 11\n11 13 6\n7 2 7\n"),
    # keyword-only parameters after *args (spec examples)
    ("""
    def g(a, *args, b=2, c):
      print(a, b, c, args)
    g(1, 4, c=3)
    g(1, c=3, *[4, 5])
    g(1, b=0, c=9)
    """, "1 2 3 (4,)\n1 2 3 (4, 5)\n1 0 9 ()\n"),
    # keyword-only parameters after a bare * (spec example)
    ("""
    def f(a, *, b=2, c):
      print(a, b, c)
    f(1, c=3)
    f(a=0, c=1, b=5)
    """, "1 2 3\n0 5 1\n"),
    # every kind of parameter together
    ("""
    def f(a, b=2, *args, c, d=4, **kwargs):
        return a, b, args, c, d, kwargs
    print(f(1, c=3))
    print(f(1, 9, 8, 7, c=3, e=5, d=0))
    def g(**kwargs):
        return sorted(kwargs.items())
    print(g(z=1, a=2))
    def h(*args):
        return args
    print(h(), h(*range(3)))
    """, '(1, 2, (), 3, 4, {})\n(1, 9, (8, 7), 3, 0, {"e": 5})\n'
         '[("a", 2), ("z", 1)]\n() (0, 1, 2)\n'),
    # kwargs collects only surplus names; its dict is new on each call
    ("""
    def f(**kw):
        kw["n"] = len(kw)
        return kw
    d = {"a": 1}
    print(f(**d), d)
    """, '{"a": 1, "n": 1} {"a": 1}\n'),
    # return statements (spec example)
    ("""
    def f(x):
      if x == 0:
        return
      if x < 0:
        return -x
      print(x)
    print(f(1))
    print(f(0))
    print(f(-1))
    """, "1\nNone\nNone\n1\n"),
    ("""
    def f():
        return 1, 2
    def g():
        pass
    print(f(), g())
    """, "(1, 2) None\n"),
    # arguments are evaluated left to right
    ("""
    log = []
    def t(x):
        log.append(x)
        return x
    def f(*args, **kwargs):
        return None
    f(t(1), t(2), a=t(3), *[t(4)], **{"b": t(5)})
    print(log)
    """, "[1, 2, 3, 4, 5]\n"),
    # closures see the variable, not its value at capture time (spec example, with return)
    ("""
    def f(x):
      res = []
      def get_x():
        res.append(x)
      get_x()
      x = 2
      get_x()
      return res
    print(f(1))
    """, "[1, 2]\n"),
    ("""
    def counter():
        box = [0]
        def inc():
            box[0] += 1
            return box[0]
        return inc
    c = counter()
    print(c(), c(), c())
    d = counter()
    print(d())
    """, "1 2 3\n1\n"),
    # an assignment makes a name local to the inner function
    ("""
    def outer():
        x = 1
        def inner():
            x = 2
            return x
        return inner(), x
    print(outer())
    """, "(2, 1)\n"),
    # a local binding anywhere in the block makes every use local (spec example)
    ("""
    y = "goodbye"
    def hello():
      for x in (1, 2):
        if x == 2:
          print(y)
        if x == 1:
          y = "hello"
    hello()
    print(y)
    """, "hello\ngoodbye\n"),
    # parameters shadow globals and builtins
    ("""
    len = 5
    def f(len):
        return len
    print(f(3), len)
    """, "3 5\n"),
    # lambdas
    ("""
    def map(f, list):
        return [f(x) for x in list]
    print(map(lambda x: 2*x, range(3)))
    twice = lambda x: x * 2
    print(twice(2), twice("two"))
    add = lambda a, b=10, *c, **d: (a + b, c, d)
    print(add(1), add(1, 2, 3, k=4))
    print((lambda: 7)())
    print((lambda *a: a)(1, 2))
    """, '[0, 2, 4]\n4 twotwo\n(11, (), {}) (3, (3,), {"k": 4})\n7\n(1, 2)\n'),
    ("""
    def adder(n):
        return lambda x: x + n
    print(adder(3)(4))
    fs = [lambda x, i=i: x * i for i in range(3)]
    print([f(10) for f in fs])
    print([(lambda: i)() for i in range(3)])
    """, "7\n[0, 10, 20]\n[0, 1, 2]\n"),
    ("""
    f = lambda: (1 if False else 2)
    g = (lambda: 1) if False else (lambda: 3)
    print(f(), g())
    h = lambda x: lambda y: x + y
    print(h(1)(2))
    """, "2 3\n3\n"),
    # recursion and while loops are part of this dialect
    ("""
    def fib(x):
      if x < 2:
        return x
      return fib(x-2) + fib(x-1)
    print(fib(15))
    """, "610\n"),
    ("""
    def is_even(n):
        return True if n == 0 else is_odd(n - 1)
    def is_odd(n):
        return False if n == 0 else is_even(n - 1)
    print(is_even(10), is_odd(7), is_even(7))
    """, "True True False\n"),
    ("""
    def depth(n):
        return 0 if n == 0 else 1 + depth(n - 1)
    print(depth(200))
    """, "200\n"),
    ("""
    def fact(n):
        r = 1
        while n > 1:
            r *= n
            n -= 1
        return r
    print(fact(25))
    """, "15511210043330985984000000\n"),
    # top-level defs are hoisted
    ("""
    x = f()
    g_ref = g
    def f():
        return 1
    def g():
        return "g"
    print(x, g_ref())
    """, "1 g\n"),
    ("""
    analyze = wrap(_impl)
    def wrap(fn):
        return lambda: fn() + "!"
    def _impl():
        return "ok"
    print(analyze())
    """, "ok!\n"),
    ("""
    def f():
        return K
    K = 1
    print(f())
    """, "1\n"),
    # type annotations are accepted
    ("""
    def f(x: int, y: str = "a", *args, z: bool = True, **kw) -> str:
        return y * x
    print(f(3))
    def g(a: list) -> None:
        return a
    print(g(1))
    """, "aaa\n1\n"),
    # functions are values: equality, hashing, truth, type, str
    ("""
    def twice(x):
        return x * 2
    f = twice
    print(f == twice, {twice: 1}[f], bool(twice), type(twice), type(lambda: 0))
    print(type(len), type("".split), twice != (lambda: 0))
    print("twice" in str(twice))
    """, "True 1 True function function\nbuiltin_function_or_method builtin_function_or_method True\nTrue\n"),
    # bound methods (spec: Function and method calls)
    ("""
    f = "banana".count
    print(f("a"), f("n"))
    x = []
    app = x.append
    app(1)
    app(2)
    print(x)
    """, "3 2\n[1, 2]\n"),
    # a function returning nothing in every branch
    ("""
    def f(x):
        if x:
            return
    print(f(1), f(0))
    """, "None None\n"),
    # nested defs
    ("""
    def a():
        def b():
            def c():
                return "c"
            return c() + "b"
        return b() + "a"
    print(a())
    """, "cba\n"),
]


@pytest.mark.parametrize("src,want", PROGRAMS, ids=[f"p{i}" for i in range(len(PROGRAMS))])
def test_program(out, src, want):
    assert out(src) == want


CALL_ERRORS = [
    "def f(a, b, c=5): pass\nf(*[2])\n",
    "def f(a, b, c=5): pass\nf(**dict(a=2))\n",
    "def f(a, b, c=5): pass\nf(**dict(d=4))\n",
    "def f(a): pass\nf()\n",
    "def f(a): pass\nf(1, 2)\n",
    "def f(a): pass\nf(b=1)\n",
    "def f(a): pass\nf(1, a=1)\n",
    "def f(x): pass\nf(x=1, **dict(x=2))\n",
    "def f(**kw): pass\nf(x=1, **dict(x=2))\n",
    "def g(a, *args, b=2, c): pass\ng(1, 3)\n",
    "def f(a, *, b=2, c): pass\nf(1)\n",
    "def f(a, *, b=2, c): pass\nf(1, 3)\n",
    "def f(a, *, c): pass\nf(1, 2, c=3)\n",
    "def f(*args): pass\nf(*1)\n",
    "def f(*args): pass\nf(*None)\n",
    "def f(**kw): pass\nf(**[1])\n",
    "def f(**kw): pass\nf(**{1: 2})\n",
    "def f(): pass\nf(1)\n",
    "def f(): pass\nf(a=1)\n",
    "x = 1\nx()\n",
    "x = 'abc'\nx()\n",
    "x = None\nx()\n",
    "x = [1]\nx()\n",
    "f = lambda x: x\nf()\n",
    "f = lambda: 1\nf(1)\n",
    "len()\n",
    "len([], [])\n",
    "len(x=[])\n",
    "def f():\n  print(x)\n  x = 'hello'\nf()\n",
    "print(x)\nx = 'hello'\n",
    "def f():\n    return f()\nf()\n",
]


@pytest.mark.parametrize("src", CALL_ERRORS)
def test_call_error(sl, fails, src):
    fails(src, sl.EvalError)


STATIC_ERRORS = [
    "def f(a, a): pass\n",
    "def f(a, *a): pass\n",
    "def f(a, **a): pass\n",
    "def f(a, b=1, c): pass\n",
    "def f(*a, *b): pass\n",
    "def f(**a, b): pass\n",
    "def f(**a, *b): pass\n",
    "def f(**a, **b): pass\n",
    "def f(a, *): pass\n",
    "def f(): pass\nf(a=1, 2)\n",
    "def f(): pass\nf(x=1, x=2)\n",
    "def f(): pass\nf(**{}, *[])\n",
    "def f(): pass\nf(*[], 1)\n",
    "def f(): pass\nf(*[], a=1)\n",
    "def f(): pass\nf(*[], *[])\n",
    "def f(x: Undefined): pass\n",
    "def f() -> Undefined: pass\n",
    "def f(x=undefined_default): pass\n",
    "def f():\n  if False:\n    g()\n",
    "f = lambda: undefined_name\n",
    "def f():\n    def g():\n        return h\n    return g\n",
    "def f():\n    [y for y in [1]]\n    return y\n",
]


@pytest.mark.parametrize("src", STATIC_ERRORS)
def test_static_error(sl, fails, capsys, src):
    """Detected before anything runs: the print on the first line must not execute."""
    err = fails('print("ran")\n' + src)
    assert not isinstance(err, sl.EvalError), f"{type(err).__name__}: {err}"
    assert capsys.readouterr().out == ""


def test_undefined_names_are_resolve_errors(sl, fails):
    err = fails("def f():\n  if False:\n    g()\n", sl.ResolveError)
    assert "g" in err.msg


def test_functions_in_globals_are_python_callable(sl, run):
    g = run("""
    def add(a, b=10, *rest, **kw):
        return a + b + len(rest) + len(kw)
    def boom(x):
        return 1 // x
    def make():
        return [1, {"k": (2,)}]
    """)
    assert g["add"](1) == 11
    assert g["add"](1, 2) == 3
    assert g["add"](1, 2, 3, 4, z=5) == 6
    assert g["add"](a=1, b=1) == 2
    assert g["make"]() == [1, {"k": (2,)}]
    with pytest.raises(sl.StarlarkError):
        g["boom"](0)
    with pytest.raises(sl.StarlarkError):
        g["add"]()           # missing argument: a StarlarkError, not a TypeError
    with pytest.raises(sl.StarlarkError):
        g["add"](1, nope=1, a=2)
    assert g["boom"](1) == 1  # still usable after an error


def test_python_callable_starlark_function_prints_to_stdout(run, capsys):
    g = run("def hello(name):\n    print('hi', name)\n")
    capsys.readouterr()
    g["hello"]("bob")
    assert capsys.readouterr().out == "hi bob\n"


def test_host_builtins(sl):
    calls = []

    def record(*args, **kwargs):
        calls.append((args, kwargs))
        return len(args) + len(kwargs)

    pre = {"double": lambda x: x * 2, "record": record, "pair": lambda a, b=0: [a, b]}
    assert sl.eval_expr("double(21)", predeclared=pre) == 42
    assert sl.eval_expr("double('ab')", predeclared=pre) == "abab"
    assert sl.eval_expr("record(1, [2], k='v')", predeclared=pre) == 3
    assert calls == [((1, [2]), {"k": "v"})]
    assert sl.eval_expr("pair(1, b=2) + [3]", predeclared=pre) == [1, 2, 3]
    g = sl.exec_file("x = pair(1)\nx.append(9)\ny = double\n", predeclared=pre)
    assert g["x"] == [1, 0, 9]
    assert sl.eval_expr("type(double)", predeclared=pre) == "builtin_function_or_method"


def test_host_builtin_exception_becomes_starlark_error(sl):
    def boom(x):
        raise ValueError("kaboom: " + x)

    def program_calls_it():
        return sl.exec_file("def f():\n    return boom('zz')\nf()\n", "h.star", predeclared={"boom": boom})

    with pytest.raises(sl.StarlarkError) as info:
        program_calls_it()
    assert "kaboom: zz" in info.value.msg
    assert "kaboom: zz" in str(info.value)
    with pytest.raises(sl.StarlarkError):
        sl.eval_expr("boom()", predeclared={"boom": boom})     # wrong arity: TypeError inside the host
    with pytest.raises(sl.StarlarkError):
        sl.eval_expr("f(1)", predeclared={"f": lambda: 1})
    with pytest.raises(sl.StarlarkError):
        sl.eval_expr("f()", predeclared={"f": lambda: {}["missing"]})   # KeyError inside the host


def test_predeclared_values(sl):
    pre = {"N": 3, "NAME": "x", "L": [1, 2], "T": (1,), "D": {"a": 1}, "F": 1.5, "B": b"b", "Z": None}
    assert sl.eval_expr("[N * 2, NAME + 'y', L[-1], T[0], D['a'], F * 2, B, Z]", predeclared=pre) == \
        [6, "xy", 2, 1, 1, 3.0, b"b", None]


def test_predeclared_may_be_shadowed_by_globals(sl):
    g = sl.exec_file("N = N_in + 1\nlen = 3\n", predeclared={"N_in": 1})
    assert g["N"] == 2 and g["len"] == 3


def test_hoisted_function_reading_a_later_global_fails_at_run_time(sl, fails):
    # Hoisting binds the def early; the global it reads is still unassigned when it runs.
    fails("x = f()\ndef f():\n    return K\nK = 1\n", sl.EvalError)


def test_augmented_assignment_in_function_makes_a_local(sl, fails):
    fails("x = 1\ndef f():\n    x += 1\n    return x\nf()\n", sl.EvalError)


def test_starlark_functions_passed_to_host_builtins_are_callable(sl):
    pre = {"apply": lambda f, *a, **k: f(*a, **k), "call_all": lambda fs: [f() for f in fs]}
    assert sl.eval_expr("apply(lambda v: v * 2, 21)", predeclared=pre) == 42
    assert sl.eval_expr("apply(lambda a, b=1: a - b, 5, b=2)", predeclared=pre) == 3
    g = sl.exec_file("def f():\n    return 'f'\nr = call_all([f, lambda: 'l'])\n", predeclared=pre)
    assert g["r"] == ["f", "l"]
    with pytest.raises(sl.StarlarkError):
        sl.eval_expr("apply(lambda v: 1 // v, 0)", predeclared=pre)


def test_host_builtin_raising_starlark_error_keeps_its_message(sl):
    def check(x):
        raise sl.EvalError("custom check failed: %r" % (x,))

    with pytest.raises(sl.StarlarkError) as info:
        sl.exec_file("check(3)\n", predeclared={"check": check})
    assert "custom check failed: 3" in info.value.msg


@pytest.mark.parametrize("value", [
    {1, 2}, frozenset([1]), (x for x in [1, 2]), object(), complex(1, 2), bytearray(b"x"),
    {(1, 2): [3]}, ([1], {"a": (2,)}), 10 ** 30, float("inf"), range(3), iter([1]),
])
def test_odd_host_values_never_raise_python_exceptions(sl, value):
    """A host builtin may hand back any Python value; using it yields a value or a StarlarkError."""
    pre = {"get": lambda: value}
    for expr in ["get()", "str(get())", "repr(get())", "type(get())", "bool(get())", "len(get())",
                 "get() == get()", "1 in get()", "[x for x in get()]", "get() + get()", "get()[0]",
                 "get().x", "hash(get())", "{get(): 1}", "sorted([get(), get()])", "list(get())",
                 "'%s' % (get(),)", "'{}'.format(get())", "dir(get())", "get()()"]:
        try:
            sl.eval_expr(expr, predeclared=pre)
        except sl.StarlarkError:
            pass
