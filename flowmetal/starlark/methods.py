"""Built-in methods of the Starlark string, bytes, list, dict and set types.

Importing this module fills `values.METHODS` (values.py imports it at its
end, so the tables are always complete). Each implementation takes the
receiver first (positional-only) and then the spec's parameters, by position
or, where Starlark allows it, by keyword. Mutating methods call
`check_mutable` first, so frozen values and values being iterated refuse.
The same tables serve the frozen subclasses, FrozenList and FrozenDict.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from . import context
from .errors import EvalError
from .values import (
    ITERATING,
    MAX_ALLOC,
    METHODS,
    BytesElems,
    StringElems,
    FrozenDict,
    FrozenList,
    Set,
    _unhashable_part,
    check_mutable,
    collect,
    equal,
    int_text,
    to_repr,
    to_str,
    type_name,
)

STRING_METHODS: dict[str, Callable[..., Any]] = {}
BYTES_METHODS: dict[str, Callable[..., Any]] = {}
LIST_METHODS: dict[str, Callable[..., Any]] = {}
DICT_METHODS: dict[str, Callable[..., Any]] = {}
SET_METHODS: dict[str, Callable[..., Any]] = {}

_MISSING = object()


def _method(table: dict, name: str):
    """Register the decorated function as method `name`; Python's argument
    errors then read `name() takes ...`."""
    def deco(fn):
        fn.__name__ = fn.__qualname__ = name
        table[name] = fn
        return fn
    return deco


def _want(fname: str, param: str, v, t: type, tname: str):
    if type(v) is not t:
        raise EvalError(f"{fname}: for parameter {param}: got {type_name(v)}, want {tname}")
    return v


def _want_str(fname: str, param: str, v) -> str:
    return _want(fname, param, v, str, "string")


def _opt_int(fname: str, param: str, v) -> int | None:
    if v is None or type(v) is int:
        return v
    raise EvalError(f"{fname}: for parameter {param}: got {type_name(v)}, want int or None")


def _clamp(i: int | None, n: int, default: int) -> int:
    # Starlark subsequence indexing: negatives count from the end, then clamp.
    if i is None:
        return default
    if i < 0:
        i += n
        return 0 if i < 0 else i
    return n if i > n else i


def _sub(fname: str, s: str, start, end) -> tuple[str, int]:
    """`s[start:end]` with Starlark's index conventions, and its offset."""
    start = _opt_int(fname, "start", start)
    end = _opt_int(fname, "end", end)
    if start is None and end is None:
        return s, 0
    n = len(s)
    i = _clamp(start, n, 0)
    j = _clamp(end, n, n)
    return s[i:j] if i < j else "", i


def _check_len(fname: str, n: int) -> None:
    if n > MAX_ALLOC:
        raise EvalError(f"{fname}: result too large ({int_text(n)} elements, limit {MAX_ALLOC})")
    if n >= context.MEMORY_CHECK_MIN:
        context.check_memory(8 * n)


# ---------------------------------------------------------------------------
# string

_S = STRING_METHODS


@_method(_S, "capitalize")
def str_capitalize(self, /):
    return self[:1].upper() + self[1:].lower()


@_method(_S, "count")
def str_count(self, sub, start=None, end=None, /):
    _want_str("count", "sub", sub)
    s, _ = _sub("count", self, start, end)
    return s.count(sub)


@_method(_S, "elems")
def str_elems(self, /):
    return StringElems(self)


@_method(_S, "codepoints")
def str_codepoints(self, /):
    return list(self)


@_method(_S, "codepoint_ords")
def str_codepoint_ords(self, /):
    return [ord(c) for c in self]


@_method(_S, "elem_ords")
def str_elem_ords(self, /):
    # Elements of our strings are code points, so these equal codepoint_ords.
    return [ord(c) for c in self]


def _affix_test(fname: str, self: str, affix, start, end, test) -> bool:
    s, _ = _sub(fname, self, start, end)
    if type(affix) is str:
        return test(s, affix)
    if type(affix) is tuple:
        for a in affix:
            if type(a) is not str:
                raise EvalError(f"{fname}: want string, got {type_name(a)} in tuple")
            if test(s, a):
                return True
        return False
    raise EvalError(f"{fname}: got {type_name(affix)}, want string or tuple of strings")


