"""Conformance: statements and expressions' syntax: if/elif/else, for, while,
break/continue, pass, assignments, semicolons, operator precedence,
conditional expressions, load statements, module execution and name
resolution (spec: Statements, Binary operators, Conditional expressions,
Load statements, Module execution, Name binding and variables; dialect: top-level
if/for/while allowed)."""

import pytest

EXPRS = [
    ("1 if True else 2", 1),
    ("1 if False else 2", 2),
    ("'yes' if 0 else 'no'", "no"),
    ("1 if False else 2 if False else 3", 3),
    ("(1 if False else 2) if True else 3", 2),
    ("False or False", False),
    ("False or True", True),
    ("True or False", True),
    ("0 or 'hello'", "hello"),
    ("1 or 'hello'", 1),
    ("False and True", False),
    ("True and True", True),
    ("0 and 'hello'", 0),
    ("1 and 'hello'", "hello"),
    ("'' or [] or None", None),
    ("False and 1 // 0", False),
    ("True or 1 // 0", True),
    ("[] and [][5]", []),
    ("not True", False),
    ("not False", True),
    ("not [1, 2, 3]", False),
    ("not ''", True),
    ("not 0", True),
    ("not None", True),
    ("not 1 == 2", True),
    ("not 1 in [1]", False),
    ("1 not in [2] and 3 in [3]", True),
    ("not not 1", True),
    ("1 < 2 and 2 < 3", True),
    ("1 == 1 or 1 // 0", True),
    ("-1 if 1 > 2 else +1", 1),
    ("(1, 2)[0] if True else None", 1),
    ("[x for x in [1, 2] if x > 1][0]", 2),
    ("1 + 2 * 3 - 4 // 2", 5),
    ("2 * 3 % 4", 2),
    ("10 - 2 - 3", 5),
    ("100 // 10 // 5", 2),
    ("-2 * -3", 6),
    ("- 2 + 3", 1),
    ("(3 > 2) == True", True),
    ("(1 == 1) == (2 == 2)", True),
]


@pytest.mark.parametrize("expr,want", EXPRS, ids=[e for e, _ in EXPRS])
def test_expr(ev, same, expr, want):
    same(ev(expr), want)


PROGRAMS = [
    # if / elif / else in a function (spec example)
    ("""
    def sign(x):
        if x > 0:
            result = 1
        elif x < 0:
            result = -1
        else:
            result = 0
        return result
    print(sign(5), sign(-5), sign(0))
    """, "1 -1 0\n"),
    ("""
    if 1 + 1:
            print("True")
    else:
            print("False")
    """, "True\n"),
    # top-level if/elif/else and for loops (dialect)
    ("""
    n = 3
    if n > 5:
        print("big")
    elif n > 2:
        print("medium")
    else:
        print("small")
    for i in range(3):
        print(i)
    total = 0
    for a, i in [["a", 1], ["b", 2], ["c", 3]]:
        print(a, i)
    """, "medium\n0\n1\n2\na 1\nb 2\nc 3\n"),
    # unparenthesized tuple as a for operand
    ("""
    for x in 1, 2:
       print(x)
    """, "1\n2\n"),
    # break and continue (spec example)
    ("""
    def f():
        for x in range(10):
            if x%2 == 1:
                continue        # skip odd numbers
            if x > 7:
                break           # stop at 8
            print(x)            # prints "0", "2", "4", "6"
    f()
    """, "0\n2\n4\n6\n"),
    # break/continue affect the innermost loop
    ("""
    def f():
        out = []
        for i in range(3):
            for j in range(3):
                if j == 1:
                    continue
                if j == 2:
                    break
                out.append((i, j))
            if i == 1:
                break
        return out
    print(f())
    """, "[(0, 0), (1, 0)]\n"),
    # while loops (dialect)
    ("""
    def f():
        i = 0
        out = []
        while i < 10:
            i += 1
            if i % 2:
                continue
            if i > 6:
                break
            out.append(i)
        return out
    print(f())
    """, "[2, 4, 6]\n"),
    ("""
    n = [0]
    while n[0] < 3:
        n[0] += 1
    print(n)
    """, "[3]\n"),
    ("""
    def collatz(n):
        steps = 0
        while n != 1:
            n = n // 2 if n % 2 == 0 else 3 * n + 1
            steps += 1
        return steps
    print(collatz(27))
    """, "111\n"),
    # for over every iterable kind
    ("""
    def f():
        for x in [1, 2]:
            print(x)
        for x in (3,):
            print(x)
        for k in {"k": 1}:
            print(k)
        for s in set([4]):
            print(s)
        for r in range(5, 6):
            print(r)
        for e in "ab".elems():
            print(e)
    f()
    """, "1\n2\n3\nk\n4\n5\na\nb\n"),
    # the loop variable keeps its last value after the loop
    ("""
    def f():
        for i in range(3):
            pass
        return i
    print(f())
    """, "2\n"),
    # pass, semicolons, one-line suites
    ("""
    def noop():
       pass
    def one(): return 1
    a = 1; b = 2; print(a + b)
    if True: print("inline")
    for i in [1]: print(i); print(i + 1)
    print(noop(), one())
    """, "3\ninline\n1\n2\nNone 1\n"),
    # comments and blank lines are ignored; line continuation inside brackets
    ("""
    # leading comment

    x = [1,  # comment inside a list
         2,
    ]
    y = (1 +
         2)
    z = {
        "a": 1,   # trailing
    }
    print(x, y, z)  # trailing comment
    """, '[1, 2] 3 {"a": 1}\n'),
    ("x = 1 + \\\n  2\nprint(x)\n", "3\n"),
    # a program may end without a newline, and may be empty
    ("print('no newline')", "no newline\n"),
    ("", ""),
    ("\n\n# only comments\n", ""),
    # print formatting
    ("""
    print(1, "hi")
    print("hello", "world", sep=", ")
    print()
    print("a", "b", "c", sep="")
    print(None, True, 1.0, [1, "a"], ("t",), {"k": "v"})
    print("multi\\nline")
    """, '1 hi\nhello, world\n\nabc\nNone True 1.0 [1, "a"] ("t",) {"k": "v"}\nmulti\nline\n'),
]


