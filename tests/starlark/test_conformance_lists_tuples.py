"""Conformance: lists, tuples and ranges; indexing, slicing with strides, list
methods, assignment targets and unpacking (spec: Lists, Tuples, range,
Indexing, Slice expressions, Assignments, list·*)."""

import pytest

EXPRS = [
    # list literals and operators
    ("[]", []),
    ("[1]", [1]),
    ("[1, 2, 3,]", [1, 2, 3]),
    ("[1, 'a', None, True, 2.5]", [1, "a", None, True, 2.5]),
    ("[1, 2] + [3, 4]", [1, 2, 3, 4]),
    ("[1] * 3", [1, 1, 1]),
    ("3 * [1, 2]", [1, 2, 1, 2, 1, 2]),
    ("[1] * 0", []),
    ("[1] * -2", []),
    ("[x * x for x in [1, 2, 3, 4]]", [1, 4, 9, 16]),
    ("len([1, 2, 3])", 3),
    ("type([])", "list"),
    ("bool([])", False),
    ("bool([0])", True),
    # indexing
    ("[1, 2, 3][0]", 1),
    ("[1, 2, 3][-1]", 3),
    ("[1, 2, 3][-3]", 1),
    ("[[1, 2], [3]][0][1]", 2),
    # slicing with strides
    ("[0, 1, 2, 3, 4, 5][1:4]", [1, 2, 3]),
    ("[0, 1, 2, 3, 4, 5][::2]", [0, 2, 4]),
    ("[0, 1, 2, 3, 4, 5][1::2]", [1, 3, 5]),
    ("[0, 1, 2, 3, 4, 5][::-1]", [5, 4, 3, 2, 1, 0]),
    ("[0, 1, 2, 3, 4, 5][4:1:-1]", [4, 3, 2]),
    ("[0, 1, 2, 3, 4, 5][5:-10:-2]", [5, 3, 1]),
    ("[0, 1, 2, 3, 4, 5][-2:]", [4, 5]),
    ("[0, 1, 2, 3, 4, 5][:-2]", [0, 1, 2, 3]),
    ("[0, 1, 2, 3, 4, 5][-100:100]", [0, 1, 2, 3, 4, 5]),
    ("[0, 1, 2, 3, 4, 5][100:]", []),
    ("[0, 1, 2, 3, 4, 5][3:3]", []),
    ("[0, 1, 2, 3, 4, 5][::-4]", [5, 1]),
    ("[0, 1, 2, 3, 4, 5][-1:-3:-1]", [5, 4]),
    ("[0, 1, 2][None:None:-1]", [2, 1, 0]),
    # tuples
    ("()", ()),
    ("(1,)", (1,)),
    ("(1)", 1),
    ("(1, 2)", (1, 2)),
    ("(1, 2, 3,)", (1, 2, 3)),
    ("(1, 2) + (3, 4)", (1, 2, 3, 4)),
    ("3 * (True, 'a')", (True, "a", True, "a", True, "a")),
    ("(1, 2) * 2", (1, 2, 1, 2)),
    ("(1, 2, 3)[1]", 2),
    ("('zero', 'one', 'two')[-1]", "two"),
    ("(1, 2, 3)[1:]", (2, 3)),
    ("(1, 2, 3)[::-1]", (3, 2, 1)),
    ("(1, 2, 3, 4)[::2]", (1, 3)),
    ("type(())", "tuple"),
    ("bool(())", False),
    ("len((1, 2))", 2),
    ("tuple([1, 2])", (1, 2)),
    ("tuple()", ()),
    ("tuple((1,))", (1,)),
    ("tuple({'a': 1, 'b': 2})", ("a", "b")),
    ("tuple(range(3))", (0, 1, 2)),
    ("list((1, 2))", [1, 2]),
    ("list()", []),
    ("list({'a': 1, 'b': 2})", ["a", "b"]),
    ("list(range(3))", [0, 1, 2]),
    ("list([1, [2]])", [1, [2]]),
    # comparisons
    ("[1, 2] < [1, 3]", True),
    ("[1, 2] < [1, 2, 0]", True),
    ("[2] > [1, 9]", True),
    ("[] < [0]", True),
    ("(1, 'a') < (1, 'b')", True),
    ("(1, 2) <= (1, 2)", True),
    ("[1, 2] == [1, 2]", True),
    ("[1, 2] != [2, 1]", True),
    ("[1] == (1,)", False),
    ("() == []", False),
    ("[[1]] == [[1]]", True),
    ("(1, [2]) == (1, [2])", True),
    ("[1, 2.0] == [1.0, 2]", True),
    # membership
    ("1 in [1, 2, 3]", True),
    ("4 not in (1, 2, 3)", True),
    ("[1] in [[1], 2]", True),
    ("'a' in ('a', 'b')", True),
    ("None in [None]", True),
    ("3 in []", False),
    # hashing of tuples
    ("{(1, 2): 3}[(1, 2)]", 3),
    ("{('a', (1, None)): 1}[('a', (1, None))]", 1),
    # range
    ("list(range(10))", [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
    ("list(range(3, 10))", [3, 4, 5, 6, 7, 8, 9]),
    ("list(range(3, 10, 2))", [3, 5, 7, 9]),
    ("list(range(10, 3, -2))", [10, 8, 6, 4]),
    ("list(range(0))", []),
    ("list(range(-3))", []),
    ("list(range(3, 0))", []),
    ("list(range(0, -3, -1))", [0, -1, -2]),
    ("len(range(10))", 10),
    ("len(range(0, 10, 3))", 4),
    ("len(range(10, 0, -3))", 4),
    ("len(range(5, 5))", 0),
    ("len(range(1 << 40))", 1 << 40),
    ("range(1 << 40)[-1]", (1 << 40) - 1),
    ("range(10)[3]", 3),
    ("range(10)[-1]", 9),
    ("range(0, 10, 3)[-1]", 9),
    ("list(range(10)[2:5])", [2, 3, 4]),
    ("list(range(10)[::-3])", [9, 6, 3, 0]),
    ("list(range(10)[1::2])", [1, 3, 5, 7, 9]),
    ("range(5) == range(5)", True),
    ("range(0) == range(2, 1)", True),
    ("range(0, 5, 2) == range(0, 6, 2)", True),
    ("range(3) == range(4)", False),
    ("range(3) == [0, 1, 2]", False),
    ("3 in range(5)", True),
    ("5 in range(5)", False),
    ("4 in range(0, 10, 2)", True),
    ("5 in range(0, 10, 2)", False),
    ("3.0 in range(5)", True),
    ("bool(range(0))", False),
    ("bool(range(1))", True),
    ("type(range(3))", "range"),
    ("[x for x in range(3)]", [0, 1, 2]),
    ("range(3)", range(3)),
    ("range(1, 10, 2)", range(1, 10, 2)),
]


@pytest.mark.parametrize("expr,want", EXPRS, ids=[e for e, _ in EXPRS])
def test_expr(ev, same, expr, want):
    same(ev(expr), want)


PROGRAMS = [
    # list methods (spec examples)
    ("""
    x = []
    print(x.append(1))
    x.append(2)
    x.append(3)
    print(x)
    """, "None\n[1, 2, 3]\n"),
    ("""
    x = [1, 2, 3]
    print(x.clear())
    print(x)
    """, "None\n[]\n"),
    ("""
    x = []
    print(x.extend([1, 2, 3]))
    x.extend(["foo"])
    x.extend((4,))
    x.extend({"k": 1})
    x.extend(range(2))
    print(x)
    y = [1, 2]
    y.extend(y)
    print(y)
    """, 'None\n[1, 2, 3, "foo", 4, "k", 0, 1]\n[1, 2, 1, 2]\n'),
    ("""
    x = ["b", "a", "n", "a", "n", "a"]
    print(x.index("a"), x.index("a", 2), x.index("a", -2), x.index("b", -100), x.index("n", 1, 3))
    """, "1 3 5 0 2\n"),
    ("""
    x = ["b", "c", "e"]
    print(x.insert(0, "a"))
    x.insert(-1, "d")
    print(x)
    x.insert(100, "z")
    x.insert(-100, "_")
    print(x)
    """, 'None\n["a", "b", "c", "d", "e"]\n["_", "a", "b", "c", "d", "e", "z"]\n'),
    ("""
    x = [1, 2, 3]
    print(x.pop())
    print(x.pop())
    print(x)
    y = [1, 2, 3]
    print(y.pop(0), y)
    """, "3\n2\n[1]\n1 [2, 3]\n"),
    ("""
    x = [1, 2, 3, 2]
    print(x.remove(2))
    print(x)
    x.remove(2)
    print(x)
    """, "None\n[1, 3, 2]\n[1, 3]\n"),
    # aliasing (spec: Identity and mutation)
    ("""
    x = []
    y = x
    x.append(1)
    print(y)
    """, "[1]\n"),
    ("""
    def f(y):
        y.append(1)
    x = []
    f(x)
    print(x)
    """, "[1]\n"),
    # += on a list mutates in place; on a tuple it rebinds
    ("""
    def f():
        a = [1]
        b = a
        a += [2]
        a += [3]
        t = (1,)
        u = t
        t += (2,)
        print(a, b, t, u)
    f()
    """, "[1, 2, 3] [1, 2, 3] (1, 2) (1,)\n"),
    # element assignment
    ("""
    a = [0, 1, 2]
    a[2] = 7
    a[-3] = 5
    print(a)
    """, "[5, 1, 7]\n"),
    ("""
    def f():
        a = [[0], [1]]
        a[1][0] = 9
        a[0] += [8]
        print(a)
    f()
    """, "[[0, 8], [9]]\n"),
    # augmented assignment evaluates the target's operands once (spec example)
    ("""
    calls = []
    def index():
        calls.append(1)
        return 1
    a = [1, 2, 3]
    a[index()] *= 2
    print(a, len(calls))
    """, "[1, 4, 3] 1\n"),
    # unpacking assignments
    ("""
    a, b = 2, 3
    (c, d) = [4, 5]
    [zero, one, two] = range(3)
    [] = ()
    (e, (f, g)), h = (1, (2, 3)), 4
    [i, [j]] = (5, [6])
    print(a, b, c, d, zero, one, two, e, f, g, h, i, j)
    """, "2 3 4 5 0 1 2 1 2 3 4 5 6\n"),
    ("""
    def f():
        a, b = 1, 2
        a, b = b, a
        return a, b
    print(f())
    """, "(2, 1)\n"),
    # a tuple's mutable elements may be modified
    ("""
    t = ([1], 2)
    t[0].append(3)
    print(t)
    """, "([1, 3], 2)\n"),
    # list printing
    ("""
    print([1, "two", (3,), [4.0], {"five": 5}, None, True])
    """, '[1, "two", (3,), [4.0], {"five": 5}, None, True]\n'),
    ("""
    print((), (1,), (1, 2))
    """, "() (1,) (1, 2)\n"),
]


@pytest.mark.parametrize("src,want", PROGRAMS, ids=[f"p{i}" for i in range(len(PROGRAMS))])
def test_program(out, src, want):
    assert out(src) == want


ERRORS = [
    "[1, 2, 3][3]",
    "[1, 2, 3][-4]",
    "[][0]",
    "[1]['a']",
    "[1][1.0]",
    "[1][None]",
    "[1, 2][::0]",
    "(1,)[1]",
    "()[0]",
    "(1, 2)[::0]",
    "[1] + (1,)",
    "(1,) + [1]",
    "[1] + 1",
    "[1] * 'a'",
    "[1] * 1.5",
    "[1] * True",
    "False * (1,)",
    "[1] - [1]",
    "[1] < (1,)",
    "[1] < ['a']",
    "(1,) < ('a',)",
    "{[1]: 2}",
    "{([1], 2): 3}",
    "{(1, {}): 2}",
    "set([[1]])",
    "[].pop()",
    "[1].pop(1)",
    "[1].pop(5)",
    "[1, 2].index(3)",
    "[1, 2].index(1, 1)",
    "[1].index(1, 'a')",
    "[1].remove(2)",
    "[].insert('a', 1)",
    "[].extend(1)",
    "[].extend(None)",
    "[].append()",
    "[].append(1, 2)",
    "[].nosuchmethod",
    "range(1, 2, 0)",
    "range()",
    "range(1, 2, 3, 4)",
    "range('a')",
    "range(1.5)",
    "range(3)[3]",
    "range(3)[-4]",
    "{range(3): 1}",
    "range(3) + range(3)",
    "range(3) < range(4)",
    "tuple(1)",
    "list(1)",
    "list(None)",
    "len(1)",
    "len(None)",
    "len(True)",
]


@pytest.mark.parametrize("expr", ERRORS)
def test_error(fails, expr):
    fails(expr, expr=True)


@pytest.mark.parametrize("src", [
    "t = (1, 2)\nt[0] = 5\n",
    "a = [1]\na[1] = 2\n",
    "a = [1]\na[-2] = 2\n",
    "a = [1]\na['x'] = 2\n",
    "r = range(3)\nr[0] = 1\n",
    "a, b = 1, 2, 3\n",
    "a, b = (1,)\n",
    "a, b = 1\n",
    "(a, b), c = (1, 2, 3), 4\n",
    "[a] = []\n",
])
def test_bad_assignment(fails, src):
    fails(src)


def test_slice_assignment_is_rejected(fails):
    # "Unlike Python, Starlark does not allow a slice expression on the left side of an assignment."
    fails("a = [1, 2, 3]\na[0:1] = [9]\n")


def test_trailing_comma_in_unparenthesized_tuple_is_syntax_error(sl, fails):
    fails("def f(d):\n    for k, v, in d.items():\n        pass\n", sl.StarlarkSyntaxError)
    fails("x = [(v, k) for k, v, in {}.items()]\n", sl.StarlarkSyntaxError)


def test_trailing_commas_allowed(ev):
    assert ev("sorted([3, 1, 4, 1,],)") == [1, 1, 3, 4]
    assert ev("[1, 2, 3, ]") == [1, 2, 3]
    assert ev("{1: 2, 3: 4, }") == {1: 2, 3: 4}


def test_list_crosses_into_python_as_list(sl):
    g = sl.exec_file("x = [1, [2, 'a'], (3, 4)]\nt = (1, [2])\n")
    assert isinstance(g["x"], list) and g["x"] == [1, [2, "a"], (3, 4)]
    assert isinstance(g["x"][1], list)
    assert isinstance(g["t"], tuple) and isinstance(g["t"][1], list)


def test_host_list_usable(sl):
    assert sl.eval_expr("x[1:] + [len(x)]", predeclared={"x": [1, 2, 3]}) == [2, 3, 3]
    assert sl.eval_expr("t[0] + t[-1]", predeclared={"t": (10, 20, 30)}) == 40