@_method(_S, "endswith")
def str_endswith(self, suffix, start=None, end=None, /):
    return _affix_test("endswith", self, suffix, start, end, str.endswith)


@_method(_S, "startswith")
def str_startswith(self, prefix, start=None, end=None, /):
    return _affix_test("startswith", self, prefix, start, end, str.startswith)


def _find(fname: str, self: str, sub, start, end, last: bool) -> int:
    _want_str(fname, "sub", sub)
    s, off = _sub(fname, self, start, end)
    i = s.rfind(sub) if last else s.find(sub)
    return i + off if i >= 0 else -1


@_method(_S, "find")
def str_find(self, sub, start=None, end=None, /):
    return _find("find", self, sub, start, end, False)


@_method(_S, "rfind")
def str_rfind(self, sub, start=None, end=None, /):
    return _find("rfind", self, sub, start, end, True)


@_method(_S, "index")
def str_index(self, sub, start=None, end=None, /):
    i = _find("index", self, sub, start, end, False)
    if i < 0:
        raise EvalError("index: substring not found")
    return i


@_method(_S, "rindex")
def str_rindex(self, sub, start=None, end=None, /):
    i = _find("rindex", self, sub, start, end, True)
    if i < 0:
        raise EvalError("rindex: substring not found")
    return i


_BRACE = re.compile(r"[{}]")


@_method(_S, "format")
def str_format(self, /, *args, **kwargs):
    out: list[str] = []
    size = 0
    auto: bool | None = None  # automatic ({}) or manual ({0}) numbering, once chosen
    next_arg = 0
    i = 0
    n = len(self)
    while i < n:
        m = _BRACE.search(self, i)
        if m is None:
            out.append(self[i:])
            break
        j = m.start()
        if j > i:
            out.append(self[i:j])
        if self[j] == "}":
            if j + 1 < n and self[j + 1] == "}":
                out.append("}")
                i = j + 2
                continue
            raise EvalError("format: single '}' in format")
        if j + 1 < n and self[j + 1] == "{":
            out.append("{")
            i = j + 2
            continue
        k = self.find("}", j + 1)
        if k < 0:
            raise EvalError("format: unmatched '{' in format")
        field = self[j + 1:k]
        i = k + 1
        if "{" in field:
            raise EvalError("format: unmatched '{' in format")
        name, bang, conv = field.partition("!")
        if ":" in field:
            raise EvalError("format: format spec features not supported in replacement fields")
        if bang and conv not in ("s", "r"):
            raise EvalError(f"format: unknown conversion {conv!r}" if conv else
                            "format: missing conversion after '!'")
        if name == "":
            if auto is False:
                raise EvalError("format: cannot switch from manual field specification "
                                "to automatic field numbering")
            auto = True
            if next_arg >= len(args):
                raise EvalError("format: tuple index out of range")
            v = args[next_arg]
            next_arg += 1
        elif name.isascii() and name.isdigit():
            if auto is True:
                raise EvalError("format: cannot switch from automatic field numbering "
                                "to manual field specification")
            auto = False
            idx = int(name) if len(name) < 20 else len(args)
            if idx >= len(args):
                raise EvalError("format: tuple index out of range")
            v = args[idx]
        else:
            if "." in name or "[" in name:
                raise EvalError(f"format: attribute and element syntax {name!r} "
                                "is not supported in replacement fields")
            if name not in kwargs:
                raise EvalError(f"format: keyword {name} not found")
            v = kwargs[name]
        s = to_repr(v) if conv == "r" else to_str(v)
        size += len(s)
        if size > MAX_ALLOC:
            raise EvalError("format: result too large")
        out.append(s)
    r = "".join(out)
    _check_len("format", len(r))
    return r


@_method(_S, "isalnum")
def str_isalnum(self, /):
    return self.isalnum()


@_method(_S, "isalpha")
def str_isalpha(self, /):
    return self.isalpha()


@_method(_S, "isdigit")
def str_isdigit(self, /):
    return self.isdigit()


@_method(_S, "islower")
def str_islower(self, /):
    return self.islower()


