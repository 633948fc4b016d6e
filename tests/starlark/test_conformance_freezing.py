"""Conformance: freezing and mutation rules (spec: Freezing a value, Module
execution, Collection types "mutate while iterating", Functions "mutable
default values"; dialect: globals frozen at module end)."""

import pytest


def _lib_loader(sl, **sources):
    modules = {name: sl.exec_file(src, name) for name, src in sources.items()}
    return lambda name: modules[name]


# ---- globals are frozen when the module ends ---------------------------------------------


def test_mutation_during_module_execution_is_fine(run):
    g = run("""
    L = []
    D = {}
    S = set()
    def add(x):
        L.append(x)
        D[x] = len(L)
        S.add(x)
    add(1)
    add(2)
    L.append(3)
    """)
    assert g["L"] == [1, 2, 3]
    assert g["D"] == {1: 1, 2: 2}


@pytest.mark.parametrize("call", [
    "append_l", "extend_l", "setitem_l", "clear_l", "pop_l", "insert_l", "remove_l", "augment_l",
    "setitem_d", "update_d", "pop_d", "clear_d", "setdefault_d", "popitem_d", "augment_d",
    "add_s", "discard_s", "update_s", "clear_s", "augment_s",
    "nested_list", "nested_dict", "tuple_inner", "default_arg",
])
def test_mutating_frozen_globals_from_python_call_fails(sl, run, call):
    g = run("""
    L = [1, 2]
    D = {"a": 1}
    S = set([1])
    N = {"inner": [1]}
    T = ([1], 2)
    def append_l(): L.append(3)
    def extend_l(): L.extend([3])
    def setitem_l(): L[0] = 9
    def clear_l(): L.clear()
    def pop_l(): L.pop()
    def insert_l(): L.insert(0, 1)
    def remove_l(): L.remove(1)
    def augment_l():
        x = L
        x += [1]
    def setitem_d(): D["b"] = 2
    def update_d(): D.update(b=2)
    def pop_d(): D.pop("a")
    def clear_d(): D.clear()
    def setdefault_d(): D.setdefault("z", 1)
    def popitem_d(): D.popitem()
    def augment_d():
        x = D
        x |= {"q": 1}
    def add_s(): S.add(2)
    def discard_s(): S.discard(1)
    def update_s(): S.update([5])
    def clear_s(): S.clear()
    def augment_s():
        x = S
        x |= set([7])
    def nested_list(): N["inner"].append(2)
    def nested_dict(): N["new"] = 1
    def tuple_inner(): T[0].append(2)
    def default_arg(x, acc=[]):
        acc.append(x)
        return acc
    def default_arg_call(): return default_arg(1)
    """)
    fn = g["default_arg"] if call == "default_arg" else g[call]
    with pytest.raises(sl.StarlarkError):
        fn(1) if call == "default_arg" else fn()
    # the value is unchanged
    assert g["L"] == [1, 2] and g["D"] == {"a": 1} and g["N"] == {"inner": [1]}


def test_frozen_globals_are_python_list_and_dict_subclasses(run):
    g = run("L = [1, [2]]\nD = {'k': {'j': 1}}\nT = (1, [2])\n")
    assert isinstance(g["L"], list) and isinstance(g["L"][1], list)
    assert isinstance(g["D"], dict) and isinstance(g["D"]["k"], dict)
    assert isinstance(g["T"], tuple)
    assert g["L"] == [1, [2]] and g["D"] == {"k": {"j": 1}}


def test_reading_frozen_values_and_making_new_ones_is_fine(sl, run):
    g = run("""
    L = [3, 1, 2]
    D = {"a": [1]}
    def summary():
        local = list(L)
        local.append(4)
        d = dict(D)
        d["b"] = 2
        return sorted(local), d, L + [0], [x for x in L], D["a"][0]
    """)
    assert g["summary"]() == ([1, 2, 3, 4], {"a": [1], "b": 2}, [3, 1, 2, 0], [3, 1, 2], 1)
    assert g["summary"]() == ([1, 2, 3, 4], {"a": [1], "b": 2}, [3, 1, 2, 0], [3, 1, 2], 1)


def test_values_created_by_a_python_call_are_mutable(run):
    g = run("""
    def fresh():
        l = []
        l.append(1)
        d = {}
        d["k"] = l
        s = set()
        s.add(1)
        return l, d, len(s)
    """)
    assert g["fresh"]() == ([1], {"k": [1]}, 1)


# ---- frozen values across load() ----------------------------------------------------------


@pytest.mark.parametrize("prog", [
    'load("a", "L")\nL.append(1)\n',
    'load("a", "D")\nD["x"] = 1\n',
    'load("a", "S")\nS.add(1)\n',
    'load("a", "N")\nN[0].append(1)\n',
    'load("a", "f")\nf(3)\n',
    'load("a", "L")\ndef g():\n    L.extend([1])\ng()\n',
    'load("a", "L")\nM = L\nM += [1]\n',
])
def test_loaded_values_are_frozen(sl, prog):
    loader = _lib_loader(sl, a="L = [1]\nD = {}\nS = set()\nN = [[1]]\n"
                              "def f(x, list=[]):\n  list.append(x)\n  return list\n")
    with pytest.raises(sl.StarlarkError):
        sl.exec_file(prog, "b.star", loader=loader)


