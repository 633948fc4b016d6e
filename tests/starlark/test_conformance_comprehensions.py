"""Conformance: list and dict comprehensions, their own lexical block, nested
clauses and compound loop variables (spec: Comprehensions, Name binding and
variables)."""

import pytest

EXPRS = [
    ("[x*x for x in range(5)]", [0, 1, 4, 9, 16]),
    ("[x*x for x in range(5) if x%2 == 0]", [0, 4, 16]),
    ("[(x, y) for x in range(5) if x%2 == 0 for y in range(5) if y > x]",
     [(0, 1), (0, 2), (0, 3), (0, 4), (2, 3), (2, 4)]),
    ("[x*y+z for (x, y), z in [((2, 3), 5), (('o', 2), '!')]]", [11, "oo!"]),
    ("[a + b for a, b in [(1, 2), (3, 4)]]", [3, 7]),
    ("[a for [a] in [[1], (2,)]]", [1, 2]),
    ("[x for x in []]", []),
    ("[x for x in [1, 2, 3] if x > 1 if x < 3]", [2]),
    ("[x for x in [0, 1, '', 'a', None, [], [0]] if x]", [1, "a", [0]]),
    ("[[y for y in range(x)] for x in range(3)]", [[], [0], [0, 1]]),
    ("[x for xs in [[1, 2], [3]] for x in xs]", [1, 2, 3]),
    ("[k for k in {'b': 1, 'a': 2}]", ["b", "a"]),
    ("[v for k, v in {'b': 1, 'a': 2}.items()]", [1, 2]),
    ("[s for s in set([3, 1, 3])]", [3, 1]),
    ("[x for x in (1, 2)]", [1, 2]),
    ("[x for x in 'abc'.elems()]", ["a", "b", "c"]),
    ("[(lambda: i)() for i in range(3)]", [0, 1, 2]),
    ("[1//0 for x in [] for y in z for z in ()]", []),
    ("{x: len(x) for x in ['able', 'baker', 'charlie']}", {"able": 4, "baker": 5, "charlie": 7}),
    ("{k: v for k, v in [('a', 1), ('b', 2)] if v > 1}", {"b": 2}),
    ("{x % 3: x for x in range(10)}", {0: 9, 1: 7, 2: 8}),
    ("{(x, y): x * y for x in range(2) for y in range(2)}", {(0, 0): 0, (0, 1): 0, (1, 0): 0, (1, 1): 1}),
    ("{k: [] for k in 'ab'.elems()}", {"a": [], "b": []}),
    ("len([x for x in range(1000)])", 1000),
    ("[x if x % 2 else -x for x in range(4)]", [0, 1, -2, 3]),
    ("[x for x in [3, 1, 2] if x != 1][-1]", 2),
]


@pytest.mark.parametrize("expr,want", EXPRS, ids=[e for e, _ in EXPRS])
def test_expr(ev, same, expr, want):
    same(ev(expr), want)


PROGRAMS = [
    # comprehensions define a new block (spec example)
    ("""
    x = 1
    _ = [x for x in [2]]
    print(x)
    """, "1\n"),
    ("""
    def f():
        x = "outer"
        ys = [x for x in range(3)]
        d = {x: 1 for x in ["k"]}
        return x, ys, d
    print(f())
    """, '("outer", [0, 1, 2], {"k": 1})\n'),
    # the first operand is resolved in the enclosing block
    ("""
    def f():
        x = [1, 2]
        return [x for x in x]
    print(f())
    """, "[1, 2]\n"),
    ("""
    x = [3, 4]
    print([x * 2 for x in x])
    """, "[6, 8]\n"),
    # comprehensions see enclosing locals and globals
    ("""
    K = 10
    def f(n):
        m = 2
        return [K + m * i for i in range(n)]
    print(f(3))
    """, "[10, 12, 14]\n"),
    # comprehension at top level referencing a global
    ("""
    base = [1, 2, 3]
    doubled = [b * 2 for b in base]
    index = {b: i for i, b in enumerate(base)}
    print(doubled, index)
    """, "[2, 4, 6] {1: 0, 2: 1, 3: 2}\n"),
    # evaluation order: the body runs once per surviving element, in order
    ("""
    log = []
    def t(x):
        log.append(x)
        return x
    r = [t(x) for x in range(4) if x % 2 == 0]
    print(r, log)
    """, "[0, 2] [0, 2]\n"),
    # a comprehension may mutate other values
    ("""
    acc = []
    _ = [acc.append(i) for i in range(3)]
    print(acc)
    """, "[0, 1, 2]\n"),
    # nested comprehension in a lambda in a comprehension
    ("""
    fs = [lambda n, k=k: [k * j for j in range(n)] for k in range(1, 3)]
    print([f(3) for f in fs])
    """, "[[0, 1, 2], [0, 2, 4]]\n"),
]


@pytest.mark.parametrize("src,want", PROGRAMS, ids=[f"p{i}" for i in range(len(PROGRAMS))])
def test_program(out, src, want):
    assert out(src) == want


ERRORS = [
    "[1//0 for x in [1] for y in z for z in ()]",
    "[x for x in 1]",
    "[x for x in None]",
    "[x for x in 'abc']",
    "[x for x in b'abc']",
    "[a for a, b in [(1, 2, 3)]]",
    "[a for a, b in [1]]",
    "{x: 1 for x in [[1]]}",
    "{x: 1 for x in [{}]}",
    "[x for x in range(3) if 1 // 0]",
]


@pytest.mark.parametrize("expr", ERRORS)
def test_error(fails, expr):
    fails(expr, expr=True)


def test_loop_variable_does_not_leak(sl, fails, capsys):
    # y is bound only in the comprehension's block: using it outside is a static error
    err = fails('print("ran")\ndef f():\n    [y for y in [1]]\n    return y\n')
    assert not isinstance(err, sl.EvalError)
    assert capsys.readouterr().out == ""
    err = fails('print("ran")\nz = [w for w in [1]]\nprint(w)\n')
    assert not isinstance(err, sl.EvalError)
    assert capsys.readouterr().out == ""


def test_comprehension_syntax_errors(sl, fails):
    for src in [
        "x = [2*x for x in 1, 2, 3]\n",
        "x = [2*x for x in lambda: 0]\n",
        "x = [x for x in]\n",
        "x = [x for in [1]]\n",
        "x = [x if x for x in [1]]\n",
        "x = [x for x, in [(1,)]]\n",
    ]:
        fails(src, sl.StarlarkSyntaxError)