@_method(_S, "isspace")
def str_isspace(self, /):
    return self.isspace()


@_method(_S, "istitle")
def str_istitle(self, /):
    return self.istitle()


@_method(_S, "isupper")
def str_isupper(self, /):
    return self.isupper()


@_method(_S, "join")
def str_join(self, iterable, /):
    items = collect(iterable, "join: ")
    total = len(self) * max(0, len(items) - 1)
    for x in items:
        if type(x) is not str:
            raise EvalError(f"join: in list, want string, got {type_name(x)}")
        total += len(x)
    _check_len("join", total)
    return self.join(items)


@_method(_S, "lower")
def str_lower(self, /):
    return self.lower()


@_method(_S, "upper")
def str_upper(self, /):
    return self.upper()


@_method(_S, "title")
def str_title(self, /):
    return self.title()


def _cutset(fname: str, cutset) -> str | None:
    if cutset is None or type(cutset) is str:
        return cutset
    raise EvalError(f"{fname}: for parameter cutset: got {type_name(cutset)}, want string")


@_method(_S, "strip")
def str_strip(self, cutset=None, /):
    return self.strip(_cutset("strip", cutset))


@_method(_S, "lstrip")
def str_lstrip(self, cutset=None, /):
    return self.lstrip(_cutset("lstrip", cutset))


@_method(_S, "rstrip")
def str_rstrip(self, cutset=None, /):
    return self.rstrip(_cutset("rstrip", cutset))


@_method(_S, "partition")
def str_partition(self, sep, /):
    _want_str("partition", "sep", sep)
    if not sep:
        raise EvalError("partition: empty separator")
    return self.partition(sep)


@_method(_S, "rpartition")
def str_rpartition(self, sep, /):
    _want_str("rpartition", "sep", sep)
    if not sep:
        raise EvalError("rpartition: empty separator")
    return self.rpartition(sep)


@_method(_S, "removeprefix")
def str_removeprefix(self, prefix, /):
    return self.removeprefix(_want_str("removeprefix", "prefix", prefix))


@_method(_S, "removesuffix")
def str_removesuffix(self, suffix, /):
    return self.removesuffix(_want_str("removesuffix", "suffix", suffix))


@_method(_S, "replace")
def str_replace(self, old, new, count=-1, /):
    _want_str("replace", "old", old)
    _want_str("replace", "new", new)
    _want("replace", "count", count, int, "int")
    if len(new) > len(old):
        hits = self.count(old)
        if count >= 0:
            hits = min(hits, count)
        _check_len("replace", len(self) + hits * (len(new) - len(old)))
    return self.replace(old, new, min(count, len(self) + 1) if count >= 0 else -1)


def _split_args(fname: str, sep, maxsplit) -> tuple[str | None, int]:
    if sep is not None:
        _want_str(fname, "sep", sep)
        if not sep:
            raise EvalError(f"{fname}: empty separator")
    if maxsplit is None:
        maxsplit = -1
    _want(fname, "maxsplit", maxsplit, int, "int")
    return sep, (min(maxsplit, 1 << 62) if maxsplit >= 0 else -1)


@_method(_S, "split")
def str_split(self, sep=None, maxsplit=-1, /):
    sep, maxsplit = _split_args("split", sep, maxsplit)
    return self.split(sep, maxsplit)


@_method(_S, "rsplit")
def str_rsplit(self, sep=None, maxsplit=-1, /):
    sep, maxsplit = _split_args("rsplit", sep, maxsplit)
    return self.rsplit(sep, maxsplit)


_LINE_END = re.compile(r"\r\n|\r|\n")


@_method(_S, "splitlines")
def str_splitlines(self, keepends=False, /):
    # Only \n, \r and \r\n end lines (Python's splitlines knows many more).
    lines = []
    i = 0
    for m in _LINE_END.finditer(self):
        lines.append(self[i:m.end()] if keepends else self[i:m.start()])
        i = m.end()
    if i < len(self):
        lines.append(self[i:])
    return lines


# ---------------------------------------------------------------------------
# bytes


@_method(BYTES_METHODS, "elems")
def bytes_elems(self, /):
    return BytesElems(self)


