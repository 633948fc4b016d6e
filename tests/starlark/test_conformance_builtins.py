"""Conformance: the predeclared functions (spec: Built-in constants and
functions): any, all, bool, dict, dir, enumerate, fail, float, getattr,
hasattr, hash, int, len, list, max, min, print, range, repr, reversed, set,
sorted, str, tuple, type, zip; plus the host-side struct() and freeze().

int/float/bytes/range/str conversions are covered in their own topic files too.
"""

import pytest

EXPRS = [
    # None, True, False
    ("None", None),
    ("True", True),
    ("False", False),
    ("type(None)", "NoneType"),
    ("type(True)", "bool"),
    ("None == None", True),
    ("None == False", False),
    ("None != 0", True),
    ("False < True", True),
    # any / all
    ("any([0, '', 1])", True),
    ("any([0, '', None])", False),
    ("any([])", False),
    ("any(set([0]))", False),
    ("any({0: 0, 1: 0})", True),
    ("any((False, [0]))", True),
    ("all([])", True),
    ("all([1, 'a', [0]])", True),
    ("all([1, 0])", False),
    ("all({'': 1})", False),
    ("all(range(1, 3))", True),
    # bool
    ("bool()", False),
    ("bool(0)", False),
    ("bool(1)", True),
    ("bool(-1)", True),
    ("bool(0.0)", False),
    ("bool(0.1)", True),
    ("bool(None)", False),
    ("bool('')", False),
    ("bool('False')", True),
    ("bool([])", False),
    ("bool(())", False),
    ("bool({})", False),
    ("bool(set())", False),
    ("bool(range(0))", False),
    ("bool(len)", True),
    ("bool(lambda: 0)", True),
    ("bool(True)", True),
    # dir
    ("'split' in dir('x')", True),
    ("'elems' in dir('x')", True),
    ("'append' in dir([])", True),
    ("'keys' in dir({})", True),
    ("'union' in dir(set())", True),
    ("dir('') == sorted(dir(''))", True),
    ("dir([]) == sorted(dir([]))", True),
    ("dir(1)", []),
    ("dir(None)", []),
    ("type(dir(''))", "list"),
    ("[n for n in dir('') + dir([]) + dir({}) + dir(set()) if n.startswith('_')]", []),
    # enumerate
    ("enumerate(['zero', 'one', 'two'])", [(0, "zero"), (1, "one"), (2, "two")]),
    ("enumerate(['one', 'two'], 1)", [(1, "one"), (2, "two")]),
    ("enumerate([])", []),
    ("enumerate({'a': 1})", [(0, "a")]),
    ("enumerate(range(2), -5)", [(-5, 0), (-4, 1)]),
    ("[i * v for i, v in enumerate([5, 6])]", [0, 6]),
    # getattr / hasattr
    ("getattr('banana', 'split')('a')", ["b", "n", "n", ""]),
    ("getattr('banana', 'myattr', 'mydefault')", "mydefault"),
    ("getattr([], 'nope', None)", None),
    ("getattr({'a': 1}, 'get')('a')", 1),
    ("hasattr('x', 'split')", True),
    ("hasattr('x', 'nope')", False),
    ("hasattr([], 'append')", True),
    ("hasattr({}, 'append')", False),
    ("hasattr(1, 'real')", False),
    ("hasattr(None, 'x')", False),
    # hash (spec: java.lang.String.hashCode for strings)
    ("hash('')", 0),
    ("hash('a')", 97),
    ("hash('ab')", 3105),
    ("hash('hello') == hash('hel' + 'lo')", True),
    ("type(hash(b'abc'))", "int"),
    # len
    ("len('abc')", 3),
    ("len(b'abc')", 3),
    ("len([1, 2])", 2),
    ("len((1,))", 1),
    ("len({'a': 1})", 1),
    ("len(set([1, 2, 2]))", 2),
    ("len(range(2, 10, 3))", 3),
    ("len(list('ab'.elems()))", 2),
    # list / tuple / dict / set constructors
    ("list([1, 2])", [1, 2]),
    ("list(set([2, 1]))", [2, 1]),
    ("tuple([1, [2]])", (1, [2])),
    ("dict(a=1)", {"a": 1}),
    ("sorted(set([2, 1]))", [1, 2]),
    # max / min (spec examples)
    ("max([3, 1, 4, 1, 5, 9])", 9),
    ("max('two', 'three', 'four')", "two"),
    ("max('two', 'three', 'four', key=len)", "three"),
    ("min([3, 1, 4, 1, 5, 9])", 1),
    ("min('two', 'three', 'four')", "four"),
    ("min('two', 'three', 'four', key=len)", "two"),
    ("max(1, 2)", 2),
    ("min(3, 1, 2)", 1),
    ("max([1, 2.5])", 2.5),
    ("min([1.5, 1])", 1),
    ("max(set([1, 3, 2]))", 3),
    ("max({'a': 1, 'b': 0})", "b"),
    ("max([(1, 'b'), (1, 'a')])", (1, "b")),
    ("max([-1, -5], key=abs)", -5),
    ("min(['bb', 'a', 'c'], key=len)", "a"),
    ("max(['a', 'b', 'c'], key=lambda s: 0)", "a"),
    ("min(['a', 'b', 'c'], key=lambda s: 0)", "a"),
    ("max(range(5))", 4),
    # repr / str
    ("repr(1)", "1"),
    ("repr('x')", '"x"'),
    ("repr([1, 'x'])", '[1, "x"]'),
    ("repr(None)", "None"),
    ("repr(True)", "True"),
    ("repr((1, 'a', [None]))", '(1, "a", [None])'),
    ("str(1)", "1"),
    ("str('x')", "x"),
    ("str([1, 'x'])", '[1, "x"]'),
    ("str(0.0)", "0.0"),
    ("str(b'abc')", "abc"),
    ("type(str(len))", "string"),
    # reversed (spec examples)
    ("reversed(range(5))", [4, 3, 2, 1, 0]),
    ("reversed({'one': 1, 'two': 2}.keys())", ["two", "one"]),
    ("reversed([1, 2, 3])", [3, 2, 1]),
    ("reversed((1, 2))", [2, 1]),
    ("reversed([])", []),
    ("reversed({'a': 1, 'b': 2})", ["b", "a"]),
    ("reversed(set([1, 2]))", [2, 1]),
    ("type(reversed((1,)))", "list"),
    # sorted (spec examples)
    ("sorted([3, 1, 4, 1, 5, 9])", [1, 1, 3, 4, 5, 9]),
    ("sorted([3, 1, 4, 1, 5, 9], reverse=True)", [9, 5, 4, 3, 1, 1]),
    ("sorted(['two', 'three', 'four'], key=len)", ["two", "four", "three"]),
    ("sorted(['two', 'three', 'four'], key=len, reverse=True)", ["three", "four", "two"]),
    ("sorted(['bb', 'a', 'cc', 'b'], key=len)", ["a", "b", "bb", "cc"]),
    ("sorted([(1, 'b'), (0, 'x'), (1, 'a')], key=lambda p: p[0])", [(0, "x"), (1, "b"), (1, "a")]),
    ("sorted([(1, 'b'), (0, 'x'), (1, 'a')], key=lambda p: p[0], reverse=True)",
     [(1, "b"), (1, "a"), (0, "x")]),
    ("sorted([])", []),
    ("sorted((2, 1))", [1, 2]),
    ("sorted({'b': 1, 'a': 2})", ["a", "b"]),
    ("sorted(['b', 'a', 'C'])", ["C", "a", "b"]),
    ("sorted([1, 0.5, -1, 2.0])", [-1, 0.5, 1, 2.0]),
    ("sorted([[2], [1, 5], [1]])", [[1], [1, 5], [2]]),
    ("sorted([b'b', b'a'])", [b"a", b"b"]),
    ("sorted([True, False])", [False, True]),
    ("sorted([3, 1, 2], reverse=False)", [1, 2, 3]),
    ("sorted(range(3), key=lambda x: -x)", [2, 1, 0]),
    # type (spec examples and the other core types)
    ("type(0)", "int"),
    ("type(0.0)", "float"),
    ("type('')", "string"),
    ("type(b'')", "bytes"),
    ("type([])", "list"),
    ("type(())", "tuple"),
    ("type({})", "dict"),
    ("type(set())", "set"),
    ("type(range(1))", "range"),
    ("type(len)", "builtin_function_or_method"),
    ("type([].append)", "builtin_function_or_method"),
    ("type(lambda: 0)", "function"),
    ("type(type(1))", "string"),
    # zip (spec examples)
    ("zip()", []),
    ("zip(range(5))", [(0,), (1,), (2,), (3,), (4,)]),
    ("zip(range(10), ['a', 'b', 'c'])", [(0, "a"), (1, "b"), (2, "c")]),
    ("zip([1, 2], (3, 4), {'x': 0, 'y': 0})", [(1, 3, "x"), (2, 4, "y")]),
    ("zip([1, 2], [])", []),
    ("type(zip())", "list"),
]