@pytest.mark.parametrize("src,want", PROGRAMS, ids=[f"p{i}" for i in range(len(PROGRAMS))])
def test_program(out, src, want):
    assert out(src) == want


def test_global_referenced_before_assignment_is_runtime_error(sl, fails):
    fails("def f():\n    return x\nprint(f())\nx = 1\n", sl.EvalError)


def test_static_resolution_happens_before_execution(sl, capsys):
    with pytest.raises(sl.ResolveError) as info:
        sl.exec_file("print('ran')\nx = 1\ny = undefined_thing + x\n", "r.star")
    assert capsys.readouterr().out == ""
    err = info.value
    assert "undefined_thing" in err.msg
    assert err.filename == "r.star"
    assert err.line == 3


def test_print_can_be_overridden(sl, capsys):
    seen = []
    sl.exec_file("print('hello', 1)\n", predeclared={"print": lambda *a, **k: seen.append((a, k))})
    assert capsys.readouterr().out == ""
    assert seen and "hello" in repr(seen)


SYNTAX_ERRORS = [
    "x = = 1\n",
    "x = (1\n",
    "x = [1, 2\n",
    "x = 1)\n",
    "def f(:\n    pass\n",
    "def f()\n    pass\n",
    "if True\n    pass\n",
    "for x in [1]\n    pass\n",
    "def f():\npass\n",
    "  x = 1\n",
    "def f():\n    x = 1\n      y = 2\n",
    "def f():\n\tx = 1\n",
    "x = 1 +\n",
    "0 <= 1 < 2\n",
    "1 < 2 < 3\n",
    "1 == 1 == 1\n",
    "x = 1 in [1] in [True]\n",
    "x = [2*x for x in 1, 2, 3]\n",
    "x = [2*x for x in lambda: 0]\n",
    "x = [for x in [1]]\n",
    "x = 1 if True\n",
    "f = lambda x\n",
    "x = 08\n",
    "x = 0x\n",
    "x = 1.2.3\n",
    "x = $\n",
    "x = `1`\n",
    "x = 1 ! 2\n",
    "x = 1 +* 2\n",
    "x = a.1\n",
    "= 1\n",
    "1 = x\n",
    "f() = 1\n",
    "[1, 2] += [3]\n",
    "x + 1 = 2\n",
    "(x, y) += 1\n",
    "x = *[1]\n",
    "x = [*[1]]\n",
    "x = {**{}}\n",
    "x = 1; ;\n",
    "def f(x):\n    return\n  y = 1\n",
    # reserved words and unsupported Python statements
    "import os\n",
    "from os import path\n",
    "class C:\n    pass\n",
    "try:\n    pass\nexcept:\n    pass\n",
    "raise 1\n",
    "del x\n",
    "global x\n",
    "nonlocal x\n",
    "with x:\n    pass\n",
    "x = yield 1\n",
    "x is None\n",
    "as = 1\n",
    "class = 1\n",
    "def = 1\n",
    "lambda = 1\n",
    "load = 1\n",
    "async = 1\n",
    "await = 1\n",
    "finally = 1\n",
    "x = 1 if True else\n",
    "@decorator\ndef f():\n    pass\n",
    "x: int = 1\n",
    "f'{1}'\n",
    "x = {1, 2}\n",
    "x = 1 ; y = 2 ;; z = 3\n",
    "def f(*, **kw): pass\n",
    "x = 1j\n",
    "x = 1_000\n",
    "x := 1\n",
    "print(x for x in [1])\n",
    "x = ...\n",
    "x = [1][1:2:3:4]\n",
]