# ---------------------------------------------------------------------------
# list

_L = LIST_METHODS


def _list_mutable(self, op: str) -> None:
    if type(self) is not list or (ITERATING and id(self) in ITERATING):
        check_mutable(self, op)


@_method(_L, "append")
def list_append(self, x, /):
    _list_mutable(self, "append to")
    if len(self) >= MAX_ALLOC:
        raise EvalError(f"append: list too large (limit {MAX_ALLOC} elements)")
    list.append(self, x)


@_method(_L, "clear")
def list_clear(self, /):
    _list_mutable(self, "clear")
    list.clear(self)


@_method(_L, "extend")
def list_extend(self, iterable, /):
    _list_mutable(self, "extend")
    if type(iterable) is str or type(iterable) is bytes:
        raise EvalError(f"extend: got {type_name(iterable)}, want iterable")
    items = collect(iterable, "extend: ")
    _check_len("extend", len(self) + len(items))
    list.extend(self, items)


@_method(_L, "index")
def list_index(self, x, start=None, end=None, /):
    start = _opt_int("index", "start", start)
    end = _opt_int("index", "end", end)
    n = len(self)
    i = _clamp(start, n, 0)
    j = _clamp(end, n, n)
    if type(x) is str:  # native search is exact for strings
        try:
            return list.index(self, x, i, max(i, j))
        except ValueError:
            pass
    else:
        for k in range(i, j):
            if equal(self[k], x):
                return k
    raise EvalError(f"index: value not in list: {to_repr(x)}" if len(to_repr(x)) < 100
                    else "index: value not in list")


@_method(_L, "insert")
def list_insert(self, index, x, /):
    _list_mutable(self, "insert into")
    _want("insert", "index", index, int, "int")
    if len(self) >= MAX_ALLOC:
        raise EvalError(f"insert: list too large (limit {MAX_ALLOC} elements)")
    list.insert(self, _clamp(index, len(self), 0), x)


@_method(_L, "pop")
def list_pop(self, index=-1, /):
    _list_mutable(self, "pop from")
    _want("pop", "index", index, int, "int")
    n = len(self)
    i = index + n if index < 0 else index
    if not 0 <= i < n:
        if n == 0:
            raise EvalError("pop: empty list")
        raise EvalError(f"pop: index {int_text(index)} out of range [{-n}:{n}]")
    return list.pop(self, i)


@_method(_L, "remove")
def list_remove(self, x, /):
    _list_mutable(self, "remove from")
    for k in range(len(self)):
        if equal(self[k], x):
            del self[k]
            return None
    raise EvalError("remove: element not found")


# ---------------------------------------------------------------------------
# dict

_D = DICT_METHODS


def _dict_mutable(self, op: str) -> None:
    if type(self) is not dict or (ITERATING and id(self) in ITERATING):
        check_mutable(self, op)


def _unhashable(fname: str, k) -> EvalError:
    return EvalError(f"{fname}: unhashable type: {_unhashable_part(k)}")


@_method(_D, "clear")
def dict_clear(self, /):
    _dict_mutable(self, "clear")
    dict.clear(self)


@_method(_D, "get")
def dict_get(self, key, default=None, /):
    if type(key) is range:
        raise _unhashable("get", key)
    try:
        return dict.get(self, key, default)
    except TypeError:
        raise _unhashable("get", key) from None


@_method(_D, "items")
def dict_items(self, /):
    return list(dict.items(self))


@_method(_D, "keys")
def dict_keys(self, /):
    return list(dict.keys(self))


@_method(_D, "values")
def dict_values(self, /):
    return list(dict.values(self))


@_method(_D, "pop")
def dict_pop(self, key, default=_MISSING, /):
    _dict_mutable(self, "pop from")
    _check_key("pop", key)
    try:
        if default is _MISSING:
            return dict.pop(self, key)
        return dict.pop(self, key, default)
    except KeyError:
        raise EvalError(f"pop: missing key {to_repr(key)}" if len(to_repr(key)) < 100
                        else "pop: missing key") from None
    except TypeError:
        raise _unhashable("pop", key) from None


