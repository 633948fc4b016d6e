"""Sandbox: Starlark code must reach no Python internals.

Every probe below must end in a StarlarkError (syntax, resolve or eval) and
never hand back data. Probes that take a default (`getattr(x, name, d)`) may
return the default, and nothing else.
"""

import os
import sys

import pytest


class HostObject:
    """A plain Python object a host might (carelessly) pass in as a predeclared value."""

    secret = "s3cret-class"

    def __init__(self):
        self.token = "s3cret-instance"

    def method(self):
        return "s3cret-method"

    def __repr__(self):
        return "HostObject()"


def host_function(x=1):
    return x


def _pre(sl):
    return {
        "obj": HostObject(),
        "host": host_function,
        "os": os,
        "sys": sys,
        "s": sl.struct(a=1),
    }


PROBES = [
    # dunder attributes on core values
    "getattr(1, '__class__')",
    "(1).__class__",
    "''.__class__",
    "[].__class__",
    "{}.__class__",
    "().__class__",
    "set().__class__",
    "None.__class__",
    "True.__class__",
    "b''.__class__",
    "range(1).__class__",
    "''.__class__.__mro__",
    "''.__class__.__base__.__subclasses__()",
    "[].__class__.__mro__[-1].__subclasses__()",
    "{}.__class__.__subclasses__()",
    "''.__doc__",
    "''.__len__()",
    "[].__len__",
    "{}.__dict__",
    "[].append.__self__",
    "''.join.__self__",
    "''.split.__func__",
    "[].append.__name__",
    "len.__self__",
    "len.__module__",
    "len.__call__",
    "len.__globals__",
    "print.__self__",
    "dir.__code__",
    "getattr(len, '__globals__')",
    "getattr(getattr, '__call__')",
    "getattr('', '__class__')",
    "getattr([], '__reduce__')()",
    "getattr({}, '__getitem__')",
    "getattr(1, 'real')",
    "getattr(1, 'bit_length')()",
    "getattr('', 'maketrans')",
    "''.zfill(3)",
    "''.translate({})",
    "''.format_map({})",
    "{}.fromkeys([1])",
    "(1.5).hex()",
    "(1).to_bytes(2, 'big')",
    "(1).real",
    "(1.0).is_integer()",
    # Starlark functions
    "(lambda: 0).__globals__",
    "(lambda: 0).__code__",
    "(lambda: 0).__closure__",
    "(lambda: 0).__defaults__",
    "(lambda: 0).__name__",
    "(lambda: 0).__dict__",
    "getattr(lambda: 0, '__globals__')",
    # in the module variant below, `f` is the enclosing Starlark def itself
    "f.__globals__",
    "f.__code__",
    "f.__closure__",
    "f.__defaults__",
    "getattr(f, '__globals__')",
    "'{0.__globals__}'.format(f)",
    # str.format / % field access
    "'{0.__class__}'.format(1)",
    "'{0.__class__.__mro__}'.format('')",
    "'{x.__class__}'.format(x=1)",
    "'{0.real}'.format(1)",
    "'{0.__globals__}'.format(lambda: 0)",
    "'{0.token}'.format(obj)",
    "'{0.secret}'.format(obj)",
    "'{0.a.__class__}'.format(s)",
    # host objects passed in as predeclared values
    "obj.secret",
    "obj.token",
    "obj.method()",
    "obj.__class__",
    "obj.__dict__",
    "obj.__init__",
    "getattr(obj, 'secret')",
    "getattr(obj, 'token')",
    "getattr(obj, '__dict__')",
    "obj.secret + ''",
    "host.__globals__",
    "host.__code__",
    "host.__closure__",
    "host.__defaults__",
    "host.__name__",
    "host.__module__",
    "host.__wrapped__",
    "os.getcwd()",
    "os.system('true')",
    "os.environ",
    "os.path.join('a')",
    "sys.modules",
    "sys.exit(1)",
    "s.__class__",
    "s.__dict__",
    "s.a.__class__",
    "getattr(s, '__class__')",
    "getattr(s, '_fields')",
    # names that must not exist
    "open('/etc/passwd')",
    "eval('1')",
    "exec('x = 1')",
    "compile('1', 'f', 'eval')",
    "__import__('os')",
    "globals()",
    "locals()",
    "vars()",
    "__builtins__",
    "__builtins__['open']",
    "breakpoint()",
    "input()",
    "help()",
    "exit()",
    "quit()",
    "object",
    "super",
    "memoryview(b'')",
    "isinstance(1, 1)",
    "issubclass",
    "setattr",
    "delattr",
    "id(1)",
    "classmethod",
    "staticmethod",
    "property",
    "__loader__",
    "__spec__",
    "__file__",
    "__build_class__",
]


@pytest.mark.parametrize("probe", PROBES)
def test_probe_raises_starlark_error(sl, probe):
    try:
        value = sl.eval_expr(probe, predeclared=_pre(sl))
    except sl.StarlarkError:
        return
    pytest.fail(f"{probe!r} returned {value!r} instead of raising a StarlarkError")