@pytest.mark.parametrize("expr,want", EXPRS, ids=[e for e, _ in EXPRS])
def test_expr(ev, same, expr, want):
    same(ev(expr), want)


ERRORS = [
    "any(1)",
    "all(None)",
    "any()",
    "bool(1, 2)",
    "dir()",
    "enumerate(1)",
    "enumerate([1], 'a')",
    "getattr('x', 'nope')",
    "getattr('x', 1)",
    "getattr('x')",
    "hasattr('x')",
    "hasattr('x', 1)",
    "hash([])",
    "hash({})",
    "hash(set())",
    "hash()",
    "len()",
    "len(1)",
    "len(None)",
    "len(len)",
    "list(1, 2)",
    "max([])",
    "min([])",
    "max()",
    "max(1)",
    "max(1, 'a')",
    "min([1, 'a'])",
    "max([{}, {}])",
    "max([1, 2], key=1)",
    "max([1, 2], nope=1)",
    "repr()",
    "repr(1, 2)",
    "reversed(1)",
    "reversed(None)",
    "set(1, 2)",
    "sorted(1)",
    "sorted([1, 'a'])",
    "sorted([None, None])",
    "sorted([{}, {}])",
    "sorted([1, 2], key=len)",
    "sorted([1], nope=1)",
    "str(1, 2)",
    "tuple(1)",
    "type()",
    "type(1, 2)",
    "zip(1)",
    "zip([1], None)",
    "fail('oops')",
    "len([1], x=1)",
    "list(x=1)",
    "nosuchbuiltin(1)",
    "print(1, sep=1)",
    "print(1, end='')",
]


