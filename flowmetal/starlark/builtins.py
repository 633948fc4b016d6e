"""The universal predeclared functions of Starlark (`len`, `sorted`, `int`, ...).

`UNIVERSE` maps each name to a plain Python function whose `__name__` is the
Starlark name (so it prints as `<built-in function len>`). Parameters follow
the spec: positional-only where the spec says so, keyword-only for `key`,
`reverse` and `sep`. Errors are EvalErrors prefixed with the function name,
as in starlark-go (`len: value of type int has no len`). Callbacks into
Starlark (sorted's `key`, ...) go through `values.call_callback`, which
refuses suspension inside them.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable

from . import context, values
from . import methods as _methods
from .errors import EvalError, Suspend
from .values import (
    MAX_ALLOC,
    Set,
    _cmp,
    _unhashable_part,
    call_callback,
    collect,
    dir_,
    getattr_,
    hasattr_,
    int_text,
    length,
    lock,
    parse_decimal,
    sort_list,
    starlark_hash,
    to_repr,
    to_str,
    type_name,
    unlock,
)

UNIVERSE: dict[str, Callable[..., Any]] = {}
"""Starlark name -> builtin function."""

_MISSING = object()


def _builtin(name: str):
    def deco(fn):
        fn.__name__ = fn.__qualname__ = name
        UNIVERSE[name] = fn
        return fn
    return deco


def _iterable_or_fail(fname: str, x) -> list | tuple:
    if type(x) is str or type(x) is bytes:
        raise EvalError(f"{fname}: got {type_name(x)}, want iterable")
    return collect(x, f"{fname}: ")


@_builtin("abs")
def abs_(x, /):
    """abs(x): absolute value of an int or float."""
    if type(x) is int or type(x) is float:
        return abs(x)
    raise EvalError(f"abs: got {type_name(x)}, want int or float")


@_builtin("all")
def all_(x, /):
    """all(x): whether every element of the iterable x is true."""
    for e in _iterable_or_fail("all", x):
        if not e:
            return False
    return True


@_builtin("any")
def any_(x, /):
    """any(x): whether some element of the iterable x is true."""
    for e in _iterable_or_fail("any", x):
        if e:
            return True
    return False


@_builtin("bool")
def bool_(x=False, /):
    """bool(x): the truth value of x."""
    return bool(x)


def _utf8(s: str) -> bytes:
    try:
        return s.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates are invalid text: U+FFFD, as the spec says.
        return re.sub("[\ud800-\udfff]", "\ufffd", s).encode("utf-8")


@_builtin("bytes")
def bytes_(x, /):
    """bytes(x): a bytes from a string (UTF-8), a bytes, or an iterable of ints."""
    t = type(x)
    if t is bytes:
        return x
    if t is str:
        return _utf8(x)
    if length(x) < 0 and getattr(t, "starlark_iter", None) is None:
        raise EvalError(f"bytes: got {type_name(x)}, want string, bytes, or iterable of int")
    items = collect(x, "bytes: ")
    for e in items:
        if type(e) is not int:
            raise EvalError(f"bytes: got {type_name(e)} in iterable, want int")
        if not 0 <= e <= 255:
            raise EvalError(f"bytes: byte value {int_text(e)} out of range [0:255]")
    return bytes(items)


@_builtin("chr")
def chr_(i, /):
    """chr(i): the string of the single code point i."""
    if type(i) is not int:
        raise EvalError(f"chr: got {type_name(i)}, want int")
    if i < 0:
        raise EvalError(f"chr: Unicode code point {int_text(i)} out of range (<0)")
    if i > 0x10FFFF:
        raise EvalError(f"chr: Unicode code point {f'U+{i:X}' if i < 1 << 64 else int_text(i)} out of range (>0x10FFFF)")
    return values.code_point(i)


@_builtin("dict")
def dict_(*args, **kwargs):
    """dict([pairs], **kwargs): a new dict."""
    d: dict = {}
    _methods.update_dict("dict", d, args, kwargs)
    return d


@_builtin("dir")
def dir_builtin(x, /):
    """dir(x): sorted names of the attributes of x."""
    return dir_(x)


@_builtin("enumerate")
def enumerate_(x, start=0, /):
    """enumerate(x, start=0): a list of (index, element) pairs."""
    if type(start) is not int:
        raise EvalError(f"enumerate: for parameter start: got {type_name(start)}, want int")
    return list(enumerate(_iterable_or_fail("enumerate", x), start))


def _join_args(fname: str, args: tuple, sep) -> str:
    if type(sep) is not str:
        raise EvalError(f"{fname}: for parameter sep: got {type_name(sep)}, want string")
    parts = [to_str(a) for a in args]
    total = sum(len(p) for p in parts) + len(sep) * max(0, len(parts) - 1)
    if total > MAX_ALLOC:
        raise EvalError(f"{fname}: message too large")
    return sep.join(parts)


@_builtin("fail")
def fail(*args, sep=" "):
    """fail(*args, sep=" "): stop the program with an error."""
    raise EvalError("fail: " + _join_args("fail", args, sep))


_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?)")
_FLOAT_NAMES = {"inf": math.inf, "infinity": math.inf, "nan": math.nan}


@_builtin("float")
def float_(x=0.0, /):
    """float(x): x as a float; strings are float literals, inf, infinity or nan."""
    t = type(x)
    if t is float:
        return x
    if t is int or t is bool:
        try:
            return float(x)
        except OverflowError:
            raise EvalError("float: int too large to convert to float") from None
    if t is str:
        s = x
        if _FLOAT_RE.fullmatch(s):
            f = float(s)
            if math.isinf(f):
                raise EvalError(f"float: floating-point number too large: {to_repr(x)}")
            return f
        body = s[1:] if s[:1] in ("+", "-") else s
        special = _FLOAT_NAMES.get(body.lower())
        if special is not None:
            return -special if s[:1] == "-" else special
        raise EvalError(f"float: invalid float literal: {to_repr(x)}" if len(x) < 100
                        else "float: invalid float literal")
    raise EvalError(f"float: got {type_name(x)}, want number or string")


@_builtin("getattr")
def getattr_builtin(x, name, default=_MISSING, /):
    """getattr(x, name[, default]): the attribute `name` of x."""
    if type(name) is not str:
        raise EvalError(f"getattr: for parameter name: got {type_name(name)}, want string")
    if default is _MISSING:
        return getattr_(x, name)
    try:
        return getattr_(x, name)
    except EvalError:
        return default


@_builtin("hasattr")
def hasattr_builtin(x, name, /):
    """hasattr(x, name): whether x has an attribute `name`."""
    if type(name) is not str:
        raise EvalError(f"hasattr: for parameter name: got {type_name(name)}, want string")
    return hasattr_(x, name)


@_builtin("hash")
def hash_(x, /):
    """hash(x): hash of a string (Java's String.hashCode) or bytes (FNV-1a)."""
    return starlark_hash(x)


_DIGITS = {c: i for i, c in enumerate("0123456789abcdefghijklmnopqrstuvwxyz")}


def parse_int(s: str, base: int) -> int | None:
    """int(s, base) per the spec, or None if s is not a valid literal."""
    neg = False
    if s[:1] == "+":
        s = s[1:]
    elif s[:1] == "-":
        neg = True
        s = s[1:]
    if len(s) > 2 and s[0] == "0" and s[1] in "oOxXbB":
        prefix = {"o": 8, "x": 16, "b": 2}[s[1].lower()]
        if base == 0 or base == prefix:
            base = prefix
            s = s[2:]
    elif base == 0 and len(s) > 1 and s[0] == "0":
        # Automatic base: a leading zero must be all zeros (no octal "0755").
        return 0 if s.strip("0") == "" else None
    if base == 0:
        base = 10
    if not s:
        return None
    low = s.lower()
    for c in low:
        d = _DIGITS.get(c)
        if d is None or d >= base:
            return None
    n = parse_decimal(s) if base == 10 else int(low, base)
    return -n if neg else n


@_builtin("int")
def int_(x=_MISSING, base=_MISSING):
    """int(x[, base]): x as an int; strings are parsed in `base` (0: from the prefix)."""
    if x is _MISSING:
        if base is not _MISSING:
            raise EvalError("int: missing argument x")
        return 0
    t = type(x)
    if t is str:
        b = 10
        if base is not _MISSING:
            if type(base) is not int:
                raise EvalError(f"int: for base, got {type_name(base)}, want int")
            b = base
            if b != 0 and not 2 <= b <= 36:
                raise EvalError("int: base must be an integer >= 2 && <= 36")
        n = parse_int(x, b)
        if n is None:
            shown = to_repr(x) if len(x) < 100 else to_repr(x[:100]) + "..."
            raise EvalError(f"int: invalid literal with base {b}: {shown}")
        return n
    if base is not _MISSING:
        raise EvalError("int: can't convert non-string with explicit base")
    if t is int:
        return x
    if t is bool:
        return int(x)
    if t is float:
        if x != x:
            raise EvalError("int: cannot convert float NaN to integer")
        if x in (math.inf, -math.inf):
            raise EvalError("int: cannot convert float infinity to integer")
        return int(x)
    raise EvalError(f"int: got {type_name(x)}, want int, float, bool or string")


@_builtin("len")
def len_(x, /):
    """len(x): number of elements of x."""
    n = length(x)
    if n < 0:
        raise EvalError(f"len: value of type {type_name(x)} has no len")
    return n


@_builtin("list")
def list_(x=(), /):
    """list(x): a new list of the elements of the iterable x."""
    return list(_iterable_or_fail("list", x))


def _min_max(fname: str, args: tuple, key, want: int):
    if not args:
        raise EvalError(f"{fname}: got 0 arguments, want at least 1")
    items = _iterable_or_fail(fname, args[0]) if len(args) == 1 else args
    if not items:
        raise EvalError(f"{fname}: argument is an empty sequence")
    op = "<" if want < 0 else ">"
    it = iter(items)
    best = next(it)
    if key is None:
        for x in it:
            if _cmp(x, best, op) == want:
                best = x
        return best
    # The key function may mutate the iterable: an error, as in a for loop
    # (it would otherwise iterate a list that grows without end).
    seq = args[0] if len(args) == 1 else None
    lock(seq)
    try:
        best_key = call_callback(key, best)
        for x in it:
            k = call_callback(key, x)
            if _cmp(k, best_key, op) == want:
                best, best_key = x, k
    finally:
        unlock(seq)
    return best


@_builtin("max")
def max_(*args, key=None):
    """max(x) or max(a, b, ...): the greatest element; `key` maps elements first."""
    return _min_max("max", args, key, 1)


@_builtin("min")
def min_(*args, key=None):
    """min(x) or min(a, b, ...): the least element; `key` maps elements first."""
    return _min_max("min", args, key, -1)


@_builtin("ord")
def ord_(s, /):
    """ord(s): the code point of a 1-character string, or the value of a 1-byte bytes."""
    if type(s) is str:
        if len(s) != 1:
            raise EvalError(f"ord: string encodes {len(s)} Unicode code points, want 1")
        return ord(s)
    if type(s) is bytes:
        if len(s) != 1:
            raise EvalError(f"ord: bytes has length {len(s)}, want 1")
        return s[0]
    raise EvalError(f"ord: got {type_name(s)}, want string or bytes")


@_builtin("print")
def print_(*args, sep=" "):
    """print(*args, sep=" "): print the str() of the arguments to the host."""
    context.current().print(_join_args("print", args, sep))


def _range_arg(v, what: str) -> int:
    if type(v) is not int:
        raise EvalError(f"range: for parameter {what}: got {type_name(v)}, want int")
    return v


@_builtin("range")
def range_(start_or_stop, stop=_MISSING, step=1, /):
    """range([start,] stop[, step]): an immutable, lazy sequence of ints."""
    if stop is _MISSING:
        return range(_range_arg(start_or_stop, "stop"))
    start = _range_arg(start_or_stop, "start")
    stop = _range_arg(stop, "stop")
    step = _range_arg(step, "step")
    if step == 0:
        raise EvalError("range: step argument must not be zero")
    return range(start, stop, step)


@_builtin("repr")
def repr_(x, /):
    """repr(x): the text form of x, strings quoted."""
    return to_repr(x)


@_builtin("reversed")
def reversed_(x, /):
    """reversed(x): a new list of the elements of x in reverse order."""
    items = list(_iterable_or_fail("reversed", x))
    items.reverse()
    return items


@_builtin("set")
def set_(x=(), /):
    """set(x): a new set of the elements of the iterable x."""
    if type(x) is Set:
        return Set._of(dict(x._items))
    items = _iterable_or_fail("set", x)
    values.check_key_depth(items)
    try:
        keys = dict.fromkeys(items)
        if any(type(k) is range for k in keys):
            raise TypeError
        return Set._of(keys)
    except TypeError:
        bad = next(e for e in items if not _hashable(e))
        raise EvalError(f"set: unhashable type: {_unhashable_part(bad)}") from None


def _hashable(v) -> bool:
    if type(v) is range:
        return False
    try:
        hash(v)
    except TypeError:
        return False
    return True


@_builtin("sorted")
def sorted_(x, /, *, key=None, reverse=False):
    """sorted(x, key=None, reverse=False): a new sorted list (stable)."""
    items = list(_iterable_or_fail("sorted", x))
    if key is None:
        sort_list(items, bool(reverse))
    else:
        try:
            keys = [key(e) for e in items]  # once each, in order
        except Suspend:
            # The builtin's own Python frame cannot be checkpointed.
            raise EvalError("cannot suspend inside a callback of a builtin") from None
        sort_list(items, bool(reverse), keys)
    return items


@_builtin("str")
def str_(x, /):
    """str(x): the text form of x; a string is itself."""
    return to_str(x)


@_builtin("tuple")
def tuple_(x=(), /):
    """tuple(x): a tuple of the elements of the iterable x."""
    if type(x) is tuple:
        return x
    return tuple(_iterable_or_fail("tuple", x))


@_builtin("type")
def type_(x, /):
    """type(x): the name of the type of x."""
    return type_name(x)


@_builtin("zip")
def zip_(*args):
    """zip(*iterables): a list of tuples of corresponding elements."""
    seqs = []
    for i, a in enumerate(args):
        if type(a) is str or type(a) is bytes or (length(a) < 0 and
                                                   getattr(type(a), "starlark_iter", None) is None):
            raise EvalError(f"zip: argument #{i + 1} is not iterable: {type_name(a)}")
        if type(a) is range:
            seqs.append(a)  # iterated lazily: zip stops at the shortest
        else:
            seqs.append(collect(a, "zip: "))
    if not seqs:
        return []
    n = min(length(s) for s in seqs)
    if n > MAX_ALLOC:
        raise EvalError(f"zip: result too large ({int_text(n)} elements)")
    return list(zip(*seqs))


__all__ = ["UNIVERSE", "parse_int"]