@pytest.mark.parametrize("probe", PROBES)
def test_probe_raises_starlark_error_in_module(sl, probe, capsys):
    src = f"def f():\n    return {probe}\nprint(f())\n"
    with pytest.raises(sl.StarlarkError):
        sl.exec_file(src, "probe.star", predeclared=_pre(sl))
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("name", ["__class__", "__dict__", "__globals__", "__code__", "secret",
                                  "token", "method", "__init__", "__reduce__", "__subclasses__"])
@pytest.mark.parametrize("target", ["obj", "host", "''", "[]", "{}", "1", "len", "(lambda: 0)", "s", "os"])
def test_getattr_with_default_and_hasattr_reveal_nothing(sl, name, target):
    pre = _pre(sl)
    assert sl.eval_expr(f"hasattr({target}, '{name}')", predeclared=pre) is False
    try:
        got = sl.eval_expr(f"getattr({target}, '{name}', 'DEFAULT')", predeclared=pre)
    except sl.StarlarkError:
        return
    assert got == "DEFAULT", f"getattr({target}, {name!r}, ...) leaked {got!r}"


@pytest.mark.parametrize("target", ["''", "[]", "{}", "set()", "1", "len", "(lambda: 0)", "s", "obj", "host", "os"])
def test_dir_lists_no_internals(sl, target):
    try:
        names = sl.eval_expr(f"dir({target})", predeclared=_pre(sl))
    except sl.StarlarkError:
        return
    assert all(not n.startswith("_") for n in names), names
    assert not {"secret", "token", "method", "system", "getcwd", "environ"} & set(names), names


@pytest.mark.parametrize("src", [
    "import os\n",
    "import os as o\n",
    "from os import system\n",
    "from . import x\n",
    "exec 'x'\n",
    "x = __import__\n",
    "x = open\n",
    "x = eval\n",
])
def test_no_import_or_exec(sl, src, capsys):
    with pytest.raises(sl.StarlarkError):
        sl.exec_file('print("ran")\n' + src)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("name", ["import", "open", "eval", "exec", "__import__", "compile", "globals",
                                  "locals", "vars", "__builtins__", "getattr_static", "input", "object"])
def test_dangerous_names_are_undefined(sl, name):
    src = f"x = {name}\n"
    with pytest.raises(sl.StarlarkError) as info:
        sl.exec_file(src)
    assert not isinstance(info.value, sl.EvalError), "must be rejected statically"


def test_type_returns_a_name_not_a_class(sl):
    assert sl.eval_expr("[type(1), type('')]") == ["int", "string"]
    try:
        t = sl.eval_expr("type(obj)", predeclared=_pre(sl))
    except sl.StarlarkError:
        return
    assert isinstance(t, str) and "s3cret" not in t


def test_misbehaving_host_object_errors_stay_starlark_errors(sl):
    """A host value whose Python dunders raise: only StarlarkError may escape."""

    class Evil:
        def __repr__(self):
            raise RuntimeError("repr")

        def __str__(self):
            raise RuntimeError("str")

        def __eq__(self, other):
            raise RuntimeError("eq")

        def __lt__(self, other):
            raise RuntimeError("lt")

        def __hash__(self):
            raise RuntimeError("hash")

        def __len__(self):
            raise RuntimeError("len")

        def __iter__(self):
            raise RuntimeError("iter")

        def __bool__(self):
            raise RuntimeError("bool")

        def __getattr__(self, name):
            raise RuntimeError("getattr")

    for probe in ["str(e)", "repr(e)", "e == 1", "{e: 1}", "len(e)", "[x for x in e]", "e.foo",
                  "'%s' % e", "'{}'.format(e)", "e in [1]", "sorted([e, e])", "1 if e else 2",
                  "hasattr(e, 'x')", "dir(e)"]:
        try:
            sl.eval_expr(probe, predeclared={"e": Evil()})
        except sl.StarlarkError:
            pass


def test_attribute_assignment_on_values_is_rejected(sl):
    for prog in ["x = []\nx.append = 1\n", "x = 'a'\nx.upper = 1\n", "obj.secret = 'overwritten'\n",
                 "host.__code__ = None\n", "s.a = 2\n", "len.__doc__ = ''\n"]:
        with pytest.raises(sl.StarlarkError):
            sl.exec_file(prog, predeclared=_pre(sl))
    assert HostObject.secret == "s3cret-class"


def test_host_callables_get_starlark_values_only(sl):
    seen = []

    def spy(*args, **kwargs):
        seen.append((args, kwargs))

    sl.exec_file("spy(1, 'a', [1], {'k': (1,)}, None, b'x', 1.5, True)\n", predeclared={"spy": spy})
    (args, kwargs), = seen
    assert args[:2] == (1, "a") and list(args[2]) == [1] and dict(args[3]) == {"k": (1,)}
    assert args[4] is None and args[5] == b"x" and args[6] == 1.5 and args[7] is True


def test_loader_is_the_only_way_to_other_modules(sl):
    with pytest.raises(sl.StarlarkError):
        sl.exec_file('load("os", "system")\n')
    with pytest.raises(sl.StarlarkError):
        sl.exec_file('load("/etc/passwd", "root")\n')


