"""The Starlark value library: types, conversions and operators.

Compiled Starlark code (see `compile.py`) represents Starlark values as native
Python objects wherever the semantics allow it (None, bool, int, float, str,
bytes, tuple, range, list, dict) and calls the functions of this module for
every operation whose Starlark meaning differs from Python's: arithmetic (bool
is not a number, `/` is always float, size caps), `repr`/`str`, freezing,
iteration locks, attribute access (a sandbox: no Python attribute is ever
reachable), `%` interpolation and the ordering used by `sorted`.

The classes defined here are the Starlark types that have no native Python
counterpart: `FrozenList`, `FrozenDict`, `Set`, `Struct`, `Cell` (a captured
variable) and `BoundMethod`. All of them pickle, so a suspended program can be
checkpointed.

Every failed operation raises `EvalError` with a message modelled on
starlark-go's. Built-in methods live in `methods.py`, which fills the
`METHODS` table at import time (imported at the bottom of this module).
"""

from __future__ import annotations

import math
import types
from typing import Any, Callable, Iterable, Iterator

from . import context
from .errors import EvalError, Suspend

MAX_ALLOC = 1 << 26
"""Largest number of elements (or characters) one operation may build."""

MAX_INT_BITS = 1 << 18
"""Largest magnitude (in bits) of an int produced by `*` or `<<`.

Without it, repeated squaring would exhaust memory in a few dozen steps; at
this size `str()` of the largest int (~79,000 digits) still takes well under
a second.
"""

_INT_MAX = 1 << MAX_INT_BITS
_INT_MIN = -_INT_MAX

_FunctionType = types.FunctionType
_NoneType = type(None)

STARLARK_FUNCTIONS: dict[types.CodeType, Any] = {}
"""Code objects of compiled Starlark functions -> info objects with `.name`.

Filled by the compiler. A Python function whose `__code__` is a key is a
Starlark `function`; every other callable is a `builtin_function_or_method`.
"""

METHODS: dict[type, dict[str, Callable[..., Any]]] = {}
"""Built-in methods per receiver type: `METHODS[type][name](recv, *args, **kw)`."""

ITERATING: dict[int, int] = {}
"""id of a list/dict/set being iterated -> number of active iterations."""

DISPATCHER_CODES: set[types.CodeType] = set()
"""Code objects of frames that only forward a call (the compiler skips them)."""


# ---------------------------------------------------------------------------
# Types without a native counterpart


def _frozen(kind: str, op: str):
    def refuse(self, *args, **kwargs):
        raise EvalError(f"cannot {op} frozen {kind}")
    refuse.__name__ = f"frozen_{op.split()[0]}"
    return refuse


class FrozenList(list):
    """A frozen Starlark list; every mutating Python method raises EvalError.

    Non-mutating operations (`+`, `*`, slicing) are inherited and yield plain,
    mutable lists, which is what Starlark wants.
    """

    __slots__ = ()

    append = _frozen("list", "append to")
    extend = _frozen("list", "extend")
    insert = _frozen("list", "insert into")
    pop = _frozen("list", "pop from")
    remove = _frozen("list", "remove from")
    clear = _frozen("list", "clear")
    sort = _frozen("list", "sort")
    reverse = _frozen("list", "reverse")
    __setitem__ = _frozen("list", "assign to element of")
    __delitem__ = _frozen("list", "delete from")
    __iadd__ = _frozen("list", "apply += to")
    __imul__ = _frozen("list", "apply *= to")

    def __reduce__(self):
        # The default list protocol would rebuild us with `extend`, which
        # refuses; fill through the state instead (memoized first, so cycles
        # through the list survive).
        return (_new_frozen_list, (), list(self))

    def __setstate__(self, state):
        list.extend(self, state)


def _new_frozen_list() -> FrozenList:
    return FrozenList()


class FrozenDict(dict):
    """A frozen Starlark dict; every mutating Python method raises EvalError."""

    __slots__ = ()

    __setitem__ = _frozen("dict", "insert into")
    __delitem__ = _frozen("dict", "delete from")
    pop = _frozen("dict", "pop from")
    popitem = _frozen("dict", "pop from")
    clear = _frozen("dict", "clear")
    update = _frozen("dict", "update")
    setdefault = _frozen("dict", "insert into")
    __ior__ = _frozen("dict", "apply |= to")

    def __reduce__(self):
        return (_new_frozen_dict, (), dict(self))

    def __setstate__(self, state):
        dict.update(self, state)


def _new_frozen_dict() -> FrozenDict:
    return FrozenDict()


class Set:
    """A Starlark set: insertion-ordered, unhashable, freezable.

    The elements are the keys of a dict (values unused), which gives the
    ordering and Python's hashing for free.
    """

    __slots__ = ("_items", "frozen")
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, items: Iterable = ()):
        items = list(items)
        check_key_depth(items)
        try:
            self._items = dict.fromkeys(items)
            if any(type(k) is range for k in self._items):
                raise TypeError
        except TypeError:
            bad = next((x for x in items if not hashable(x)), None)
            raise EvalError(f"unhashable type: {_unhashable_part(bad)}") from None
        self.frozen = False

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, x) -> bool:
        return x in self._items

    def __iter__(self) -> Iterator:
        return iter(self._items)

    def __eq__(self, other) -> bool:
        if type(other) is not Set:
            return NotImplemented
        return self._items.keys() == other._items.keys()

    def __ne__(self, other) -> bool:
        if type(other) is not Set:
            return NotImplemented
        return self._items.keys() != other._items.keys()

    def __repr__(self) -> str:
        return to_repr(self)

    @classmethod
    def _of(cls, keys: dict, frozen: bool = False) -> "Set":
        # Adopts `keys` (a dict of already-hashed elements) without copying.
        s = cls.__new__(cls)
        s._items = keys
        s.frozen = frozen
        return s


class Struct:
    """An immutable record: `struct(a = 1, b = "x")`; fields sorted by name."""

    __slots__ = ("_fields",)

    def __init__(self, fields: dict[str, Any]):
        self._fields = dict(sorted(fields.items()))

    def __eq__(self, other) -> bool:
        if type(other) is not Struct:
            return NotImplemented
        return self._fields == other._fields

    def __ne__(self, other) -> bool:
        if type(other) is not Struct:
            return NotImplemented
        return self._fields != other._fields

    def __hash__(self) -> int:
        return hash(("struct",) + tuple(self._fields.items()))

    def __repr__(self) -> str:
        return to_repr(self)

    @classmethod
    def _of(cls, fields: dict) -> "Struct":
        s = cls.__new__(cls)
        s._fields = fields
        return s


def struct(**fields) -> Struct:
    """The Starlark `struct(**fields)` builtin."""
    return Struct(fields)


