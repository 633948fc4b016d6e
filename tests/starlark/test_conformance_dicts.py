"""Conformance: dictionaries (spec: Dictionaries, Dictionary expressions, dict,
dict·*, Hashing, `|` union)."""

import pytest

EXPRS = [
    ("{}", {}),
    ("{'one': 1}", {"one": 1}),
    ("{'one': 1, 'two': 2,}", {"one": 1, "two": 2}),
    ("{1: 'a', 'b': 2, None: 3, (1, 2): 4, 2.5: 5, b'x': 6}",
     {1: "a", "b": 2, None: 3, (1, 2): 4, 2.5: 5, b"x": 6}),
    ("{'b': 1, 'a': 2}", {"b": 1, "a": 2}),
    ("{'a': 1}['a']", 1),
    ("{(1, 2): 'p'}[(1, 2)]", "p"),
    ("{1.0: 'x'}[1]", "x"),
    ("len({'a': 1, 'b': 2})", 2),
    ("len({})", 0),
    ("type({})", "dict"),
    ("bool({})", False),
    ("bool({0: 0})", True),
    # dict()
    ("dict()", {}),
    ("dict([(1, 2), (3, 4)])", {1: 2, 3: 4}),
    ("dict([(1, 2), ['a', 'b']])", {1: 2, "a": "b"}),
    ("dict(one=1, two=2)", {"one": 1, "two": 2}),
    ("dict([(1, 2)], x=3)", {1: 2, "x": 3}),
    ("dict([('x', 1)], x=3)", {"x": 3}),
    ("dict({'a': 1, 'b': 2})", {"a": 1, "b": 2}),
    ("dict([('a', 1), ('a', 2)])", {"a": 2}),
    ("dict(((1, 2),))", {1: 2}),
    ("dict([])", {}),
    # membership
    ("'one' in {'one': 1, 'two': 2}", True),
    ("'three' in {'one': 1, 'two': 2}", False),
    ("1 in {'one': 1, 'two': 2}", False),
    ("'one' not in {'one': 1}", False),
    ("(1, 2) in {(1, 2): 0}", True),
    # equality (order is not significant)
    ("{'a': 1, 'b': 2} == {'b': 2, 'a': 1}", True),
    ("{'a': 1} == {'a': 2}", False),
    ("{'a': 1} != {'a': 1, 'b': 2}", True),
    ("{} == {}", True),
    ("{'a': [1]} == {'a': [1]}", True),
    ("{} == []", False),
    # union
    ("{'a': 1, 'b': 2} | {'b': 3, 'c': 4}", {"a": 1, "b": 3, "c": 4}),
    ("{'b': 1} | {'a': 2, 'b': 3}", {"b": 3, "a": 2}),
    ("{} | {}", {}),
    # get / keys / values / items
    ("{'one': 1, 'two': 2}.get('one')", 1),
    ("{'one': 1, 'two': 2}.get('three')", None),
    ("{'one': 1, 'two': 2}.get('three', 0)", 0),
    ("{'one': 1, 'two': 2}.items()", [("one", 1), ("two", 2)]),
    ("{'one': 1, 'two': 2}.keys()", ["one", "two"]),
    ("{'one': 1, 'two': 2}.values()", [1, 2]),
    ("{}.items()", []),
    ("type({}.keys())", "list"),
    ("type({}.items())", "list"),
    ("type({}.values())", "list"),
    # comprehension and iteration order
    ("{x: len(x) for x in ['able', 'baker', 'charlie']}", {"able": 4, "baker": 5, "charlie": 7}),
    ("{k % 2: k for k in range(4)}", {0: 2, 1: 3}),
    ("[k for k in {'b': 1, 'a': 2, 'c': 3}]", ["b", "a", "c"]),
    ("sorted({'b': 1, 'a': 2})", ["a", "b"]),
    ("reversed({'one': 1, 'two': 2}.keys())", ["two", "one"]),
    ("str({'a': 1, 2: [3], (4,): None})", '{"a": 1, 2: [3], (4,): None}'),
    ("repr({'k': 'v'})", '{"k": "v"}'),
]


@pytest.mark.parametrize("expr,want", EXPRS, ids=[e for e, _ in EXPRS])
def test_expr(ev, same, expr, want):
    same(ev(expr), want)