def test_loaded_frozen_function_default_spec_example(sl):
    a = sl.exec_file("def f(x, list=[]):\n  list.append(x)\n  return list\n"
                     "r1 = str(f(4, [1,2,3]))\nr2 = str(f(1))\nr3 = str(f(2))\n", "a.sky")
    assert (a["r1"], a["r2"], a["r3"]) == ("[1, 2, 3, 4]", "[1]", "[1, 2]")
    with pytest.raises(sl.StarlarkError):
        sl.exec_file('load("a.sky", "f")\nf(3)\n', "b.sky", loader=lambda name: a)
    # passing a fresh list is still fine
    b = sl.exec_file('load("a.sky", "f")\nr = f(3, [])\n', "b.sky", loader=lambda name: a)
    assert b["r"] == [3]


def test_loaded_values_can_be_copied_and_read(sl):
    loader = _lib_loader(sl, a="L = [2, 1]\nD = {'k': 'v'}\n")
    g = sl.exec_file('load("a", "L", "D")\nM = sorted(L) + [3]\nE = dict(D, j=1)\nn = len(L) + len(D)\n',
                     loader=loader)
    assert g["M"] == [1, 2, 3] and g["E"] == {"k": "v", "j": 1} and g["n"] == 3


# ---- freeze() -----------------------------------------------------------------------------


def test_freeze_returns_deeply_frozen_value(sl):
    v = sl.freeze({"l": [1, {"d": [2]}], "t": (1, [3])})
    assert v == {"l": [1, {"d": [2]}], "t": (1, [3])}
    for prog in ['v["x"] = 1', 'v["l"].append(1)', 'v["l"][1]["d"].append(1)', 'v["t"][1].append(1)',
                 'v.pop("l")', 'v["l"][1].clear()']:
        with pytest.raises(sl.StarlarkError):
            sl.exec_file(prog + "\n", predeclared={"v": v})


def test_freeze_of_immutables_is_identity_like(sl):
    for v in [1, "s", b"b", None, True, 1.5, (1, "a")]:
        assert sl.freeze(v) == v


# ---- mutation during iteration ------------------------------------------------------------


@pytest.mark.parametrize("body", [
    "for x in l:\n        l.append(x)",
    "for x in l:\n        l.pop()",
    "for x in l:\n        l.clear()",
    "for x in l:\n        l.insert(0, 1)",
    "for x in l:\n        l.remove(x)",
    "for x in l:\n        l.extend([1])",
    "for x in l:\n        l += [1]",
    "for x in l:\n        l[0] = 5",
    "for x in l:\n        l.append(1)\n        break",
    "for k in d:\n        d['new'] = 1",
    "for k in d:\n        d.pop(k)",
    "for k in d:\n        d.clear()",
    "for k in d:\n        d.update(z=1)",
    "for k in d:\n        d.setdefault('q', 1)",
    "for k in d:\n        d |= {'r': 1}",
    "for k in d:\n        d[k] += 1",
    "for e in s:\n        s.add(99)",
    "for e in s:\n        s.discard(e)",
    "for e in s:\n        s.clear()",
    "for x in l:\n        for y in l:\n            l.append(y)",
    "[l.append(x) for x in l]",
    "[d.pop(k) for k in d]",
    "for x in l:\n        s.add(x)\n        l.append(x)",
])
def test_mutation_during_iteration_is_an_error(sl, fails, body):
    # spec: "It is a dynamic error to mutate a sequence such as a list or a dictionary while iterating over it."
    src = "def f():\n    l = [1, 2, 3]\n    d = {'a': 1, 'b': 2}\n    s = set([1, 2])\n    " + body + "\nf()\n"
    fails(src, sl.EvalError)


def test_spec_increment_values_example(sl, fails):
    fails("""
    def increment_values(dict):
      for k in dict:
        dict[k] += 1

    dict = {"one": 1, "two": 2}
    increment_values(dict)
    """, sl.EvalError)


def test_mutation_after_iteration_ends_is_fine(out):
    assert out("""
    def f():
        l = [1, 2]
        for x in l:
            pass
        l.append(3)
        d = {"a": 1}
        for k in d:
            if k == "a":
                break
        d["b"] = 2
        for x in [y for y in l]:
            l.append(x)
        for k in list(d):
            d.pop(k)
        for k in d.keys():
            pass
        for k, v in {"z": 1}.items():
            d[k] = v
        return l, d
    print(f())
    """) == '([1, 2, 3, 1, 2, 3], {"z": 1})\n'


def test_iterating_a_copy_while_mutating_the_original_is_fine(out):
    assert out("""
    def f():
        d = {"a": 1, "b": 2}
        for k in d.keys():
            d[k + "2"] = 0
        l = [1, 2]
        for x in list(l):
            l.append(x)
        s = set([1])
        for e in list(s):
            s.add(e + 1)
        return sorted(d), l, sorted(s)
    print(f())
    """) == '(["a", "a2", "b", "b2"], [1, 2, 1, 2], [1, 2])\n'


def test_error_inside_loop_releases_iteration_lock(sl):
    # A failed iteration of a fresh list must not leave a later mutation of another
    # value, or of the same value in a new call, locked.
    g = sl.exec_file("""
def f(fail_now):
    l = [1, 2]
    for x in l:
        if fail_now:
            fail("stop")
    l.append(3)
    return l
""")
    with pytest.raises(sl.StarlarkError):
        g["f"](True)
    assert g["f"](False) == [1, 2, 3]


def test_frozen_cyclic_structure_terminates(sl):
    g = sl.exec_file("x = [1]\nx.append(x)\nd = {}\nd['self'] = d\n")
    assert g["x"][0] == 1 and g["x"][1][0] == 1 and g["x"][1][1][0] == 1
    assert "self" in g["d"]["self"]