class Cell:
    """A variable of a Starlark function captured by a nested function.

    `v` stays unset until the variable is first assigned, so reading it early
    raises AttributeError, which the compiled code reports as
    "referenced before assignment".
    """

    __slots__ = ("v",)

    def __init__(self, *v):
        if v:
            self.v = v[0]

    def __repr__(self) -> str:
        return f"Cell({self.v!r})" if hasattr(self, "v") else "Cell()"


class BoundMethod:
    """A built-in method bound to its receiver (`"abc".count`)."""

    __slots__ = ("recv", "name")

    def __init__(self, recv, name: str):
        self.recv = recv
        self.name = name

    def __call__(self, *args, **kwargs):
        return METHODS[type(self.recv)][self.name](self.recv, *args, **kwargs)

    def __eq__(self, other) -> bool:
        if type(other) is not BoundMethod:
            return NotImplemented
        return self.recv is other.recv and self.name == other.name

    def __ne__(self, other) -> bool:
        if type(other) is not BoundMethod:
            return NotImplemented
        return not (self.recv is other.recv and self.name == other.name)

    def __hash__(self) -> int:
        return hash((id(self.recv), self.name))

    def __repr__(self) -> str:
        return to_repr(self)


DISPATCHER_CODES.add(BoundMethod.__call__.__code__)


class StringElems:
    """`s.elems()`: an opaque iterable of the 1-element substrings of s."""

    __slots__ = ("s",)
    starlark_type = "string.elems"

    def __init__(self, s: str):
        self.s = s

    def starlark_iter(self) -> Iterator:
        return iter(self.s)  # a native str iterator: picklable

    def starlark_len(self) -> int:
        return len(self.s)

    def starlark_repr(self) -> str:
        return quote(self.s) + ".elems()"

    def starlark_getindex(self, k):
        return getindex(self.s, k)


class BytesElems:
    """`b.elems()`: an opaque iterable of the int elements of b."""

    __slots__ = ("s",)
    starlark_type = "bytes.elems"

    def __init__(self, b: bytes):
        self.s = b

    def starlark_iter(self) -> Iterator:
        return iter(self.s)  # a native bytes iterator: picklable, yields ints

    def starlark_len(self) -> int:
        return len(self.s)

    def starlark_repr(self) -> str:
        return quote_bytes(self.s) + ".elems()"

    def starlark_getindex(self, k):
        return getindex(self.s, k)


# ---------------------------------------------------------------------------
# Type names

_TYPE_NAMES: dict[type, str] = {
    _NoneType: "NoneType",
    bool: "bool",
    int: "int",
    float: "float",
    str: "string",
    bytes: "bytes",
    list: "list",
    FrozenList: "list",
    tuple: "tuple",
    dict: "dict",
    FrozenDict: "dict",
    Set: "set",
    range: "range",
    Struct: "struct",
    BoundMethod: "builtin_function_or_method",
}


def type_name(v: Any) -> str:
    """The Starlark type name of `v`, as returned by `type(v)`."""
    name = _TYPE_NAMES.get(type(v))
    if name is not None:
        return name
    if type(v) is _FunctionType:
        return "function" if v.__code__ in STARLARK_FUNCTIONS else "builtin_function_or_method"
    st = getattr(type(v), "starlark_type", None)
    if isinstance(st, str):
        return st
    if callable(v):
        return "builtin_function_or_method"
    return type(v).__name__


def is_starlark_function(v: Any) -> bool:
    """Whether `v` is a function compiled from Starlark source."""
    return type(v) is _FunctionType and v.__code__ in STARLARK_FUNCTIONS


# ---------------------------------------------------------------------------
# Big-int <-> decimal text. CPython refuses conversions beyond 4300 digits
# (a guard against its quadratic algorithm); ints here are capped at
# MAX_INT_BITS, so split the work in chunks it accepts.

_CHUNK_DIGITS = 4000


