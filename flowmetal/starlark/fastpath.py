"""Fast paths for the hottest operations of compiled code.

Each function here answers the common case (a plain list, dict or string with
arguments of the usual types) with Python's own C-level operation, whose result
is exactly Starlark's for those types, and hands every other case to the
general implementation in `values` / `methods`. The compiler calls
`method_caller(name, nargs)` for method calls with positional arguments only.
"""

from __future__ import annotations

from typing import Any, Callable

from . import values
from .context import MEMORY_CHECK_MIN
from .values import ITERATING, MAX_ALLOC, FrozenDict

_dispatch = values.method_dispatcher


def _append1(recv, x):
    if type(recv) is list and id(recv) not in ITERATING and len(recv) < MAX_ALLOC:
        recv.append(x)
        return None
    return _dispatch("append")(recv, x)


def _get1(recv, k):
    t = type(recv)
    if (t is dict or t is FrozenDict) and type(k) is not range:
        return recv.get(k)
    return _dispatch("get")(recv, k)


def _get2(recv, k, d):
    t = type(recv)
    if (t is dict or t is FrozenDict) and type(k) is not range:
        return recv.get(k, d)
    return _dispatch("get")(recv, k, d)


def _items0(recv):
    t = type(recv)
    if t is dict or t is FrozenDict:
        return list(recv.items())
    return _dispatch("items")(recv)


def _keys0(recv):
    t = type(recv)
    if t is dict or t is FrozenDict:
        return list(recv)
    return _dispatch("keys")(recv)


def _values0(recv):
    t = type(recv)
    if t is dict or t is FrozenDict:
        return list(recv.values())
    return _dispatch("values")(recv)


def _upper0(recv):
    if type(recv) is str:
        return recv.upper()
    return _dispatch("upper")(recv)


def _lower0(recv):
    if type(recv) is str:
        return recv.lower()
    return _dispatch("lower")(recv)


def _strip0(recv):
    if type(recv) is str:
        return recv.strip()
    return _dispatch("strip")(recv)


def _startswith1(recv, x):
    if type(recv) is str and type(x) is str:
        return recv.startswith(x)
    return _dispatch("startswith")(recv, x)


def _endswith1(recv, x):
    if type(recv) is str and type(x) is str:
        return recv.endswith(x)
    return _dispatch("endswith")(recv, x)


def _split1(recv, sep):
    if type(recv) is str and type(sep) is str and sep:
        return recv.split(sep)
    return _dispatch("split")(recv, sep)


def _split0(recv):
    if type(recv) is str:
        return recv.split()
    return _dispatch("split")(recv)


def _replace2(recv, old, new):
    if (type(recv) is str and type(old) is str and type(new) is str
            and (len(new) <= len(old) or len(recv) * (len(new) + 1) < MEMORY_CHECK_MIN)):
        return recv.replace(old, new)
    return _dispatch("replace")(recv, old, new)


def _join1(recv, items):
    if type(recv) is str and type(items) is list:
        try:
            # len() of a non-string element may succeed (a list), but then
            # str.join raises TypeError and the general path reports it.
            total = sum(map(len, items)) + len(recv) * len(items)
            if total < MEMORY_CHECK_MIN:
                return recv.join(items)
        except TypeError:
            pass
    return _dispatch("join")(recv, items)


_FAST: dict[tuple[str, int], Callable[..., Any]] = {
    ("append", 1): _append1, ("get", 1): _get1, ("get", 2): _get2,
    ("items", 0): _items0, ("keys", 0): _keys0, ("values", 0): _values0,
    ("upper", 0): _upper0, ("lower", 0): _lower0, ("strip", 0): _strip0,
    ("startswith", 1): _startswith1, ("endswith", 1): _endswith1,
    ("split", 0): _split0, ("split", 1): _split1, ("replace", 2): _replace2,
    ("join", 1): _join1,
}

FAST_CODES = {f.__code__ for f in _FAST.values()}
"""Frames of these functions are transparent to suspension (they return the callee's result)."""


def method_caller(name: str, nargs: int | None) -> Callable[..., Any]:
    """The function compiled code calls for `recv.name(<nargs positional args>)`."""
    if nargs is not None:
        fast = _FAST.get((name, nargs))
        if fast is not None:
            return fast
    return _dispatch(name)


# `%` with a format string whose directives are only %d, %s and %%, applied to
# ints and strings, means the same in Python and Starlark.
_SIMPLE_FORMATS: dict[str, bool] = {}


def _simple_format(fmt: str) -> bool:
    i = fmt.find("%")
    while i >= 0:
        if i + 1 >= len(fmt) or fmt[i + 1] not in "ds%":
            return False
        i = fmt.find("%", i + 2)
    return True


def mod(a, b):
    """`a % b`."""
    ta = type(a)
    if ta is int and type(b) is int and b:
        return a % b
    if ta is str:
        ok = _SIMPLE_FORMATS.get(a)
        if ok is None:
            ok = _simple_format(a)
            if len(_SIMPLE_FORMATS) < 4096:
                _SIMPLE_FORMATS[a] = ok
        if ok:
            tb = type(b)
            try:
                if tb is int or tb is str:
                    if a.count("%") - 2 * a.count("%%") == 1:
                        return a % b
                elif tb is tuple and all(type(x) is int or type(x) is str for x in b):
                    return a % b
            except ValueError:
                pass  # an int past CPython's str() digit limit: values.mod converts it
    return values.mod(a, b)


def setindex(x, k, v) -> None:
    """`x[k] = v`."""
    t = type(x)
    if t is dict and id(x) not in ITERATING and type(k) is not range and type(k) is not tuple:
        x[k] = v
    elif t is list and type(k) is int and id(x) not in ITERATING:
        x[k] = v
    else:
        values.setindex(x, k, v)