def test_error_messages_do_not_leak_host_object_contents(sl):
    with pytest.raises(sl.StarlarkError) as info:
        sl.exec_file("x = obj.token\n", predeclared=_pre(sl))
    assert "s3cret" not in str(info.value)


# ---- values that could crash the interpreter itself --------------------------------------
#
# CPython recurses on the C stack to hash, compare or print nested containers; a deep enough
# nesting built by a Starlark loop can overflow it and kill the host process (SIGSEGV) if the
# interpreter hands such values to Python's own machinery. Each program runs in a child
# process so that a crash is reported as a failure instead of taking the test run down.

_NEST = "def nest(make, n):\n    v = make(None)\n    for i in range(n):\n        v = make(v)\n    return v\n"

CRASH_PROGRAMS = {
    "hash-deep-tuple": _NEST + "t = nest(lambda v: (v,), 1000000)\nd = {t: 1}\n",
    "set-of-deep-tuple": _NEST + "t = nest(lambda v: (v,), 1000000)\ns = set([t])\n",
    "compare-deep-tuples": _NEST + "a = nest(lambda v: (v,), 1000000)\nb = nest(lambda v: (v,), 1000000)\nx = a == b\n",
    "order-deep-lists": _NEST + "a = nest(lambda v: [v], 1000000)\nb = nest(lambda v: [v], 1000000)\nx = a < b\n",
    "str-deep-list": _NEST + "a = nest(lambda v: [v], 1000000)\nx = len(str(a))\n",
    "repr-deep-dict": _NEST + "a = nest(lambda v: {'k': v}, 1000000)\nx = len(repr(a))\n",
    "freeze-deep-global": _NEST + "a = nest(lambda v: [v, {'k': v}], 300000)\n",
    "in-deep-list": _NEST + "a = nest(lambda v: [v], 1000000)\nb = nest(lambda v: [v], 1000000)\nx = a in [b]\n",
    "sorted-deep-tuples": _NEST + "a = nest(lambda v: (v,), 1000000)\nb = nest(lambda v: (v,), 1000000)\nx = sorted([a, b])\n",
    "format-deep-list": _NEST + "a = nest(lambda v: [v], 1000000)\nx = len('%s' % (a,)) + len('{}'.format(a))\n",
}


@pytest.mark.parametrize("src", list(CRASH_PROGRAMS.values()), ids=list(CRASH_PROGRAMS))
def test_deeply_nested_values_never_crash_the_host(src):
    import subprocess
    import textwrap
    from pathlib import Path

    child = textwrap.dedent(f"""
        import inspect, resource
        _soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
        _cap = 4 << 30 if _hard == resource.RLIM_INFINITY else min(4 << 30, _hard)
        resource.setrlimit(resource.RLIMIT_AS, (_cap, _hard))
        import flowmetal.starlark as sl
        kw = {{"max_steps": 100_000_000}} if "max_steps" in inspect.signature(sl.exec_file).parameters else {{}}
        try:
            sl.exec_file({src!r}, "deep.star", **kw)
        except sl.StarlarkError:
            pass
        print("SURVIVED")
    """)
    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                            timeout=240, cwd=repo)
    assert result.returncode == 0 and "SURVIVED" in result.stdout, \
        f"child exited with {result.returncode}: {result.stderr[-1500:]}"


# ---- Python-significant names are ordinary Starlark identifiers ------------------------------

DUNDER_PROGRAMS = [
    ("__debug__ = 1\nx = __debug__\n", 1),
    ("__builtins__ = 1\nx = len([1])\n", 1),
    ("__builtins__ = {}\nx = str(1)\n", "1"),
    ("__name__ = 'm'\nx = __name__\n", "m"),
    ("__class__ = 1\nx = __class__\n", 1),
    ("def f():\n    __class__ = 2\n    return __class__\nx = f()\n", 2),
    ("def f(__class__):\n    return __class__\nx = f(3)\n", 3),
    ("__annotations__ = 1\nx = __annotations__\n", 1),
    ("__import__ = lambda n: n\nx = __import__('os')\n", "os"),
    ("__spec__ = 1\n__loader__ = 2\n__file__ = 3\nx = __spec__ + __loader__ + __file__\n", 6),
    ("__dict__ = 1\nx = __dict__\n", 1),
    ("exec = 1\neval = 2\nopen = 3\nx = exec + eval + open\n", 6),
    ("match = 1\ncase = 2\nx = match + case\n", 3),
    ("def f():\n    _f__x = 1\n    return _f__x\nx = f()\n", 1),
    ("def f(**kw):\n    return sorted(kw)\nx = f(__class__=1, __init__=2)\n", ["__class__", "__init__"]),
    ("x = dict(__class__=1)['__class__']\n", 1),
]


@pytest.mark.parametrize("src,want", DUNDER_PROGRAMS, ids=[f"d{i}" for i in range(len(DUNDER_PROGRAMS))])
def test_python_significant_names_are_plain_variables(sl, src, want):
    """Binding `__builtins__`, `__import__`, `__class__`, ... changes nothing but that variable."""
    assert sl.exec_file(src, "names.star")["x"] == want