@pytest.mark.parametrize("src", SYNTAX_ERRORS)
def test_syntax_error(sl, fails, capsys, src):
    err = fails('print("ran")\n' + src)
    assert isinstance(err, (sl.StarlarkSyntaxError, sl.ResolveError)), f"{type(err).__name__}: {err}"
    assert capsys.readouterr().out == ""


STATIC_ERRORS = [
    "break\n",
    "continue\n",
    "def f():\n    break\n",
    "def f():\n    continue\n",
    "def f():\n    for x in []:\n        def g():\n            break\n",
    "return 1\n",
    "def f():\n    load('m', 'x')\n",
    "x = undefined\n",
    "undefined_fn()\n",
    "x = [undefined for y in [1]]\n",
    "def f():\n    return x\n",
    "x = (lambda: undefined)\n",
]


@pytest.mark.parametrize("src", STATIC_ERRORS)
def test_static_error(sl, fails, capsys, src):
    err = fails('print("ran")\n' + src, loader=lambda name: {"x": 1})
    assert not isinstance(err, sl.EvalError), f"{type(err).__name__}: {err}"
    assert capsys.readouterr().out == ""


# ---- load ---------------------------------------------------------------------------------


def _modules(**sources):
    """A loader that serves Starlark modules from source text, recording its calls."""
    import flowmetal.starlark as sl

    calls = []
    cache = {}

    def loader(name):
        calls.append(name)
        key = name.lstrip("./").split("/")[-1].split(":")[-1]
        if key not in cache:
            if key not in sources:
                raise KeyError(f"no module {name}")
            cache[key] = sl.exec_file(sources[key], key, loader=loader)
        return cache[key]

    loader.calls = calls
    return loader


def test_load_basic(out):
    loader = _modules(lib="x = 1\ny = [2]\nz = 'z'\n_private = 3\ndef f(a):\n    return a + x\n")
    got = out("""
    load("lib", "x", "f", y2="y")
    load("lib", "z",)
    print(x, y2, z, f(10))
    """, loader=loader)
    assert got == '1 [2] z 11\n'


def test_load_relative_path(out):
    loader = _modules(helpers="def twice(v):\n    return v * 2\n")
    assert out('load("./helpers", "twice")\nprint(twice(4))\n', loader=loader) == "8\n"
    assert loader.calls, "the loader serves relative paths"


def test_load_chain(out):
    loader = _modules(a="A = 'a'\n", b='load("a", "A")\nB = A + "b"\n')
    assert out('load("b", "B")\nprint(B)\n', loader=loader) == "ab\n"


def test_load_prelude_style_module_name(out):
    loader = lambda name: {"Ok": "ok!", "fail": lambda *a: None}  # noqa: E731
    assert out('load("pkg.flowmetal.io/v1/prelude", "Ok")\nprint(Ok)\n', loader=loader) == "ok!\n"


def test_load_may_shadow_predeclared(out):
    loader = lambda name: {"len": lambda x: 42}  # noqa: E731
    assert out('load("m", "len")\nprint(len([1]))\n', loader=loader) == "42\n"


@pytest.mark.parametrize("src", [
    'load("lib", "missing")\n',
    'load("lib", "_private")\n',
    'load("nosuchmodule", "x")\n',
])
def test_load_failures(fails, src):
    loader = _modules(lib="x = 1\n_private = 2\n")
    fails(src, loader=loader)


def test_load_without_loader_fails_cleanly(fails):
    fails('load("lib", "x")\n')


def test_loader_exception_becomes_starlark_error(sl):
    def loader(name):
        raise OSError("disk on fire")

    with pytest.raises(sl.StarlarkError):
        sl.exec_file('load("lib", "x")\n', loader=loader)