@_method(_D, "popitem")
def dict_popitem(self, /):
    _dict_mutable(self, "pop from")
    if not self:
        raise EvalError("popitem: empty dict")
    k = next(iter(self))
    return (k, dict.pop(self, k))


@_method(_D, "setdefault")
def dict_setdefault(self, key, default=None, /):
    _dict_mutable(self, "insert into")
    _check_key("setdefault", key)
    try:
        return dict.setdefault(self, key, default)
    except TypeError:
        raise _unhashable("setdefault", key) from None


def update_dict(fname: str, d: dict, args: tuple, kwargs: dict) -> None:
    """Insert the pairs of `dict(...)`/`D.update(...)` arguments into `d`."""
    if len(args) > 1:
        raise EvalError(f"{fname}: got {len(args)} positional arguments, want at most 1")
    if args and args[0] is not None:
        pairs = args[0]
        tp = type(pairs)
        if tp is dict or tp is FrozenDict:
            try:
                dict.update(d, pairs)
            except TypeError:  # pragma: no cover - keys of a dict are hashable
                raise EvalError(f"{fname}: unhashable key") from None
        else:
            if tp is str or tp is bytes:
                raise EvalError(f"{fname}: got {type_name(pairs)}, want iterable")
            items = collect(pairs, f"{fname}: ")
            for i, pair in enumerate(items):
                t = type(pair)
                if t is tuple or t is list or t is FrozenList:
                    kv = pair
                else:
                    if t is str or t is bytes:
                        raise EvalError(f"{fname}: element #{i} is not iterable ({type_name(pair)})")
                    try:
                        kv = collect(pair)
                    except EvalError:
                        raise EvalError(f"{fname}: element #{i} is not iterable "
                                        f"({type_name(pair)})") from None
                if len(kv) != 2:
                    raise EvalError(f"{fname}: element #{i} has length {len(kv)}, want 2")
                if type(kv[0]) is range:
                    raise _unhashable(fname, kv[0])
                try:
                    dict.__setitem__(d, kv[0], kv[1])
                except TypeError:
                    raise _unhashable(fname, kv[0]) from None
    if kwargs:
        dict.update(d, kwargs)
    if len(d) > MAX_ALLOC:
        raise EvalError(f"{fname}: dict too large (limit {MAX_ALLOC} entries)")


@_method(_D, "update")
def dict_update(self, /, *args, **kwargs):
    _dict_mutable(self, "update")
    update_dict("update", self, args, kwargs)


# ---------------------------------------------------------------------------
# set

_T = SET_METHODS


def _keys(fname: str, x) -> dict:
    """The elements of the iterable `x` as dict keys (all must be hashable)."""
    if type(x) is Set:
        return x._items
    if type(x) is str or type(x) is bytes:
        raise EvalError(f"{fname}: got {type_name(x)}, want iterable")
    items = collect(x, f"{fname}: ")
    try:
        keys = dict.fromkeys(items)
        if any(type(k) is range for k in keys):
            raise TypeError
        return keys
    except TypeError:
        bad = next((e for e in items if not _hashable_quick(e)), None)
        raise _unhashable(fname, bad) from None


def _hashable_quick(v) -> bool:
    if type(v) is range:
        return False
    try:
        hash(v)
    except TypeError:
        return False
    return True


def _check_key(fname: str, k) -> None:
    """Refuse an unhashable key even where Python would not look (empty dicts)."""
    if not _hashable_quick(k):
        raise _unhashable(fname, k)


def _set_mutable(self: Set, op: str) -> None:
    if self.frozen or (ITERATING and id(self) in ITERATING):
        check_mutable(self, op)


@_method(_T, "add")
def set_add(self, x, /):
    _set_mutable(self, "insert into")
    if type(x) is range:
        raise _unhashable("add", x)
    try:
        self._items[x] = None
    except TypeError:
        raise _unhashable("add", x) from None
    if len(self._items) > MAX_ALLOC:
        del self._items[x]
        raise EvalError(f"add: set too large (limit {MAX_ALLOC} elements)")


@_method(_T, "clear")
def set_clear(self, /):
    _set_mutable(self, "clear")
    self._items.clear()