PROGRAMS = [
    # spec examples of indexing and insertion
    ("""
    coins = {
      "penny": 1,
      "nickel": 5,
      "dime": 10,
      "quarter": 25,
    }
    print(coins["penny"], coins["dime"], len(coins))
    coins["shilling"] = 20
    print(len(coins))
    coins["shilling"] = 5
    print(len(coins), coins["shilling"])
    for name in coins:
        print(name, coins[name])
    """, "1 10 4\n5\n5 5\npenny 1\nnickel 5\ndime 10\nquarter 25\nshilling 5\n"),
    # updating an existing key keeps its position; delete + reinsert moves it to the end
    ("""
    d = {"a": 1, "b": 2, "c": 3}
    d["a"] = 9
    print(list(d))
    d.pop("a")
    d["a"] = 0
    print(d)
    """, '["a", "b", "c"]\n{"b": 2, "c": 3, "a": 0}\n'),
    ("""
    x = dict([("a", 1), ("b", 2)])
    x.update([("a", 3), ("c", 4)])
    print(x)
    """, '{"a": 3, "b": 2, "c": 4}\n'),
    ("""
    x = {"one": 1, "two": 2}
    print(x.clear())
    print(x)
    """, "None\n{}\n"),
    ("""
    x = {"one": 1, "two": 2}
    print(x.pop("one"))
    print(x)
    print(x.pop("three", 0))
    print(x.pop("two", 7), x)
    """, '1\n{"two": 2}\n0\n2 {}\n'),
    ("""
    x = {"one": 1, "two": 2}
    print(x.popitem())
    print(x.popitem())
    print(x)
    """, '("one", 1)\n("two", 2)\n{}\n'),
    ("""
    x = {"one": 1, "two": 2}
    print(x.setdefault("one"))
    print(x.setdefault("three", 3))
    print(x)
    print(x.setdefault("three", 33))
    print(x.setdefault("four"))
    print(x)
    """, '1\n3\n{"one": 1, "two": 2, "three": 3}\n3\nNone\n'
         '{"one": 1, "two": 2, "three": 3, "four": None}\n'),
    ("""
    x = {}
    print(x.update([("a", 1), ("b", 2)], c=3))
    x.update({"d": 4})
    x.update(e=5)
    x.update(None)
    x.update()
    x.update([["f", 6]])
    print(x)
    """, 'None\n{"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6}\n'),
    ("""
    x = {"a": 1}
    x.update(x)
    print(x)
    """, '{"a": 1}\n'),
    ("""
    x = {"b": 1}
    y = x
    x |= {"a": 2, "b": 3}
    print(x, y)
    z = x | {"c": 4}
    print(z, x)
    """, '{"b": 3, "a": 2} {"b": 3, "a": 2}\n{"b": 3, "a": 2, "c": 4} {"b": 3, "a": 2}\n'),
    ("""
    d = {}
    d[(1, "a")] = "t"
    d[None] = "n"
    d[False] = "f"
    print(d[(1, "a")], d[None], d[False])
    """, "t n f\n"),
    ("""
    def f():
        d = {}
        for k, v in [("x", 1), ("y", 2)]:
            d[k] = v
        for k, v in d.items():
            print(k, v)
    f()
    """, "x 1\ny 2\n"),
    # spec: Pass statements example, an index expression as a loop variable
    ("""
    def list_to_dict(items):
        m = {}
        for k, m[k] in items:
            pass
        return m
    print(list_to_dict([("a", 1), ("b", 2)]))
    """, '{"a": 1, "b": 2}\n'),
    ("""
    m = {"k": [1]}
    m["k"].append(2)
    m["k"] += [3]
    print(m)
    """, '{"k": [1, 2, 3]}\n'),
]


@pytest.mark.parametrize("src,want", PROGRAMS, ids=[f"p{i}" for i in range(len(PROGRAMS))])
def test_program(out, src, want):
    assert out(src) == want


ERRORS = [
    "{'a': 1}['b']",
    "{}[0]",
    "{[1]: 2}",
    "{{}: 2}",
    "{set(): 1}",
    "{'a': 1}[[]]",
    "{'a': 1, 'a': 2}",
    "{1: 'x', 1: 'y'}",
    "{}.get([])",
    "{}.get()",
    "{}.pop('x')",
    "{}.pop([])",
    "{}.popitem()",
    "{}.setdefault([])",
    "{}.update(1)",
    "{}.update([1])",
    "{}.update([(1, 2, 3)])",
    "{}.update({}, {})",
    "{}.nosuchmethod()",
    "dict(1)",
    "dict([1, 2])",
    "dict([(1,)])",
    "dict([(1, 2, 3)])",
    "dict({}, {})",
    "dict([([], 1)])",
    "{} < {}",
    "{'a': 1} <= {'a': 1}",
    "{} | []",
    "{} | None",
    "{} + {}",
    "{x: 1 for x in [[1]]}",
    "{'a': 1}.keys()[5]",
]


@pytest.mark.parametrize("expr", ERRORS)
def test_error(fails, expr):
    fails(expr, expr=True)


def test_dict_crosses_into_python_as_dict(sl):
    g = sl.exec_file("d = {'b': [1], 'a': {'x': (1, 2)}}\n")
    assert isinstance(g["d"], dict)
    assert list(g["d"]) == ["b", "a"]
    assert g["d"] == {"b": [1], "a": {"x": (1, 2)}}


def test_host_dict_usable(sl):
    assert sl.eval_expr("d['k'][0] + len(d)", predeclared={"d": {"k": [41], "j": 0}}) == 43
    assert sl.eval_expr("sorted(d.keys())", predeclared={"d": {"b": 1, "a": 2}}) == ["a", "b"]


def test_dict_with_kwargs_splat(ev):
    assert ev("dict(**{'a': 1})") == {"a": 1}
    assert ev("dict([('z', 0)], a=1, **{'b': 2})") == {"z": 0, "a": 1, "b": 2}


def test_views_are_new_lists(out):
    assert out("""
    d = {"a": 1}
    k = d.keys()
    k.append("zz")
    i = d.items()
    i.append(("q", 2))
    v = d.values()
    v.append(3)
    print(d, k, i, v)
    """) == '{"a": 1} ["a", "zz"] [("a", 1), ("q", 2)] [1, 3]\n'