def int_to_str(n: int) -> str:
    """Decimal text of an int of any size."""
    try:
        return str(n)
    except ValueError:
        pass
    if n < 0:
        return "-" + int_to_str(-n)
    # Divide and conquer by a power of ten near the middle.
    k = max(_CHUNK_DIGITS, int(n.bit_length() * 0.30103) // 2)
    hi, lo = divmod(n, 10 ** k)
    return int_to_str(hi) + int_to_str(lo).rjust(k, "0")


_BRIEF_INT = 10 ** 60


def int_text(n: int) -> str:
    """An int for an error message: its decimal text, abbreviated past 60 digits
    (a user's huge int must neither hit CPython's digit limit nor flood the message)."""
    if -_BRIEF_INT < n < _BRIEF_INT:
        return str(n)
    s = int_to_str(n)
    digits = len(s) - (s[0] == "-")
    return f"{s[:21 if n < 0 else 20]}...{s[-10:]} ({digits} digits)"


def parse_decimal(digits: str) -> int:
    """int of a string of ASCII decimal digits of any length."""
    if len(digits) <= _CHUNK_DIGITS:
        return int(digits)
    k = len(digits) // 2
    return parse_decimal(digits[:-k]) * 10 ** k + parse_decimal(digits[-k:])


# ---------------------------------------------------------------------------
# repr / str


def float_str(f: float, conv: str = "g") -> str:
    """Format a float as starlark-go does for `str` (`g`) and `%e %f %g %E %F %G`.

    `g` is Go's shortest round-trip form with exponent threshold 6, always
    showing a `.` or an exponent so the text reads as a float.
    """
    if f != f:
        return "nan"
    if f == math.inf:
        return "+inf"
    if f == -math.inf:
        return "-inf"
    if conv == "g" and (f == 0.0 or 1e-4 <= abs(f) < 1e6):
        return repr(f)  # Python's shortest form agrees with Go's in this range
    if conv in "eE":
        return format(f, ".6" + conv)
    if conv in "fF":
        return format(f, ".6f")
    r = repr(f)  # shortest digits that round-trip
    neg = r[0] == "-"
    if neg:
        r = r[1:]
    mant, _, ex = r.partition("e")
    ip, _, fp = mant.partition(".")
    ds = ip + fp
    dp = len(ip) + (int(ex) if ex else 0)  # value = 0.<ds> * 10**dp
    stripped = ds.lstrip("0")
    dp -= len(ds) - len(stripped)
    ds = stripped.rstrip("0")
    sign = "-" if neg else ""
    if not ds:
        return sign + "0.0"
    x = dp - 1  # decimal exponent of the first digit
    if x < -4 or x >= 6:
        e = "E" if conv == "G" else "e"
        m = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return f"{sign}{m}{e}{'-' if x < 0 else '+'}{abs(x):02d}"
    if dp <= 0:
        return sign + "0." + "0" * -dp + ds
    if dp >= len(ds):
        return sign + ds + "0" * (dp - len(ds)) + ".0"
    return sign + ds[:dp] + "." + ds[dp:]


_ESCAPES = {
    "\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
    "\t": "\\t", "\v": "\\v", '"': '\\"', "\\": "\\\\",
}


def _quote_char(c: str, is_bytes: bool) -> str:
    e = _ESCAPES.get(c)
    if e is not None:
        return e
    o = ord(c)
    if is_bytes and 0xDC80 <= o <= 0xDCFF:
        return f"\\x{o - 0xDC00:02x}"  # an invalid byte, via surrogateescape
    if c.isprintable():
        return c
    if o < 0x20 or o == 0x7F:
        return f"\\x{o:02x}"
    if o < 0x10000:
        return f"\\u{o:04x}"
    return f"\\U{o:08x}"


def code_point(i: int) -> str:
    """The string of code point `i` (0 <= i <= 0x10FFFF); a surrogate, which is no
    valid code point, gives U+FFFD (as in starlark-go): strings are always valid text."""
    if 0xD800 <= i <= 0xDFFF:
        return "\ufffd"
    return chr(i)


def quote(s: str) -> str:
    """A double-quoted Starlark string literal denoting `s` (Go-like escapes)."""
    if s.isprintable() and '"' not in s and "\\" not in s:
        return '"' + s + '"'  # fast path: nothing to escape
    return '"' + "".join([_quote_char(c, False) for c in s]) + '"'


def quote_bytes(b: bytes) -> str:
    """A `b"..."` literal: valid printable UTF-8 shown as text, other bytes as \\xNN."""
    s = b.decode("utf-8", "surrogateescape")
    return 'b"' + "".join([_quote_char(c, True) for c in s]) + '"'


class _Writer:
    """Accumulates repr text, bounded by MAX_ALLOC; tracks containers on the path."""

    __slots__ = ("parts", "n", "path")

    def __init__(self):
        self.parts: list[str] = []
        self.n = 0
        self.path: set[int] = set()

    def w(self, s: str) -> None:
        self.n += len(s)
        if self.n > MAX_ALLOC:
            raise EvalError("value too large to convert to a string")
        self.parts.append(s)


def _write(out: _Writer, v: Any) -> None:
    t = type(v)
    if t is str:
        out.w(quote(v))
    elif t is int:
        out.w(int_to_str(v))
    elif t is bool:
        out.w("True" if v else "False")
    elif v is None:
        out.w("None")
    elif t is float:
        out.w(float_str(v))
    elif t is list or t is FrozenList:
        if id(v) in out.path:
            out.w("[...]")
            return
        out.path.add(id(v))
        out.w("[")
        for i, x in enumerate(v):
            if i:
                out.w(", ")
            _write(out, x)
        out.w("]")
        out.path.discard(id(v))
    elif t is tuple:
        out.w("(")
        for i, x in enumerate(v):
            if i:
                out.w(", ")
            _write(out, x)
        out.w(",)" if len(v) == 1 else ")")
    elif t is dict or t is FrozenDict:
        if id(v) in out.path:
            out.w("{...}")
            return
        out.path.add(id(v))
        out.w("{")
        for i, (k, x) in enumerate(v.items()):
            if i:
                out.w(", ")
            _write(out, k)
            out.w(": ")
            _write(out, x)
        out.w("}")
        out.path.discard(id(v))
    elif t is Set:
        if not v._items:
            out.w("set()")
            return
        if id(v) in out.path:
            out.w("set([...])")
            return
        out.path.add(id(v))
        out.w("set([")
        for i, x in enumerate(v._items):
            if i:
                out.w(", ")
            _write(out, x)
        out.w("])")
        out.path.discard(id(v))
    elif t is bytes:
        out.w(quote_bytes(v))
    elif t is Struct:
        if id(v) in out.path:
            out.w("struct(...)")
            return
        out.path.add(id(v))
        out.w("struct(")
        for i, (k, x) in enumerate(v._fields.items()):
            if i:
                out.w(", ")
            out.w(k)
            out.w(" = ")
            _write(out, x)
        out.w(")")
        out.path.discard(id(v))
    else:
        out.w(_repr_other(v))


def _repr_other(v: Any) -> str:
    t = type(v)
    if t is range:
        if v.step != 1:
            return f"range({int_to_str(v.start)}, {int_to_str(v.stop)}, {int_to_str(v.step)})"
        if v.start != 0:
            return f"range({int_to_str(v.start)}, {int_to_str(v.stop)})"
        return f"range({int_to_str(v.stop)})"
    if t is BoundMethod:
        return f"<built-in method {v.name} of {type_name(v.recv)} value>"
    if t is _FunctionType:
        info = STARLARK_FUNCTIONS.get(v.__code__)
        if info is not None:
            return f"<function {info.name}>"
        return f"<built-in function {v.__name__}>"
    hook = getattr(t, "starlark_repr", None)
    if hook is not None:
        return hook(v)
    if callable(v):
        return f"<built-in function {getattr(v, '__name__', type_name(v))}>"
    return repr(v)


def to_repr(v: Any) -> str:
    """`repr(v)`: the Starlark text form, strings double-quoted."""
    t = type(v)
    if t is str:
        return quote(v)
    if t is int:
        return int_to_str(v)
    if t is float:
        return float_str(v)
    if t is bool:
        return "True" if v else "False"
    if v is None:
        return "None"
    out = _Writer()
    _write(out, v)
    return "".join(out.parts)


def to_str(v: Any) -> str:
    """`str(v)`: like `to_repr` except that a string is itself and bytes are decoded."""
    t = type(v)
    if t is str:
        return v
    if t is int:
        return int_to_str(v)
    if t is bytes:
        return v.decode("utf-8", "replace")
    if t is float:
        return float_str(v)
    if t is bool:
        return "True" if v else "False"
    if v is None:
        return "None"
    out = _Writer()
    _write(out, v)
    return "".join(out.parts)


# ---------------------------------------------------------------------------
# Freezing

_ATOMS = frozenset({_NoneType, bool, int, float, str, bytes, range})


def freeze(v: Any) -> Any:
    """Deep-freeze `v`, returning its frozen version.

    Lists, dicts and sets are copied into frozen versions; tuples and structs
    are rebuilt only if an element changed; Cells and Starlark functions are
    frozen in place (their contents, defaults and closures are replaced).
    One original maps to one frozen copy, so aliasing and cycles survive.
    """
    t = type(v)
    if t in _ATOMS or t is FrozenList or t is FrozenDict:
        return v
    memo: dict[int, tuple[Any, Any]] = {}
    work: list[tuple[Any, Any]] = []

    def fz(x):
        t = type(x)
        if t in _ATOMS or t is FrozenList or t is FrozenDict:
            return x
        hit = memo.get(id(x))
        if hit is not None:
            return hit[1]
        # Mutable containers get an empty frozen shell now and are filled
        # from the work list later: this breaks cycles, including cycles
        # through tuples (which cannot be built before their elements).
        if t is list:
            r = FrozenList()
            work.append((x, r))
        elif t is dict:
            r = FrozenDict()
            work.append((x, r))
        elif t is Set:
            if x.frozen:
                return x
            r = Set._of({}, True)
            work.append((x, r))
        elif t is tuple:
            memo[id(x)] = (x, x)  # provisional: a cycle back here is impossible
            elems = [fz(e) for e in x]
            r = x
            for a, b in zip(elems, x):
                if a is not b:
                    r = tuple(elems)
                    break
        elif t is Struct:
            memo[id(x)] = (x, x)
            fields = {k: fz(e) for k, e in x._fields.items()}
            r = x
            for k, e in x._fields.items():
                if fields[k] is not e:
                    r = Struct._of(fields)
                    break
        elif t is Cell or (t is _FunctionType and x.__code__ in STARLARK_FUNCTIONS):
            r = x
            work.append((x, x))
        elif t is BoundMethod:
            recv = fz(x.recv)
            r = x if recv is x.recv else BoundMethod(recv, x.name)
        else:
            hook = getattr(t, "starlark_freeze", None)
            if hook is not None:
                hook(x)
            return x
        memo[id(x)] = (x, r)
        return r

    result = fz(v)
    while work:
        x, r = work.pop()
        t = type(x)
        if t is list:
            list.extend(r, [fz(e) for e in x])
        elif t is dict:
            for k, e in x.items():
                dict.__setitem__(r, fz(k), fz(e))
        elif t is Set:
            r._items = {fz(e): None for e in x._items}
        elif t is Cell:
            if hasattr(x, "v"):
                x.v = fz(x.v)
        else:  # a Starlark function
            if x.__defaults__:
                x.__defaults__ = fz(x.__defaults__)
            if x.__kwdefaults__:
                x.__kwdefaults__ = {k: fz(e) for k, e in x.__kwdefaults__.items()}
            for cell in x.__closure__ or ():
                try:
                    c = cell.cell_contents
                except ValueError:  # an empty cell
                    continue
                n = fz(c)
                if n is not c:
                    cell.cell_contents = n
    return result


def is_frozen(v: Any) -> bool:
    """Whether `v` itself refuses mutation (not a deep check)."""
    t = type(v)
    if t is list or t is dict:
        return False
    if t is Set:
        return v.frozen
    return True


# ---------------------------------------------------------------------------
# Mutation checks and iteration


def lock(v: Any) -> None:
    """Mark `v` as being iterated: mutating it is an error until `unlock`."""
    t = type(v)
    if t is list or t is dict or t is Set:
        k = id(v)
        ITERATING[k] = ITERATING.get(k, 0) + 1


def unlock(v: Any) -> None:
    """Undo one `lock(v)`."""
    t = type(v)
    if t is list or t is dict or t is Set:
        k = id(v)
        n = ITERATING.get(k, 0) - 1
        if n > 0:
            ITERATING[k] = n
        else:
            ITERATING.pop(k, None)


def check_mutable(v: Any, op: str) -> None:
    """Raise EvalError if `v` is frozen or being iterated; `op` is e.g. "append to"."""
    t = type(v)
    if t is FrozenList or t is FrozenDict or (t is Set and v.frozen):
        raise EvalError(f"cannot {op} frozen {type_name(v)}")
    if ITERATING and id(v) in ITERATING:
        raise EvalError(f"cannot {op} {type_name(v)} during iteration")


def range_len(r: range) -> int:
    """len of a range, even one longer than sys.maxsize."""
    try:
        return len(r)
    except OverflowError:
        start, stop, step = r.start, r.stop, r.step
        if step > 0:
            return max(0, (stop - start + step - 1) // step)
        return max(0, (start - stop - step - 1) // -step)


def iterate(v: Any) -> Iterator:
    """A native, picklable iterator over the iterable `v` (for loops).

    Strings and bytes are not iterable in Starlark.
    """
    t = type(v)
    if t is list or t is tuple or t is range or t is dict or t is FrozenList or t is FrozenDict:
        return iter(v)
    if t is Set:
        return iter(list(v._items))
    hook = getattr(t, "starlark_iter", None)
    if hook is not None:
        return hook(v)
    raise EvalError(f"got {type_name(v)}, want iterable")


def iterable(v: Any) -> Any:
    """The object to iterate natively for the iterable `v` (comprehensions)."""
    t = type(v)
    if t is list or t is tuple or t is range or t is dict or t is FrozenList or t is FrozenDict:
        return v
    if t is Set:
        return list(v._items)
    hook = getattr(t, "starlark_iter", None)
    if hook is not None:
        return hook(v)
    raise EvalError(f"got {type_name(v)}, want iterable")


def collect(v: Any, what: str = "") -> list | tuple:
    """The elements of the iterable `v` as a list or tuple (may be `v` itself).

    Bounded by MAX_ALLOC: a huge range is refused instead of materialised.
    `what` prefixes error messages (a builtin's name).
    """
    t = type(v)
    if t is list or t is tuple or t is FrozenList:
        return v
    if t is range:
        if range_len(v) > MAX_ALLOC:
            raise EvalError(f"{what}range too large to materialize ({int_text(range_len(v))} elements)")
        return list(v)
    if t is dict or t is FrozenDict:
        return list(v)
    if t is Set:
        return list(v._items)
    hook = getattr(t, "starlark_iter", None)
    if hook is not None:
        out = []
        for x in hook(v):
            out.append(x)
            if len(out) > MAX_ALLOC:
                raise EvalError(f"{what}iterable too large to materialize")
        return out
    raise EvalError(f"{what}got {type_name(v)}, want iterable")


def length(v: Any) -> int:
    """`len(v)`, or -1 if `v` has no length."""
    t = type(v)
    if t is str or t is list or t is tuple or t is dict or t is bytes or t is Set \
            or t is FrozenList or t is FrozenDict:
        return len(v)
    if t is range:
        return range_len(v)
    hook = getattr(t, "starlark_len", None)
    if hook is not None:
        return hook(v)
    return -1


def unpack(v: Any, n: int) -> tuple:
    """Check that `v` is an iterable of exactly `n` elements; return them as a tuple."""
    t = type(v)
    if t is tuple or t is list or t is FrozenList:
        if len(v) != n:
            _unpack_error(len(v), n)
        return tuple(v)
    k = length(v)
    if t is str or t is bytes or (k < 0 and getattr(t, "starlark_iter", None) is None):
        raise EvalError(f"got {type_name(v)} in sequence assignment, want iterable")
    if k >= 0 and k != n:
        _unpack_error(k, n)  # before materialising a huge range
    seq = collect(v)
    if len(seq) != n:
        _unpack_error(len(seq), n)
    return tuple(seq)


def _unpack_error(got: int, n: int):
    if got > n:
        raise EvalError(f"too many values to unpack (got {got}, want {n})")
    raise EvalError(f"too few values to unpack (got {got}, want {n})")


# ---------------------------------------------------------------------------
# Hashing


def hashable(v: Any) -> bool:
    """Whether `v` may be a dict key or set element."""
    t = type(v)
    if t is str or t is int or t is bool or t is float or t is bytes or v is None:
        return True
    if t is range:
        return False  # spec: ranges are not hashable
    if t is tuple and _too_deep(v):
        raise EvalError("key is nested too deeply to hash")
    try:
        hash(v)
    except TypeError:
        return False
    return True


_MAX_KEY_DEPTH = 1000


def _too_deep(v: tuple) -> bool:
    """Is a tuple nested deeper than CPython can hash without overflowing its C stack?"""
    stack = [(v, 1)]
    while stack:
        t, d = stack.pop()
        if d > _MAX_KEY_DEPTH:
            return True
        for x in t:
            if type(x) is tuple:
                stack.append((x, d + 1))
    return False


def check_key_depth(items) -> None:
    """Refuse tuples nested too deeply to hash among would-be keys."""
    for x in items:
        if type(x) is tuple and _too_deep(x):
            raise EvalError("key is nested too deeply to hash")


def check_hashable(v: Any) -> None:
    """Raise EvalError("unhashable type: list") unless `v` is hashable."""
    if not hashable(v):
        raise EvalError(f"unhashable type: {_unhashable_part(v)}")


def _unhashable_part(v: Any) -> str:
    # Name the innermost offending type: (1, [2]) -> "list".
    t = type(v)
    if t is tuple:
        for x in v:
            if not hashable(x):
                return _unhashable_part(x)
    if t is Struct:
        for x in v._fields.values():
            if not hashable(x):
                return _unhashable_part(x)
    return type_name(v)


def starlark_hash(v: Any) -> int:
    """The `hash` builtin: Java's String.hashCode (over UTF-16) for strings, FNV-1a for bytes."""
    if type(v) is str:
        h = 0
        if v.isascii():
            for c in v.encode("ascii"):
                h = (31 * h + c) & 0xFFFFFFFF
        else:
            data = v.encode("utf-16-le", "surrogatepass")
            for i in range(0, len(data), 2):
                h = (31 * h + (data[i] | data[i + 1] << 8)) & 0xFFFFFFFF
    elif type(v) is bytes:
        h = 0x811C9DC5
        for c in v:
            h = ((h ^ c) * 0x01000193) & 0xFFFFFFFF
    else:
        raise EvalError(f"hash: got {type_name(v)}, want string or bytes")
    return h - (1 << 32) if h & 0x80000000 else h


# ---------------------------------------------------------------------------
# Arithmetic. Each operator starts with the int fast path: these sit on the
# interpreter's hot path.


def _binop_error(op: str, a, b):
    return EvalError(f"unknown binary op: {type_name(a)} {op} {type_name(b)}")


def _float_of(x) -> float:
    try:
        return float(x)
    except OverflowError:
        raise EvalError("int too large to convert to float") from None


def _is_num(x) -> bool:
    t = type(x)
    return t is int or t is float


def _check_size(n: int, what: str) -> None:
    if n > MAX_ALLOC:
        raise EvalError(f"{what} too large ({int_text(n)} elements, limit {MAX_ALLOC})")
    if n >= context.MEMORY_CHECK_MIN:
        context.check_memory(8 * n)


def _check_int(r: int) -> int:
    if _INT_MIN < r < _INT_MAX:
        return r
    raise EvalError(f"int too large (more than {MAX_INT_BITS} bits)")


def add(a, b):
    """`a + b`."""
    if type(a) is int and type(b) is int:
        return a + b
    ta, tb = type(a), type(b)
    if ta is float and tb is float:
        return a + b
    if ta is str and tb is str or ta is bytes and tb is bytes or ta is tuple and tb is tuple:
        _check_size(len(a) + len(b), "result of +")
        return a + b
    if (ta is list or ta is FrozenList) and (tb is list or tb is FrozenList):
        _check_size(len(a) + len(b), "result of +")
        return list.__add__(a, b)
    if _is_num(a) and _is_num(b):
        return _float_of(a) + _float_of(b)
    raise _binop_error("+", a, b)


def sub(a, b):
    """`a - b`."""
    if type(a) is int and type(b) is int:
        return a - b
    if _is_num(a) and _is_num(b):
        if type(a) is float and type(b) is float:
            return a - b
        return _float_of(a) - _float_of(b)
    if type(a) is Set and type(b) is Set:
        other = b._items
        return Set._of({k: None for k in a._items if k not in other})
    raise _binop_error("-", a, b)


def _repeat(seq, n):
    # `seq * n` for string/bytes/list/tuple; n is an int (not bool).
    if n <= 0:
        return seq[:0] if type(seq) is not FrozenList else []
    _check_size(len(seq) * n, "result of *")
    if type(seq) is FrozenList:
        return list.__mul__(seq, n)
    return seq * n


_SEQ_TYPES = (str, bytes, list, tuple, FrozenList)


def mul(a, b):
    """`a * b`: numbers, or repetition of a string/bytes/list/tuple by an int."""
    if type(a) is int and type(b) is int:
        r = a * b
        if _INT_MIN < r < _INT_MAX:
            return r
        return _check_int(r)
    ta, tb = type(a), type(b)
    if ta is float and tb is float:
        return a * b
    if _is_num(a) and _is_num(b):
        return _float_of(a) * _float_of(b)
    if tb is int and ta in _SEQ_TYPES:
        return _repeat(a, b)
    if ta is int and tb in _SEQ_TYPES:
        return _repeat(b, a)
    raise _binop_error("*", a, b)


def truediv(a, b):
    """`a / b`: always a float."""
    if _is_num(a) and _is_num(b):
        if b == 0:
            raise EvalError("floating-point division by zero")
        if type(a) is int and type(b) is int:
            try:
                return a / b
            except OverflowError:
                raise EvalError("integer division result too large for a float") from None
        return _float_of(a) / _float_of(b)
    raise _binop_error("/", a, b)


def floordiv(a, b):
    """`a // b`: floored division."""
    if type(a) is int and type(b) is int:
        if b == 0:
            raise EvalError("integer division by zero")
        return a // b
    if _is_num(a) and _is_num(b):
        if b == 0:
            raise EvalError("floating-point division by zero")
        return _float_of(a) // _float_of(b)
    raise _binop_error("//", a, b)


def mod(a, b):
    """`a % b`: remainder of floored division, or string interpolation."""
    if type(a) is int and type(b) is int:
        if b == 0:
            raise EvalError("integer modulo by zero")
        return a % b
    if type(a) is str:
        return percent_format(a, b)
    if _is_num(a) and _is_num(b):
        if b == 0:
            raise EvalError("floating-point modulo by zero")
        return _float_of(a) % _float_of(b)
    raise _binop_error("%", a, b)


def bit_and(a, b):
    """`a & b`: ints, or set intersection."""
    if type(a) is int and type(b) is int:
        return a & b
    if type(a) is Set and type(b) is Set:
        other = b._items
        return Set._of({k: None for k in a._items if k in other})
    raise _binop_error("&", a, b)


def bit_or(a, b):
    """`a | b`: ints, set union, or dict union."""
    if type(a) is int and type(b) is int:
        return a | b
    ta, tb = type(a), type(b)
    if ta is Set and tb is Set:
        items = dict(a._items)
        items.update(b._items)
        return Set._of(items)
    if (ta is dict or ta is FrozenDict) and (tb is dict or tb is FrozenDict):
        r = dict(a)
        dict.update(r, b)
        return r
    raise _binop_error("|", a, b)


def bit_xor(a, b):
    """`a ^ b`: ints, or set symmetric difference."""
    if type(a) is int and type(b) is int:
        return a ^ b
    if type(a) is Set and type(b) is Set:
        x, y = a._items, b._items
        items = {k: None for k in x if k not in y}
        for k in y:
            if k not in x:
                items[k] = None
        return Set._of(items)
    raise _binop_error("^", a, b)


def lshift(a, b):
    """`a << b`."""
    if type(a) is int and type(b) is int:
        if b < 0:
            raise EvalError(f"negative shift count: {int_text(b)}")
        if b >= MAX_INT_BITS and a:
            # Refused before shifting: the result could not fit the cap.
            raise EvalError(f"shift count too large: {int_text(b)}")
        return _check_int(a << b)
    raise _binop_error("<<", a, b)


def rshift(a, b):
    """`a >> b` (arithmetic)."""
    if type(a) is int and type(b) is int:
        if b < 0:
            raise EvalError(f"negative shift count: {int_text(b)}")
        return a >> b
    raise _binop_error(">>", a, b)


def neg(a):
    """`-a`."""
    if type(a) is int or type(a) is float:
        return -a
    raise EvalError(f"unknown unary op: -{type_name(a)}")


def pos(a):
    """`+a`."""
    if type(a) is int or type(a) is float:
        return +a
    raise EvalError(f"unknown unary op: +{type_name(a)}")


def invert(a):
    """`~a`."""
    if type(a) is int:
        return ~a
    raise EvalError(f"unknown unary op: ~{type_name(a)}")


# Augmented assignment. `+=` on a list and `|= &= -= ^=` on sets and `|=` on
# dicts mutate the left operand in place; everything else is `x = x op y`.


def iadd(a, b):
    """`a += b`: extends a list in place, else `a + b`."""
    if type(a) is int and type(b) is int:
        return a + b
    ta = type(a)
    if ta is list or ta is FrozenList:
        tb = type(b)
        if tb is str or tb is bytes or length(b) < 0 and getattr(tb, "starlark_iter", None) is None:
            raise _binop_error("+", a, b)
        check_mutable(a, "apply += to")
        _check_size(len(a) + length(b), "result of +=")
        list.extend(a, collect(b))
        return a
    return add(a, b)


def ior(a, b):
    """`a |= b`: in place for sets and dicts."""
    ta = type(a)
    if ta is Set and type(b) is Set:
        check_mutable(a, "insert into")
        a._items.update(b._items)
        return a
    if (ta is dict or ta is FrozenDict) and (type(b) is dict or type(b) is FrozenDict):
        check_mutable(a, "apply |= to")
        dict.update(a, b)
        return a
    return bit_or(a, b)


def iand(a, b):
    """`a &= b`: in place for sets."""
    if type(a) is Set and type(b) is Set:
        check_mutable(a, "remove from")
        other = b._items
        for k in [k for k in a._items if k not in other]:
            del a._items[k]
        return a
    return bit_and(a, b)


def isub(a, b):
    """`a -= b`: in place for sets."""
    if type(a) is Set and type(b) is Set:
        check_mutable(a, "remove from")
        for k in b._items:
            a._items.pop(k, None)
        return a
    return sub(a, b)


def ixor(a, b):
    """`a ^= b`: in place for sets."""
    if type(a) is Set and type(b) is Set:
        check_mutable(a, "insert into")
        x = a._items
        for k in list(b._items):
            if k in x:
                del x[k]
            else:
                x[k] = None
        return a
    return bit_xor(a, b)


BINARY_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "+": add, "-": sub, "*": mul, "/": truediv, "//": floordiv, "%": mod,
    "&": bit_and, "|": bit_or, "^": bit_xor, "<<": lshift, ">>": rshift,
}
"""Binary operator token -> implementation."""

AUGMENTED_OPS: dict[str, Callable[[Any, Any], Any]] = {
    **BINARY_OPS, "+": iadd, "|": ior, "&": iand, "-": isub, "^": ixor,
}
"""Operator of an augmented assignment (`+` for `+=`) -> implementation."""


# ---------------------------------------------------------------------------
# Comparison

_MAX_CMP_DEPTH = 200


def equal(a, b, _depth: int = 0) -> bool:
    """Starlark `a == b`: bool is not a number, NaN equals NaN, deep for containers."""
    if a is b:
        return True
    ta, tb = type(a), type(b)
    if ta is tb:
        if ta is str or ta is int or ta is bytes or ta is bool or a is None:
            return a == b
        if ta is float:
            return a == b or (a != a and b != b)
    if ta is bool or tb is bool:
        return False
    if (ta is int or ta is float) and (tb is int or tb is float):
        return a == b
    if _depth > _MAX_CMP_DEPTH:
        raise EvalError("comparison exceeded maximum recursion depth")
    if ta is FrozenList:
        ta = list
    if tb is FrozenList:
        tb = list
    if ta is FrozenDict:
        ta = dict
    if tb is FrozenDict:
        tb = dict
    if ta is not tb:
        return False
    if ta is list or ta is tuple:
        if len(a) != len(b):
            return False
        for x, y in zip(a, b):
            if not equal(x, y, _depth + 1):
                return False
        return True
    if ta is dict:
        if len(a) != len(b):
            return False
        for k, x in a.items():
            if k not in b:
                return False
            if not equal(x, b[k], _depth + 1):
                return False
        return True
    if ta is Struct:
        if a._fields.keys() != b._fields.keys():
            return False
        for k, x in a._fields.items():
            if not equal(x, b._fields[k], _depth + 1):
                return False
        return True
    return a == b


def _cmp(a, b, op: str, depth: int = 0) -> int:
    """Three-way ordered comparison (-1, 0, 1) with Starlark's ordering."""
    ta, tb = type(a), type(b)
    if (ta is int or ta is float) and (tb is int or tb is float):
        if ta is float and a != a:
            return 0 if (tb is float and b != b) else 1  # NaN is above everything
        if tb is float and b != b:
            return -1
        return -1 if a < b else (1 if a > b else 0)
    if ta is FrozenList:
        ta = list
    if tb is FrozenList:
        tb = list
    if ta is tb:
        if ta is str or ta is bytes or ta is bool:
            return -1 if a < b else (1 if a > b else 0)
        if ta is list or ta is tuple:
            if depth > _MAX_CMP_DEPTH:
                raise EvalError("comparison exceeded maximum recursion depth")
            for x, y in zip(a, b):
                if not equal(x, y, depth + 1):
                    return _cmp(x, y, op, depth + 1)
            return -1 if len(a) < len(b) else (1 if len(a) > len(b) else 0)
        hook = getattr(ta, "starlark_compare", None)
        if hook is not None:
            return hook(a, b)
    raise EvalError(f"unsupported comparison: {type_name(a)} {op} {type_name(b)}")


def compare(op: str, a, b) -> bool:
    """Starlark comparison `a op b` for op in == != < <= > >=."""
    if op == "==":
        return equal(a, b)
    if op == "!=":
        return not equal(a, b)
    c = _cmp(a, b, op)
    if op == "<":
        return c < 0
    if op == "<=":
        return c <= 0
    if op == ">":
        return c > 0
    if op == ">=":
        return c >= 0
    raise EvalError(f"unknown comparison operator {op}")


class _SortKey:
    """Wraps a value so Python's sort uses Starlark's ordering."""

    __slots__ = ("v",)

    def __init__(self, v):
        self.v = v

    def __lt__(self, other: "_SortKey") -> bool:
        return _cmp(self.v, other.v, "<") < 0


def _natively_ordered(items: list) -> bool:
    # Python's own order agrees with Starlark's on homogeneous lists of
    # strings, of bytes, and of ints/floats without NaN.
    t0 = type(items[0])
    if t0 is str or t0 is bytes:
        return all(type(x) is t0 for x in items)
    if t0 is int or t0 is float:
        return all(type(x) is int or (type(x) is float and x == x) for x in items)
    return False


def sort_list(items: list, reverse: bool = False, keys: list | None = None) -> None:
    """Sort `items` in place, stably, with Starlark's ordering.

    With `keys` (one per item, already computed), items are ordered by their
    keys. Incomparable elements raise EvalError.
    """
    if not items:
        return
    if keys is None:
        if _natively_ordered(items):
            items.sort(reverse=reverse)
        else:
            items.sort(key=_SortKey, reverse=reverse)
        return
    order = list(range(len(items)))
    if _natively_ordered(keys):
        order.sort(key=keys.__getitem__, reverse=reverse)
    else:
        order.sort(key=lambda i: _SortKey(keys[i]), reverse=reverse)
    items[:] = [items[i] for i in order]


# ---------------------------------------------------------------------------
# Indexing, dict literals, call arguments


def setindex(x, k, v) -> None:
    """`x[k] = v` for a list (int index, negatives from the end) or a dict."""
    t = type(x)
    if t is dict:
        if ITERATING and id(x) in ITERATING:
            raise EvalError("cannot insert into dict during iteration")
        if type(k) is range:  # hashable in Python, not in Starlark
            raise EvalError("unhashable type: range")
        try:
            x[k] = v
        except TypeError:
            raise EvalError(f"unhashable type: {_unhashable_part(k)}") from None
        if len(x) > MAX_ALLOC:
            del x[k]
            raise EvalError(f"dict too large (limit {MAX_ALLOC} entries)")
        return
    if t is list:
        check_mutable(x, "assign to element of")
        if type(k) is not int:
            raise EvalError(f"list index: got {type_name(k)}, want int")
        n = len(x)
        i = k + n if k < 0 else k
        if not 0 <= i < n:
            raise EvalError(f"list index {int_text(k)} out of range [{-n}:{n - 1}]")
        x[i] = v
        return
    if t is FrozenList:
        raise EvalError("cannot assign to element of frozen list")
    if t is FrozenDict:
        raise EvalError("cannot insert into frozen dict")
    hook = getattr(t, "starlark_setindex", None)
    if hook is not None:
        hook(x, k, v)
        return
    raise EvalError(f"{type_name(x)} value does not support item assignment")


_INDEXABLE = (list, tuple, str, bytes, range, FrozenList)


def getindex(x, k):
    """`x[k]` with Starlark's checks (optional: native indexing is close).

    Sequences take an int (not a bool) in [-n, n); dicts any hashable key.
    """
    t = type(x)
    if t in _INDEXABLE:
        if type(k) is not int:
            raise EvalError(f"{type_name(x)} index: got {type_name(k)}, want int")
        n = length(x)
        i = k + n if k < 0 else k
        if not 0 <= i < n:
            raise EvalError(f"{type_name(x)} index {k} out of range [{-n}:{n - 1}]")
        return x[i]
    if t is dict or t is FrozenDict:
        try:
            return x[k]
        except KeyError:
            raise EvalError(f"key {to_repr(k)} not in dict") from None
        except TypeError:
            raise EvalError(f"unhashable type: {_unhashable_part(k)}") from None
    hook = getattr(t, "starlark_getindex", None)
    if hook is not None:
        return hook(x, k)
    raise EvalError(f"unhandled index operation {type_name(x)}[{type_name(k)}]")


def getslice(x, start=None, stop=None, step=None):
    """`x[start:stop:step]` with Starlark's checks; a list slice is a new plain list."""
    if type(x) not in _INDEXABLE:
        raise EvalError(f"invalid slice operand {type_name(x)}")
    for v in (start, stop, step):
        if v is not None and type(v) is not int:
            raise EvalError(f"invalid slice index: got {type_name(v)}, want int or None")
    if step == 0:
        raise EvalError("slice step cannot be zero")
    return x[start:stop:step]


def contains(container, x) -> bool:
    """Starlark `x in container` (optional: native `in` is close)."""
    t = type(container)
    if t is str:
        if type(x) is not str:
            raise EvalError(f"'in <string>' requires string as left operand, not {type_name(x)}")
        return x in container
    if t is bytes:
        if type(x) is int:
            if not 0 <= x <= 255:
                raise EvalError(f"int in bytes: {int_text(x)} out of range")
            return x in container
        if type(x) is not bytes:
            raise EvalError(f"'in bytes' requires bytes or int as left operand, not {type_name(x)}")
        return x in container
    if t is list or t is tuple or t is FrozenList:
        for e in container:
            if equal(e, x):
                return True
        return False
    if t is dict or t is FrozenDict or t is Set:
        try:
            found = x in container
        except TypeError:
            raise EvalError(f"unhashable type: {_unhashable_part(x)}") from None
        tx = type(x)
        if found and (tx is int or tx is float or tx is bool) and (x == 0 or x == 1):
            # Python's 1 == 1.0 == True would let True find the key 1;
            # Starlark keeps bools apart from numbers. Only 0 and 1 collide.
            want_bool = tx is bool
            for k in (container._items if t is Set else container):
                if k == x and (type(k) is bool) == want_bool:
                    return True
            return False
        return found
    if t is range:
        if type(x) is not int and type(x) is not float:
            raise EvalError(f"'in <range>' requires a number as left operand, not {type_name(x)}")
        return x in container
    hook = getattr(t, "starlark_contains", None)
    if hook is not None:
        return bool(hook(container, x))
    raise EvalError(f"unknown binary op: {type_name(x)} in {type_name(container)}")


def dict_literal(pairs: Iterable[tuple[Any, Any]]) -> dict:
    """The dict `{k: v, ...}`; a repeated key is an error."""
    d: dict = {}
    for k, v in pairs:
        if type(k) is range:  # hashable in Python, not in Starlark
            raise EvalError("unhashable type: range")
        if type(k) is tuple and _too_deep(k):
            raise EvalError("key is nested too deeply to hash")
        try:
            if k in d:
                raise EvalError(f"duplicate key: {to_repr(k)}")
            d[k] = v
        except TypeError:
            raise EvalError(f"unhashable type: {_unhashable_part(k)}") from None
    return d


def starargs(v) -> tuple:
    """The positional arguments of `f(*v)`."""
    t = type(v)
    if t is tuple:
        return v
    if t is str or t is bytes or (length(v) < 0 and getattr(t, "starlark_iter", None) is None):
        raise EvalError(f"argument after * must be iterable, not {type_name(v)}")
    return tuple(collect(v, "argument after *: "))


def kwargs(v) -> dict:
    """The keyword arguments of `f(**v)`: a dict with string keys."""
    if type(v) is not dict and type(v) is not FrozenDict:
        raise EvalError(f"argument after ** must be a dict, not {type_name(v)}")
    for k in v:
        if type(k) is not str:
            raise EvalError(f"keywords must be strings, not {type_name(k)}")
    return v


def call_callback(fn, *args):
    """Call a Starlark callable from inside a builtin (sorted's key, ...).

    The builtin's Python frame cannot be checkpointed, so suspending there
    is refused.
    """
    try:
        return fn(*args)
    except Suspend:
        raise EvalError("cannot suspend inside a callback of a builtin") from None


# ---------------------------------------------------------------------------
# Attributes. A sandbox: only built-in methods, struct fields and what a host
# object exposes through starlark_getattr are reachable.


def _no_attr(x, name: str) -> EvalError:
    return EvalError(f"{type_name(x)} has no .{name} field or method")


def getattr_(x, name: str):
    """`x.name`."""
    t = type(x)
    table = METHODS.get(t)
    if table is not None and name in table:
        return BoundMethod(x, name)
    if t is Struct:
        try:
            return x._fields[name]
        except KeyError:
            raise _no_attr(x, name) from None
    if name[:1] == "_":
        raise _no_attr(x, name)
    hook = getattr(t, "starlark_getattr", None)
    if hook is not None:
        try:
            return hook(x, name)
        except (AttributeError, KeyError):
            raise _no_attr(x, name) from None
    raise _no_attr(x, name)


def hasattr_(x, name: str) -> bool:
    """`hasattr(x, name)`."""
    try:
        getattr_(x, name)
    except EvalError:
        return False
    return True


def dir_(x) -> list[str]:
    """`dir(x)`: sorted names of the attributes of x."""
    t = type(x)
    names = set(METHODS.get(t, ()))
    if t is Struct:
        names.update(x._fields)
    hook = getattr(t, "starlark_attrs", None)
    if hook is not None:
        names.update(n for n in hook(x) if type(n) is str and n[:1] != "_")
    return sorted(names)


def setattr_(x, name: str, v) -> None:
    """`x.name = v`: only host objects defining starlark_setattr allow it."""
    hook = getattr(type(x), "starlark_setattr", None)
    if hook is not None and name[:1] != "_":
        hook(x, name, v)
        return
    raise EvalError(f"cannot set .{name} field of {type_name(x)} value")


_DISPATCHERS: dict[str, Callable[..., Any]] = {}


def method_dispatcher(name: str) -> Callable[..., Any]:
    """A function `(recv, *args, **kwargs)` calling method `name` of `recv`.

    Built-in types go straight to the METHODS table (no BoundMethod is made);
    anything else falls back to `getattr_(recv, name)(...)`.
    """
    d = _DISPATCHERS.get(name)
    if d is not None:
        return d

    def dispatch(recv, *args, **kwargs):
        table = METHODS.get(type(recv))
        if table is not None:
            impl = table.get(name)
            if impl is not None:
                return impl(recv, *args, **kwargs)
        return getattr_(recv, name)(*args, **kwargs)

    dispatch.__name__ = dispatch.__qualname__ = name
    DISPATCHER_CODES.add(dispatch.__code__)
    _DISPATCHERS[name] = dispatch
    return dispatch


# ---------------------------------------------------------------------------
# `%` interpolation: our own parser; Python's `%`/format never sees user text.


def _as_int_for(conv: str, x) -> int:
    if type(x) is int:
        return x
    if type(x) is float:
        if x != x or x in (math.inf, -math.inf):
            raise EvalError(f"%{conv} format requires a finite number, got {float_str(x)}")
        return int(x)
    raise EvalError(f"%{conv} format requires integer: {type_name(x)}")


def _format_one(conv: str, x) -> str:
    if conv == "s":
        return to_str(x)
    if conv == "r":
        return to_repr(x)
    if conv in "di":
        return int_to_str(_as_int_for(conv, x))
    if conv == "o":
        return format(_as_int_for(conv, x), "o")
    if conv == "x":
        return format(_as_int_for(conv, x), "x")
    if conv == "X":
        return format(_as_int_for(conv, x), "X")
    if conv in "eEfFgG":
        if type(x) is not int and type(x) is not float:
            raise EvalError(f"%{conv} format requires float: {type_name(x)}")
        return float_str(_float_of(x), conv)
    if conv == "c":
        if type(x) is int:
            if not 0 <= x <= 0x10FFFF:
                raise EvalError(f"%c format requires a valid Unicode code point, got {int_text(x)}")
            return code_point(x)
        if type(x) is str and len(x) == 1:
            return x
        raise EvalError(f"%c format requires a single-character string or an int, got {type_name(x)}")
    raise EvalError(f"unknown conversion %{conv}")


def percent_format(fmt: str, arg) -> str:
    """`fmt % arg`: the spec's string interpolation (%s %r %d %i %o %x %X %e %f %g %E %F %G %c %%)."""
    args = arg if type(arg) is tuple else (arg,)
    out: list[str] = []
    size = 0
    n = len(fmt)
    i = 0
    ai = 0
    while True:
        j = fmt.find("%", i)
        if j < 0:
            out.append(fmt[i:])
            break
        out.append(fmt[i:j])
        if j + 1 >= n:
            raise EvalError("incomplete format")
        conv = fmt[j + 1]
        i = j + 2
        if conv == "%":
            out.append("%")
            continue
        if conv not in "srdioxXeEfFgGc":
            raise EvalError(f"unknown conversion %{conv}")
        if ai >= len(args):
            raise EvalError("not enough arguments for format string")
        s = _format_one(conv, args[ai])
        ai += 1
        size += len(s)
        if size > MAX_ALLOC:
            raise EvalError("result of % too large")
        out.append(s)
    if ai < len(args):
        raise EvalError("too many arguments for format string")
    r = "".join(out)
    _check_size(len(r), "result of %")
    return r


# Fill METHODS. Imported last: methods.py imports names defined above.
from . import methods as _methods  # noqa: E402,F401
