"""Conformance: sets (spec: Sets, set, set·*).

Sets are compared inside Starlark (or listed in iteration order) so that the
suite does not depend on how a set crosses into Python.
"""

import pytest

EXPRS = [
    ("type(set())", "set"),
    ("len(set())", 0),
    ("len(set([3, 1, 1, 2]))", 3),
    ("list(set([3, 1, 1, 2]))", [3, 1, 2]),
    ("list(set({'k1': 'v1', 'k2': 'v2'}))", ["k1", "k2"]),
    ("list(set(('z', 'y', 'z', 'y')))", ["z", "y"]),
    ("list(set(range(3)))", [0, 1, 2]),
    ("'a' in set(['a', 'b', 'c'])", True),
    ("'z' in set(['a', 'b', 'c'])", False),
    ("'z' not in set(['a'])", True),
    ("(1, 2) in set([(1, 2)])", True),
    ("set() == set()", True),
    ("set() != []", True),
    ("set([1, 2]) == set([2, 1])", True),
    ("set([1, 2]) != [1, 2]", True),
    ("set([1, 2]) == set([1, 2, 3])", False),
    ("'non-empty' if set() else 'empty'", "empty"),
    ("'non-empty' if set(['x', 'y']) else 'empty'", "non-empty"),
    ("bool(set([0]))", True),
    # operators: results keep left-operand order, then right-only elements
    ("list(set([1, 2]) | set([3, 2]))", [1, 2, 3]),
    ("list(set([1, 2]) & set([2, 3]))", [2]),
    ("list(set([1, 2]) & set([3, 4]))", []),
    ("list(set([1, 2]) - set([2, 3]))", [1]),
    ("list(set([1, 2]) - set([3, 4]))", [1, 2]),
    ("list(set([1, 2]) ^ set([2, 3]))", [1, 3]),
    ("list(set([1, 2]) ^ set([3, 4]))", [1, 2, 3, 4]),
    ("list(set([3, 1]) | set([2, 1]))", [3, 1, 2]),
    # methods returning values (spec examples)
    ("list(set([1, 2, 3]).difference([2]))", [1, 3]),
    ("list(set([1, 2, 3]).difference([0, 1], [3, 4]))", [2]),
    ("list(set([1, 2, 3]).difference())", [1, 2, 3]),
    ("list(set([1, 2]).intersection([2, 3]))", [2]),
    ("list(set([1, 2, 3]).intersection([0, 1], [1, 2]))", [1]),
    ("list(set([1, 2]).intersection())", [1, 2]),
    ("list(set([1, 2]).symmetric_difference([2, 3]))", [1, 3]),
    ("list(set([1, 2]).union([2, 3]))", [1, 2, 3]),
    ("list(set([1, 2]).union([2, 3], {3: 'a', 4: 'b'}))", [1, 2, 3, 4]),
    ("list(set([1, 2]).union())", [1, 2]),
    ("set([1, 2]).isdisjoint([3, 4])", True),
    ("set([1, 2]).isdisjoint([2])", False),
    ("set().isdisjoint([])", True),
    ("set([1, 2]).issubset([1, 2, 3])", True),
    ("set([1, 2]).issubset([1])", False),
    ("set().issubset([])", True),
    ("set([1, 2]).issuperset([1])", True),
    ("set([1, 2]).issuperset([1, 3])", False),
    ("set([1]).issuperset(set())", True),
    ("set([1, 2]).union([3]) == set([3, 2, 1])", True),
    ("str(set([1, 2, 3]))", "set([1, 2, 3])"),
    ("str(set(['a']))", 'set(["a"])'),
    ("str(set())", "set()"),
    ("sorted(set([3, 1, 2]))", [1, 2, 3]),
    ("[x * 2 for x in set([1, 2])]", [2, 4]),
    ("len(set([1, 1.0]))", 1),
]


@pytest.mark.parametrize("expr,want", EXPRS, ids=[e for e, _ in EXPRS])
def test_expr(ev, same, expr, want):
    same(ev(expr), want)