@_method(_T, "difference")
def set_difference(self, /, *others):
    items = dict(self._items)
    for o in others:
        for k in _keys("difference", o):
            items.pop(k, None)
    return Set._of(items)


@_method(_T, "difference_update")
def set_difference_update(self, /, *others):
    _set_mutable(self, "remove from")
    keys = [_keys("difference_update", o) for o in others]
    for ks in keys:
        for k in list(ks):
            self._items.pop(k, None)


@_method(_T, "discard")
def set_discard(self, x, /):
    _set_mutable(self, "remove from")
    _check_key("discard", x)
    self._items.pop(x, None)


@_method(_T, "intersection")
def set_intersection(self, /, *others):
    keys = [_keys("intersection", o) for o in others]
    return Set._of({k: None for k in self._items if all(k in ks for ks in keys)})


@_method(_T, "intersection_update")
def set_intersection_update(self, /, *others):
    _set_mutable(self, "remove from")
    keys = [_keys("intersection_update", o) for o in others]
    for k in [k for k in self._items if not all(k in ks for ks in keys)]:
        del self._items[k]


@_method(_T, "isdisjoint")
def set_isdisjoint(self, x, /):
    ks = _keys("isdisjoint", x)
    small, big = (self._items, ks) if len(self._items) <= len(ks) else (ks, self._items)
    return not any(k in big for k in small)


@_method(_T, "issubset")
def set_issubset(self, x, /):
    ks = _keys("issubset", x)
    return all(k in ks for k in self._items)


@_method(_T, "issuperset")
def set_issuperset(self, x, /):
    ks = _keys("issuperset", x)
    return all(k in self._items for k in ks)


@_method(_T, "pop")
def set_pop(self, /):
    _set_mutable(self, "pop from")
    if not self._items:
        raise EvalError("pop: empty set")
    k = next(iter(self._items))
    del self._items[k]
    return k


@_method(_T, "remove")
def set_remove(self, x, /):
    _set_mutable(self, "remove from")
    _check_key("remove", x)
    try:
        del self._items[x]
    except KeyError:
        raise EvalError(f"remove: element not found: {to_repr(x)}" if len(to_repr(x)) < 100
                        else "remove: element not found") from None
    except TypeError:
        raise _unhashable("remove", x) from None


@_method(_T, "symmetric_difference")
def set_symmetric_difference(self, x, /):
    ks = _keys("symmetric_difference", x)
    items = {k: None for k in self._items if k not in ks}
    for k in ks:
        if k not in self._items:
            items[k] = None
    return Set._of(items)


@_method(_T, "symmetric_difference_update")
def set_symmetric_difference_update(self, x, /):
    _set_mutable(self, "insert into")
    ks = _keys("symmetric_difference_update", x)
    if ks is self._items:
        self._items.clear()
        return
    for k in list(ks):
        if k in self._items:
            del self._items[k]
        else:
            self._items[k] = None
    if len(self._items) > MAX_ALLOC:
        raise EvalError(f"symmetric_difference_update: set too large (limit {MAX_ALLOC} elements)")


@_method(_T, "union")
def set_union(self, /, *others):
    items = dict(self._items)
    for o in others:
        items.update(_keys("union", o))
        if len(items) > MAX_ALLOC:
            raise EvalError(f"union: set too large (limit {MAX_ALLOC} elements)")
    return Set._of(items)


@_method(_T, "update")
def set_update(self, /, *others):
    _set_mutable(self, "insert into")
    keys = [_keys("update", o) for o in others]
    for ks in keys:
        if len(self._items) + len(ks) > MAX_ALLOC:
            raise EvalError(f"update: set too large (limit {MAX_ALLOC} elements)")
        self._items.update(ks)


# ---------------------------------------------------------------------------

METHODS[str] = STRING_METHODS
METHODS[bytes] = BYTES_METHODS
METHODS[list] = LIST_METHODS
METHODS[FrozenList] = LIST_METHODS
METHODS[dict] = DICT_METHODS
METHODS[FrozenDict] = DICT_METHODS
METHODS[Set] = SET_METHODS

__all__ = [
    "STRING_METHODS", "BYTES_METHODS", "LIST_METHODS", "DICT_METHODS", "SET_METHODS",
    "update_dict",
]