@pytest.mark.parametrize("expr", ERRORS)
def test_error(fails, expr):
    fails(expr, expr=True)


def test_sorted_calls_key_once_per_element(out):
    assert out("""
    calls = []
    def k(x):
        calls.append(x)
        return -x
    print(sorted([3, 1, 2], key=k), calls)
    calls2 = []
    def k2(x):
        calls2.append(x)
        return x
    print(sorted([7], key=k2), calls2)
    """) == "[3, 2, 1] [3, 1, 2]\n[7] [7]\n"


def test_sorted_returns_new_list(out):
    assert out("""
    a = [3, 1, 2]
    b = sorted(a)
    b.append(0)
    print(a, b)
    """) == "[3, 1, 2] [1, 2, 3, 0]\n"


def test_fail(sl):
    with pytest.raises(sl.EvalError) as info:
        sl.exec_file('fail("oops")\n')
    assert "oops" in info.value.msg
    with pytest.raises(sl.EvalError) as info:
        sl.exec_file('fail("oops", 1, False)\n')
    assert "oops 1 False" in info.value.msg
    with pytest.raises(sl.EvalError) as info:
        sl.exec_file('def f(x):\n    fail("bad value:", x)\nf([1, "a"])\n')
    assert 'bad value: [1, "a"]' in info.value.msg


def test_fail_stops_execution(sl, capsys):
    with pytest.raises(sl.StarlarkError):
        sl.exec_file('print("before")\nfail("stop")\nprint("after")\n')
    assert capsys.readouterr().out == "before\n"


def test_print_sep_and_str_formatting(out):
    assert out('print("a", 1, [2], sep="-")\nprint("x", sep="ignored")\n') == 'a-1-[2]\nx\n'


def test_builtins_are_values(ev):
    assert ev("[f(x) for f, x in [(len, 'ab'), (str, 1), (repr, 'a'), (type, 1)]]") == [2, "1", '"a"', "int"]
    assert ev("len == len") is True
    assert ev("{len: 1}[len]") == 1


def test_struct(sl):
    s = sl.struct(a=1, b="x", c=[1, 2])
    pre = {"s": s, "struct": sl.struct}
    assert sl.eval_expr("s.a", predeclared=pre) == 1
    assert sl.eval_expr("s.b + getattr(s, 'b')", predeclared=pre) == "xx"
    assert sl.eval_expr("s.c[-1]", predeclared=pre) == 2
    assert sl.eval_expr("[hasattr(s, 'a'), hasattr(s, 'zz')]", predeclared=pre) == [True, False]
    assert sl.eval_expr("getattr(s, 'zz', 'dflt')", predeclared=pre) == "dflt"
    assert sl.eval_expr("[n for n in dir(s) if n in ('a', 'b', 'c')]", predeclared=pre) == ["a", "b", "c"]
    assert sl.eval_expr("struct(k=1, j=2).j", predeclared=pre) == 2
    with pytest.raises(sl.StarlarkError):
        sl.eval_expr("s.zz", predeclared=pre)


def test_freeze_host_side(sl):
    value = sl.freeze([1, [2], {"k": [3]}])
    assert value == [1, [2], {"k": [3]}]
    assert isinstance(value, list)
    for prog in ["v.append(1)", "v[1].append(1)", "v[2]['j'] = 1", "v[2]['k'].append(1)", "v[0] = 5"]:
        with pytest.raises(sl.StarlarkError):
            sl.exec_file(prog + "\n", predeclared={"v": value})
    # reading is fine
    assert sl.eval_expr("v[2]['k'][0] + len(v)", predeclared={"v": value}) == 6


def test_chr_ord_if_provided(sl):
    try:
        got = sl.eval_expr("[ord('a'), chr(97)]")
    except sl.ResolveError:
        pytest.skip("chr/ord are not predeclared in this dialect")
    assert got == [97, "a"]


def test_builtins_can_be_shadowed(sl):
    assert sl.eval_expr("len([1])", predeclared={"len": lambda x: 99}) == 99
    g = sl.exec_file("def len(x):\n    return 7\nn = len([])\n")
    assert g["n"] == 7
    g = sl.exec_file("def f():\n    str = 'local'\n    return str\nr = f()\ns = str(1)\n")
    assert (g["r"], g["s"]) == ("local", "1")