def test_error_in_loaded_module_fails_the_load(sl):
    loader = _modules(bad="x = 1 // 0\n")
    with pytest.raises(sl.StarlarkError):
        sl.exec_file('load("bad", "x")\n', loader=loader)


@pytest.mark.parametrize("src", [
    'load("lib")\n',
    'load()\n',
    'load(lib, "x")\n',
    'load("lib", x)\n',
    'load("lib", y=x)\n',
    'load("lib", "x" + "y")\n',
    'x = load("lib", "x")\n',
])
def test_load_syntax(sl, fails, src):
    loader = _modules(lib="x = 1\nxy = 2\n")
    err = fails(src, loader=loader)
    assert not isinstance(err, sl.EvalError), f"{type(err).__name__}: {err}"


def test_load_binding_is_file_local_and_not_rebindable(sl, fails):
    loader = _modules(lib="x = 1\n")
    err = fails('load("lib", "x")\nx = 2\n', loader=loader)
    assert not isinstance(err, sl.EvalError)


def test_exec_file_returns_globals(sl):
    g = sl.exec_file("a = 1\nb = a + 1\ndef f():\n    return b\n_p = 5\n")
    assert g["a"] == 1 and g["b"] == 2 and g["f"]() == 2
    assert "len" not in g and "print" not in g  # predeclared names are not globals


def test_loaded_names_are_not_exported(sl):
    loader = _modules(lib="x = 1\n")
    g = sl.exec_file('load("lib", "x")\ny = x\n', loader=loader)
    assert g["y"] == 1
    assert "x" not in g  # load bindings live in the file block, not the module block


def test_eval_expr_only_takes_expressions(sl):
    with pytest.raises(sl.StarlarkError):
        sl.eval_expr("x = 1")
    with pytest.raises(sl.StarlarkError):
        sl.eval_expr("def f(): pass")
    with pytest.raises(sl.StarlarkError):
        sl.eval_expr("")


# ---- lexical odds and ends ------------------------------------------------------------------


def test_unicode_identifiers(sl):
    # spec: "an identifier is a sequence of Unicode letters, decimal digits, and underscores"
    g = sl.exec_file("caf\u00e9 = 1\n\u03c0 = caf\u00e9 + 2\n")
    assert g["\u03c0"] == 3


def test_crlf_line_endings(sl):
    g = sl.exec_file("x = 1\r\ndef f():\r\n    return x + 1\r\ny = f()\r\n")
    assert g["y"] == 2


def test_tabs_inside_a_line_are_whitespace(sl):
    assert sl.exec_file("x = 1\t+\t2\n")["x"] == 3


def test_docstring_only_body(sl):
    g = sl.exec_file('def f():\n    """Docstring only."""\nx = f()\n')
    assert g["x"] is None


def _nested_loops(depth, kind):
    lines = ["def f():", "    c = 0"]
    for i in range(depth):
        pad = "    " * (i + 1)
        lines.append(pad + (f"for i{i} in range(1):" if kind == "for" else f"while c < {i + 1}:"))
    lines.append("    " * (depth + 1) + ("c += 1" if kind == "for" else "c += 100"))
    lines += ["    return c", "x = f()", ""]
    return "\n".join(lines)


@pytest.mark.parametrize("kind", ["for", "while"])
def test_deeply_nested_loops_never_raise_python_errors(sl, kind):
    try:
        sl.exec_file(_nested_loops(40, kind), "nest.star")
    except sl.StarlarkError:
        pass


@pytest.mark.parametrize("kind", ["for", "while"])
def test_twenty_nested_loops_run_and_deeper_nesting_is_a_clean_error(sl, kind):
    # Dialect limit (README): loops nest at most 20 deep, because the compiled
    # Python may not nest more blocks; deeper nesting is a syntax error, never a crash.
    g = sl.exec_file(_nested_loops(20, kind), "nest.star")
    assert g["x"] == (1 if kind == "for" else 100)
    with pytest.raises(sl.StarlarkSyntaxError) as info:
        sl.exec_file(_nested_loops(21, kind), "nest.star")
    assert info.value.filename == "nest.star" and info.value.line > 1


def test_deep_if_nesting_never_raises_python_errors(sl):
    src = "".join("    " * i + "if True:\n" for i in range(150)) + "    " * 150 + "y = 1\n"
    try:
        sl.exec_file(src)
    except sl.StarlarkError:
        pass