PROGRAMS = [
    # spec example of iteration order
    ("""
    s = set(["z", "y", "z", "y"])
    print(len(s))
    s.add("x")
    print(len(s))
    for e in s:
        print(e)
    """, "2\n3\nz\ny\nx\n"),
    # augmented assignments modify in place (spec example)
    ("""
    s = set([1, 2])
    t = s
    s |= set([2, 3, 4])
    print(list(s), s == set([1, 2, 3, 4]))
    s &= set([0, 1, 2, 3])
    print(s == set([1, 2, 3]))
    s -= set([0, 1])
    print(s == set([2, 3]))
    s ^= set([3, 4])
    print(s == set([2, 4]), t == set([2, 4]))
    """, "[1, 2, 3, 4] True\nTrue\nTrue\nTrue True\n"),
    ("""
    s = set([1])
    print(s.add(2), s.add(1), list(s))
    """, "None None [1, 2]\n"),
    ("""
    s = set([1, 2])
    print(s.clear(), len(s))
    """, "None 0\n"),
    ("""
    s = set([1, 2, 3, 4])
    print(s.difference_update([2]))
    print(list(s))
    s.difference_update([0, 1], [4, 5])
    print(list(s))
    s.difference_update()
    print(list(s))
    """, "None\n[1, 3, 4]\n[3]\n[3]\n"),
    ("""
    s = set(["x", "y"])
    print(s.discard("y"), list(s))
    print(s.discard("y"), list(s))
    """, 'None ["x"]\nNone ["x"]\n'),
    ("""
    s = set([1, 2, 3, 4])
    print(s.intersection_update([0, 1, 2]))
    print(list(s))
    s.intersection_update([0, 1], [1, 2])
    print(list(s))
    """, "None\n[1, 2]\n[1]\n"),
    ("""
    s = set([3, 1, 2])
    print(s.pop(), list(s))
    print(s.pop(), list(s))
    print(s.pop(), list(s))
    """, "3 [1, 2]\n1 [2]\n2 []\n"),
    ("""
    s = set([1, 2])
    print(s.remove(2), list(s))
    """, "None [1]\n"),
    ("""
    s = set([1, 2])
    print(s.symmetric_difference_update([2, 3]), s == set([1, 3]))
    """, "None True\n"),
    ("""
    s = set()
    print(s.update([1, 2]), list(s))
    s.update([2, 3], [3, 4])
    print(list(s))
    s.update()
    print(len(s))
    """, "None [1, 2]\n[1, 2, 3, 4]\n4\n"),
    ("""
    print(set([1, 2]))
    print(set())
    """, "set([1, 2])\nset()\n"),
]


@pytest.mark.parametrize("src,want", PROGRAMS, ids=[f"p{i}" for i in range(len(PROGRAMS))])
def test_program(out, src, want):
    assert out(src) == want


ERRORS = [
    "set(1)",
    "set([[1]])",
    "set([{}])",
    "set([1], [2])",
    "set([1]) < set([2])",
    "set([1]) <= set([1, 2])",
    "set([1]) > set()",
    "sorted([set(), set()])",
    "set([1]) | [2]",
    "set([1]) & [1]",
    "set([1]) - [1]",
    "set([1]) ^ (1,)",
    "set([1]) + set([2])",
    "set([1])[0]",
    "{set(): 1}",
    "set([set()])",
    "set().pop()",
    "set([1]).remove(2)",
    "set().remove([])",
    "set().add([])",
    "set().discard([])",
    "set().difference([[1]])",
    "set().union([[1]])",
    "set().intersection([[1]])",
    "set().symmetric_difference([[1]])",
    "set().issubset([[1]])",
    "set().issuperset([[1]])",
    "set().isdisjoint([[1]])",
    "set().update([[1]])",
    "set().union(1)",
    "set().nosuchmethod()",
]


@pytest.mark.parametrize("expr", ERRORS)
def test_error(fails, expr):
    fails(expr, expr=True)
