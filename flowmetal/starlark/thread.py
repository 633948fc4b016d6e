"""Running compiled modules: module instances, suspendable threads, checkpoints.

A `Thread` runs a module (or one call of a Starlark function) until it ends
or a host builtin raises `Suspend`. On suspension the Python traceback is read
once: every compiled frame on it gives (module, function index, call site,
locals), a list of plain records that, with the heap they reference, is the
checkpoint. Pickling a Thread pickles those records; Starlark functions pickle
as (module, function index, defaults, closure) and modules as their source and
globals, so no Python code object is ever stored. Resuming rebuilds each
frame's resume-form function and re-enters the stack outermost first, so a new
suspension deeper down captures the whole stack again.

A host that resumes a suspension at once (a child flow that ends without acting
on the world) needs no checkpoint of it: a `parkable` Thread runs in a greenlet,
and `park(request)` switches out of it with the stack left alive; `resume`
switches back in. Only when the host does want the checkpoint is the stack
unwound and captured (`Thread.capture`), exactly as `Suspend` would have done.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import re
import sys
import threading
import types
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import cloudpickle
from greenlet import getcurrent, greenlet

from . import context, fastpath, values
from .compile import P, Compiled, compile_module, module_key, pyname, starname
from .errors import EvalError, Frame, StarlarkError, StarlarkSyntaxError, Suspend
from .syntax import parse

CHECKPOINT_FORMAT = 1

# Deep Starlark recursion runs as deep Python recursion; leave room for it.
if sys.getrecursionlimit() < 8000:
    sys.setrecursionlimit(8000)

# A resumed stack is re-entered through three Python frames per Starlark frame (the
# resume function, `_resume`, `_Chain.enter`): a suspension deeper than this could
# be checkpointed but never resumed, so it is refused before its action happens.
# (8000 / 3, less room for the host's own frames: runtime, actors, greenlets.)
MAX_SUSPENDED_DEPTH = 2400

# ---------------------------------------------------------------- compile cache

_CACHE: dict[str, Compiled] = {}
_BY_CODENAME: dict[str, Compiled] = {}
_CACHE_LOCK = threading.Lock()


class FunctionInfo:
    """What the value library knows of a compiled Starlark function."""

    __slots__ = ("name", "index", "compiled")

    def __init__(self, name: str, index: int, compiled: Compiled):
        self.name = name
        self.index = index
        self.compiled = compiled


def get_compiled(source: str, filename: str, predeclared_names, eval_mode: bool = False) -> Compiled:
    """Compile (once per process, cached by content hash) a module's source."""
    names = frozenset(predeclared_names)
    key = module_key(source, filename, names, eval_mode)
    hit = _CACHE.get(key)
    if hit is not None:
        return hit
    codename = f"<starlark:{key[:24]}>"
    try:
        parsed = parse(source, filename, mode="eval" if eval_mode else "exec")
        compiled = compile_module(parsed, source, names, eval_mode=eval_mode)
        with warnings.catch_warnings():
            # CPython warns about code it can see will fail (`[1]["a"]`); in
            # Starlark that is a run-time error, reported when it runs.
            warnings.simplefilter("ignore")
            compiled.code = compile(compiled.pysource, codename, "exec")
    except (RecursionError, MemoryError):
        raise StarlarkSyntaxError("program is nested too deeply", filename, 1, 1) from None
    except SyntaxError as e:
        # CPython's own limits on the generated code (20 nested loops).
        info = compiled.lines[e.lineno - 1] if e.lineno and e.lineno <= len(compiled.lines) else None
        line = info.line if info else 1
        text = source.splitlines()[line - 1] if 0 < line <= len(source.splitlines()) else ""
        msg = e.msg
        if "parenthes" in msg:
            # The generated code nests a call per operator: the user wrote no brackets.
            msg = "an expression nests about 200 operations or more in one another; split it up"
        elif "indentation" in msg:
            msg = "blocks nested too deeply"
        raise StarlarkSyntaxError(f"program too complex: {msg}", filename, line, 1, text) from None
    compiled.key = key
    compiled.canonical = {}
    compiled.resume_codes = {}
    _register_codes(compiled, compiled.code)
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
        _CACHE[key] = compiled
        _BY_CODENAME[codename] = compiled
    return compiled


def _register_codes(compiled: Compiled, code: types.CodeType) -> None:
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            info = compiled.lines[const.co_firstlineno - 1]
            if info.defines >= 0:
                scope = compiled.scopes[info.defines]
                if info.form == "normal":
                    values.STARLARK_FUNCTIONS[const] = FunctionInfo(scope.name, info.defines, compiled)
                    compiled.canonical.setdefault(info.defines, const)
                elif info.form == "resume":
                    compiled.resume_codes[info.defines] = const
            _register_codes(compiled, const)


def compiled_for_code(code: types.CodeType) -> Compiled | None:
    return _BY_CODENAME.get(code.co_filename)


# ---------------------------------------------------------------- runtime helpers

class _Stop:
    __slots__ = ()

    def __reduce__(self):
        return "_STOP"


_STOP = _Stop()


def _cellof(value):
    c = values.Cell()
    c.v = value
    return c


def _load(module: "Module", name: str):
    if module.loader is None:
        raise EvalError(f"cannot load {name}: no loader")
    try:
        result = module.loader(name)
    except StarlarkError as e:
        # The traceback goes on into the loaded module, down to where it failed (a
        # syntax error: its position), so that the error names that file:line:col.
        err = EvalError(f"cannot load {name}: {e.msg}")
        inner = list(e.stack)
        if not inner and e.filename:
            inner = [Frame(e.filename, e.line, e.col, "<toplevel>")]
        err.loaded = tuple(inner)
        raise err from None
    except Exception as e:  # a host loader's failure is the program's error
        raise EvalError(f"cannot load {name}: {e}") from None
    if not isinstance(result, dict):
        raise EvalError(f"cannot load {name}: loader returned {values.type_name(result)}, want dict")
    return result


def _loaded(mod: dict, modname: str, sym: str):
    if sym.startswith("_"):
        raise EvalError(f"load: cannot load private name {sym} from {modname}")
    try:
        return mod[sym]
    except KeyError:
        raise EvalError(f"load: name {sym} not found in module {modname}") from None


def _compiter(seq):
    """A comprehension's iterable; its length is charged to the step budget up
    front, since a native comprehension runs without per-iteration ticks."""
    it = values.iterable(seq)
    try:
        n = len(it)
    except TypeError:
        n = 0
    context.charge_steps(n + 1)
    return it


_LINES: dict[tuple, int] = {}   # (code, instruction offset) -> line


def _line(tb) -> int:
    """`tb.tb_lineno`, cached: CPython finds it by scanning the code's line table,
    and compiled Starlark functions are long — it was 7% of a suspension's cost."""
    key = (tb.tb_frame.f_code, tb.tb_lasti)
    line = _LINES.get(key)
    if line is None:
        if len(_LINES) > 100_000:   # a long-lived host compiling ever new modules
            _LINES.clear()
        line = _LINES[key] = tb.tb_lineno
    return line


def release_locks(tb) -> None:
    """Unlock what the for loops of the frames on `tb` held when an error or a
    suspension unwound them (each line knows the loops open on it)."""
    while tb is not None:
        compiled = _BY_CODENAME.get(tb.tb_frame.f_code.co_filename)
        if compiled is not None:
            locks = compiled.lines[_line(tb) - 1].locks
            if locks:
                f_locals = tb.tb_frame.f_locals
                for seq in locks:
                    if seq in f_locals:
                        values.unlock(f_locals[seq])
        tb = tb.tb_next


def _resume(chain: "_Chain"):
    return chain.enter()


_TYPE_NAMES = {"str": "string", "NoneType": "NoneType", "builtin_function_or_method":
               "builtin_function_or_method", "FrozenList": "list", "FrozenDict": "dict",
               "function": "function", "Struct": "struct", "Set": "set"}
_QUOTED = re.compile(r"'([A-Za-z_][A-Za-z_0-9]*)'")
_CMP = re.compile(r"'(.+?)' not supported between instances of '(\w+)' and '(\w+)'")


_ARITY = re.compile(r"([\w.<>]+)\(\) takes (?:from (\d+) to )?(\d+) positional arguments? "
                    r"but (\d+) (?:was|were) given")


def _arity_message(m: "re.Match[str]", e: BaseException) -> str:
    # Python counts a method's receiver among its arguments; the user wrote it before
    # the dot. A method call's arguments are bound in a dispatcher frame, which is
    # then the innermost one (the method's own body never started).
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code if tb is not None else None
    less = 1 if code in values.DISPATCHER_CODES or code in fastpath.FAST_CODES else 0
    name, low, high, given = m.group(1), m.group(2), int(m.group(3)), int(m.group(4))
    if low is None:
        want = f"{high - less}"
    elif int(low) - less == 0:
        want = f"at most {high - less}"
    else:
        want = f"from {int(low) - less} to {high - less}"
    given -= less
    name = name.rsplit(".", 1)[-1].replace(P + "d", "").replace(P, "")   # not main.<locals>.
    return f"{name}: got {given} positional argument{'' if given == 1 else 's'}, want {want}"


def _tname(py: str) -> str:
    return _TYPE_NAMES.get(py, py)


def convert_message(e: BaseException) -> str:
    """A Starlark message for a Python exception raised inside compiled code."""
    t = type(e)
    if isinstance(e, StarlarkError):
        return e.msg
    if t is KeyError:
        key = e.args[0] if e.args else None
        try:
            return f"key {values.to_repr(key)} not in dict"
        except Exception:
            return "key not in dict"
    if t is IndexError:
        return "index out of range"
    if t is ZeroDivisionError:
        return "division by zero"
    if t is UnboundLocalError:
        m = re.search(r"'([^']+)'", str(e))
        return f"local variable {starname(m.group(1)) if m else ''} referenced before assignment"
    if t is NameError:
        m = re.search(r"'([^']+)'", str(e))
        return f"global variable {starname(m.group(1)) if m else ''} referenced before assignment"
    if t is AttributeError and isinstance(getattr(e, "obj", None), values.Cell):
        return "local variable referenced before assignment (captured by a nested function)"
    if t is RecursionError:
        return "maximum call depth exceeded"
    if t is MemoryError:
        return "out of memory"
    msg = str(e)
    if t is TypeError:
        m = _ARITY.match(msg)
        if m:
            return _arity_message(m, e)
        m = _CMP.search(msg)
        if m:
            return f"unsupported comparison: {_tname(m.group(2))} {m.group(1)} {_tname(m.group(3))}"
        msg = msg.replace(f"{P}lambda", "lambda")
        msg = re.sub(r"'(\w+)' object is not callable", lambda m: f"invalid call of non-function ({_tname(m.group(1))})", msg)
        msg = re.sub(r"'(\w+)' object is not subscriptable", lambda m: f"unhandled index operation on {_tname(m.group(1))}", msg)
        msg = _QUOTED.sub(lambda m: _tname(m.group(1)) if m.group(1) in _TYPE_NAMES or m.group(1) in
                          ("int", "float", "list", "dict", "tuple", "bool", "bytes", "range") else m.group(0), msg)
        return msg.replace(P + "d", "").replace(P, "")
    if t in (ValueError, OverflowError, ArithmeticError):
        if "too large to convert to C" in msg:   # a length or index past the host's
            return "int too large for a length or an index (at most 2^63 - 1)"
        return msg
    return msg or t.__name__


def _conv(e: Exception) -> StarlarkError:
    if isinstance(e, StarlarkError):
        return e
    err = EvalError(convert_message(e))
    return err.with_traceback(e.__traceback__)


HELPERS: dict[str, Any] = {
    P + "add": values.add, P + "sub": values.sub, P + "mul": values.mul,
    P + "truediv": values.truediv, P + "floordiv": values.floordiv, P + "mod": values.mod,
    P + "bit_and": values.bit_and, P + "bit_or": values.bit_or, P + "bit_xor": values.bit_xor,
    P + "lshift": values.lshift, P + "rshift": values.rshift, P + "iadd": values.iadd,
    P + "ior": values.ior, P + "iand": values.iand, P + "isub": values.isub, P + "ixor": values.ixor,
    P + "neg": values.neg, P + "pos": values.pos, P + "invert": values.invert,
    P + "getattr": values.getattr_, P + "setattr": values.setattr_,
    P + "setindex": values.setindex, P + "unpack": values.unpack,
    P + "iterate": values.iterate, P + "iterable": values.iterable, P + "compiter": _compiter,
    P + "lock": values.lock, P + "unlock": values.unlock,
    P + "next": next, P + "STOP": _STOP, P + "Exc": Exception, P + "draw": context.draw_steps, P + "refund": context.refund_steps,
    P + "drawc": context.draw_calls,
    P + "conv": _conv, P + "resume": _resume, P + "Cell": values.Cell, P + "cellof": _cellof,
    P + "load": _load, P + "loaded": _loaded, P + "starargs": values.starargs,
    P + "kwargs": values.kwargs, P + "dict_literal": values.dict_literal,
    P + "type": type, P + "int": int, P + "BIG": 1 << 62, P + "fmod": fastpath.mod, P + "fsetindex": fastpath.setindex,
}


def _universe() -> dict:
    from . import builtins as _b
    return _b.UNIVERSE


# ---------------------------------------------------------------- modules

class Module:
    """One execution of a compiled module: its globals and its host."""

    def __init__(self, compiled: Compiled, predeclared: dict | None, loader: Callable | None):
        self.compiled = compiled
        self.predeclared = dict(predeclared or {})
        self.loader = loader
        self.done = False
        g: dict[str, Any] = dict(HELPERS)
        for key in compiled.method_names:
            name, _, nargs = key.partition("/")
            if nargs:
                g[f"{P}m_{name}_{nargs}"] = fastpath.method_caller(name, int(nargs))
            else:
                g[f"{P}m_{name}"] = values.method_dispatcher(name)
        g[P + "module"] = self
        g[P + "c"] = [0]   # calls drawn from the budget, not yet made (compile.emit_function)
        b = dict(_universe())
        for k, v in self.predeclared.items():
            b[pyname(k)] = v
        g["__builtins__"] = b
        exec(compiled.code, g)
        self.globals = g

    def global_names(self) -> dict[str, str]:
        return self.compiled.scopes[0].bound

    def exports(self) -> dict[str, Any]:
        g = self.globals
        out = {}
        for name in self.compiled.exported:
            py = pyname(name)
            if py in g:
                out[name] = g[py]
        return out

    def freeze(self) -> None:
        g = self.globals
        names = [py for py in self.global_names().values() if py in g]
        # One freeze call over all globals keeps aliasing between them.
        frozen = values.freeze(tuple(g[py] for py in names))
        for py, v in zip(names, frozen):
            g[py] = v
        self.done = True

    def __reduce__(self):
        c = self.compiled
        g = self.globals
        state = ({py: g[py] for py in self.global_names().values() if py in g},
                 self.predeclared, self.done)
        names = tuple(sorted(self.predeclared))
        sink = getattr(_SOURCES, "sink", None)
        if sink is not None:
            ref = source_ref(c)
            if ref is not None:
                sink[ref[0]] = ref[1]
                key = (ref[0], c.filename, names, c.eval_mode)
                if key not in _BY_REF and len(_BY_REF) < _BY_REF_MAX:
                    _BY_REF[key] = c   # this process loads its own checkpoints unaided
                return (_module_by_ref, key, state)
        return (_rebuild_module, (c.source, c.filename, names, c.eval_mode), state)

    def __setstate__(self, state):
        globals_, predeclared, done = state
        self.globals.update(globals_)
        self.predeclared = predeclared
        b = self.globals["__builtins__"]
        for k, v in predeclared.items():
            b[pyname(k)] = v
        self.done = done


def _rebuild_module(source, filename, predeclared_names, eval_mode):
    compiled = get_compiled(source, filename, predeclared_names, eval_mode)
    return Module(compiled, {}, None)


# ---------------------------------------------------------------- module sources by reference
#
# A pickled module carries its source, and a checkpoint pickles every module its
# stack and values reach: the prelude's (~2 KB) always, the flow file's (tens of KB
# for a real one) almost always. A host that keeps sources by content (the store's
# `code` table) pickles inside `module_sources(sink=...)` instead: each module is
# then its source's hash, and the sink collects {hash: UTF-8 source} for the host to
# store alongside. Loading inside `module_sources(resolve=...)` finds a source by its
# hash in this process's compiled modules first and asks `resolve` only for others.

_SOURCES = threading.local()
_BY_REF: dict[tuple, Compiled] = {}   # (hash, filename, names, eval_mode) -> compiled
_BY_REF_MAX = 4096


def source_ref(compiled: Compiled) -> tuple[str, bytes] | None:
    """(sha256 hex, bytes) of a module's UTF-8 source, worked out once per module;
    None for a source that is not valid UTF-8 (it pickles inline)."""
    ref = compiled.source_ref
    if ref is False:
        try:
            data = compiled.source.encode("utf-8")
        except UnicodeEncodeError:
            ref = None
        else:
            ref = (hashlib.sha256(data).hexdigest(), data)
        compiled.source_ref = ref
    return ref


class module_sources:
    """Within this block, on this OS thread: modules pickle by their source's hash
    into `sink` (a dict that receives {hash: source bytes}), and modules so pickled
    load with sources from `resolve(hash) -> bytes | str | None` when this process
    has not compiled them. Blocks nest; the inner one's settings win."""

    def __init__(self, sink: dict | None = None,
                 resolve: Callable[[str], Any] | None = None):
        self.sink = sink
        self.resolve = resolve
        self._saved: tuple = ()

    def __enter__(self) -> "module_sources":
        self._saved = (getattr(_SOURCES, "sink", None), getattr(_SOURCES, "resolve", None))
        _SOURCES.sink, _SOURCES.resolve = self.sink, self.resolve
        return self

    def __exit__(self, *exc: Any) -> None:
        _SOURCES.sink, _SOURCES.resolve = self._saved


def source_sink() -> dict | None:
    """The sink of the innermost `module_sources` block on this thread, if any."""
    return getattr(_SOURCES, "sink", None)


def _module_by_ref(ref: str, filename, predeclared_names, eval_mode):
    key = (ref, filename, predeclared_names, eval_mode)
    compiled = _BY_REF.get(key)
    if compiled is None:
        resolve = getattr(_SOURCES, "resolve", None)
        data = resolve(ref) if resolve is not None else None
        if data is None:
            raise StarlarkError(f"the source of module {filename} ({ref[:12]}) is not stored: "
                                "the checkpoint cannot be loaded")
        source = data if isinstance(data, str) else bytes(data).decode("utf-8")
        compiled = get_compiled(source, filename, predeclared_names, eval_mode)
        found = source_ref(compiled)
        if found is None or found[0] != ref:
            raise StarlarkError(f"the stored source of module {filename} does not match "
                                f"its hash {ref[:12]}")
        if len(_BY_REF) < _BY_REF_MAX:
            _BY_REF[key] = compiled
    return Module(compiled, {}, None)


def _rebuild_function(module: Module, index: int, defaults, kwdefaults, freevars: dict):
    code = module.compiled.canonical[index]
    closure = tuple(types.CellType(freevars[n]) for n in code.co_freevars) or None
    fn = types.FunctionType(code, module.globals, code.co_name, defaults, closure)
    if kwdefaults:
        fn.__kwdefaults__ = kwdefaults
    return fn


# ---------------------------------------------------------------- results

@dataclass
class Done:
    """The program ended; `.value` is the module's globals or the call's result."""
    value: Any


@dataclass
class Failed:
    """The program failed with a Starlark error (`.error`)."""
    error: StarlarkError


@dataclass
class Suspended:
    """The program is suspended on `.request`, raised by a host builtin."""
    request: Any


@dataclass
class FrameRecord:
    """One suspended Starlark frame: where it stopped and its local variables."""
    module: Module
    func: int
    callsite: int
    locals: dict

    def function_name(self) -> str:
        return self.module.compiled.scopes[self.func].name

    def position(self) -> tuple[str, int, int]:
        """(filename, line, col) of the call this frame is suspended in."""
        c = self.module.compiled
        for info in c.lines:
            if info.func == self.func and info.callsite == self.callsite:
                return c.filename, info.line, info.col
        return c.filename, 0, 0

    def starlark_locals(self) -> dict:
        """The frame's Starlark variables (temporaries left out)."""
        out = {}
        scope = self.module.compiled.scopes[self.func]
        for name, py in scope.bound.items():
            if py in self.locals:
                out[name] = self.locals[py]
            elif f"{P}cell_{py}" in self.locals:
                cell = self.locals[f"{P}cell_{py}"]
                if hasattr(cell, "v"):
                    out[name] = cell.v
        return out


class _Chain:
    """The rest of a stack being resumed, innermost last; `enter` re-enters it."""

    __slots__ = ("frames", "i", "final")

    def __init__(self, frames, i, final):
        self.frames = frames
        self.i = i
        self.final = final

    def enter(self):
        if self.i < len(self.frames):
            fr = self.frames[self.i]
            fn = _resume_function(fr)
            return fn(fr.callsite, fr.locals, _Chain(self.frames, self.i + 1, self.final))
        ok, value = self.final
        if ok:
            return value
        raise EvalError(value)


def _resume_function(fr: FrameRecord):
    compiled = fr.module.compiled
    code = compiled.resume_codes[fr.func]
    closure = tuple(types.CellType(fr.locals[n]) for n in code.co_freevars) or None
    return types.FunctionType(code, fr.module.globals, code.co_name, None, closure)


_TRANSPARENT = {_resume.__code__, _Chain.enter.__code__}


def _is_transparent(code: types.CodeType) -> bool:
    """A host frame a suspension may pass through (the resume chain, method
    dispatchers, the fast paths), unlike a host function calling back into Starlark.
    (Method dispatchers are made on demand, so the sets are read each time.)"""
    return code in _TRANSPARENT or code in values.DISPATCHER_CODES or code in fastpath.FAST_CODES
_SCRATCH = P + "w"  # operands named inside one expression; dead between statements
_EXCLUDE = {P + "k", P + "R", P + "L", P + "V", P + "e", P + "v", P + "lambda"}


_KEEP: dict[types.CodeType, tuple[str, ...]] = {}   # code -> the locals a capture keeps


def _kept_names(code: types.CodeType) -> tuple[str, ...]:
    keep = _KEEP.get(code)
    if keep is None:
        if len(_KEEP) > 50_000:   # a long-lived host compiling ever new modules
            _KEEP.clear()
        names = code.co_varnames + code.co_cellvars + code.co_freevars
        keep = _KEEP[code] = tuple(k for k in names
                                   if k not in _EXCLUDE and not k.startswith(_SCRATCH))
    return keep


def _site_error(code: types.CodeType, info: Any) -> str | None:
    """Why a compiled frame stopped at `info` (its line's record) cannot suspend."""
    if code.co_name.startswith("<"):
        return "cannot suspend inside a comprehension evaluated by a builtin"
    if not info.callsite:
        return "cannot suspend here: not at a call of an action"
    return None


def _capture(tb) -> list[FrameRecord] | StarlarkError:
    frames: list[FrameRecord] = []
    host_between = None
    unused = 0   # steps the frames drew for their loops and did not take
    while tb is not None:
        frame = tb.tb_frame
        code = frame.f_code
        compiled = _BY_CODENAME.get(code.co_filename)
        if compiled is not None:
            info = compiled.lines[_line(tb) - 1]
            if host_between is not None and not code.co_name.startswith("<"):
                return EvalError(f"cannot suspend inside a Starlark function called by "
                                 f"the host function {host_between}")
            err = _site_error(code, info)
            if err is not None:
                return EvalError(err)
            f_locals = frame.f_locals
            locals_ = {k: f_locals[k] for k in _kept_names(code) if k in f_locals}
            frames.append(FrameRecord(frame.f_globals[P + "module"], info.func, info.callsite, locals_))
            k = f_locals.get(_STEPS_HELD)
            if type(k) is int and k > 0:
                unused += k
        elif _is_transparent(code):
            pass
        elif frames:
            host_between = code.co_name
        tb = tb.tb_next
    if not frames:
        return EvalError("suspension outside any Starlark frame")
    if len(frames) > MAX_SUSPENDED_DEPTH:
        return EvalError(f"cannot suspend {len(frames)} Starlark frames deep (at most "
                         f"{MAX_SUSPENDED_DEPTH}): its checkpoint could not be resumed")
    # The resumed frames start their count afresh: give back what they held, or a
    # flow that acts a million times would lose up to 255 steps of budget each time.
    context.refund_steps(unused)
    return frames


_STEPS_HELD = P + "k"   # a frame's loop-step countdown (see compile.tick)


_PARKABLE_AT: dict[tuple, bool] = {}   # (code, offset) -> may a suspension pass there


def _may_park(frame) -> bool:
    """Would a suspension raised at `frame` be captured (not an error)? The same
    rules as `_capture`, read from the live stack, innermost first."""
    seen = host = False
    depth = 0
    while frame is not None:
        code = frame.f_code
        compiled = _BY_CODENAME.get(code.co_filename)
        if compiled is not None:
            depth += 1
            if host or depth > MAX_SUSPENDED_DEPTH:
                return False
            key = (code, frame.f_lasti)
            ok = _PARKABLE_AT.get(key)
            if ok is None:
                if len(_PARKABLE_AT) > 100_000:
                    _PARKABLE_AT.clear()
                ok = _PARKABLE_AT[key] = _site_error(code, compiled.lines[frame.f_lineno - 1]) is None
            if not ok:
                return False
            seen = True
        elif seen and not _is_transparent(code):
            host = True
        frame = frame.f_back
    return seen


def _depth_error(e: RecursionError) -> EvalError:
    # Thousands of frames deep: the traceback keeps the way in and the way out.
    frames = starlark_stack(e.__traceback__)
    msg = "maximum call depth exceeded"
    if len(frames) > 2 * _DEPTH_SHOWN:
        msg += (f" ({len(frames)} Starlark frames deep; the outermost and innermost "
                f"{_DEPTH_SHOWN} are shown)")
        frames = frames[:_DEPTH_SHOWN] + frames[-_DEPTH_SHOWN:]
    err = EvalError(msg)
    err.stack = frames
    return err


_DEPTH_SHOWN = 5


def starlark_stack(tb) -> list[Frame]:
    """The Starlark traceback (outermost first) of a Python traceback."""
    out: list[Frame] = []
    last_frame = None
    while tb is not None:
        code = tb.tb_frame.f_code
        compiled = _BY_CODENAME.get(code.co_filename)
        if compiled is not None:
            info = compiled.lines[_line(tb) - 1]
            if info.line:
                name = compiled.scopes[info.func].name if info.func >= 0 else "<toplevel>"
                entry = Frame(compiled.filename, info.line, info.col, name)
                if code.co_name.startswith("<") and out:
                    out[-1] = entry  # a comprehension refines its function's position
                elif tb.tb_frame is last_frame and out:
                    out[-1] = entry
                else:
                    out.append(entry)
                last_frame = tb.tb_frame
        tb = tb.tb_next
    return out


# ---------------------------------------------------------------- threads

class _Parked:
    """What a parked program hands its driver: the request it waits on."""

    __slots__ = ("request",)

    def __init__(self, request: Any):
        self.request = request


# What a parked program is resumed with to unwind and be captured (`Thread.capture`).
_CAPTURE = object()


def park(request: Any) -> Any:
    """Suspend the running program on `request`, keeping its Python stack alive when
    it can, and return the value the host resumes it with.

    A parkable Thread (`Thread.parkable`) runs in a greenlet of its own: parking
    switches back to the host, which gets ``Suspended(request)`` as from any
    suspension, and `Thread.resume` switches back in: no unwinding, no capture, no
    re-entry through resume-form functions. That is the common path of a durable
    child call, which needs no checkpoint of the caller when the child ends at once.
    When the host does need the checkpoint, `Thread.capture` unwinds the stack as
    `Suspend` would have. Anywhere a suspension would fail (a comprehension, a
    Starlark function called by a host function) or off a parkable Thread, this is
    ``raise Suspend(request)``: the same outcome either way."""
    g = context.current().parker
    if g is None or g is not getcurrent() or not _may_park(sys._getframe(1)):
        raise Suspend(request)
    msg = g.parent.switch(_Parked(request))
    if msg is _CAPTURE:
        raise Suspend(request)
    ok, value = msg
    if ok:
        return value
    raise EvalError(value)


# Starting a greenlet costs ~15 µs (it gets a frame stack of its own), ten times a
# child call's own work: the greenlets that run parkable Threads are kept per OS
# thread and reused, each running one program after another (`_run_programs`).
_RUNNERS = threading.local()
_RUNNERS_KEPT = 64


def _runner() -> greenlet:
    free = getattr(_RUNNERS, "free", None)
    if free is None:
        free = _RUNNERS.free = []
    if free:
        g = free.pop()
    else:
        # Started at once with no job: greenlet keeps `run`'s arguments for the
        # greenlet's whole life, and a first job passed that way would pin its Thread.
        g = greenlet(_run_programs)
        g.switch()
    g.parent = getcurrent()
    return g


def _run_programs() -> None:
    # A runner greenlet's life: wait for a job, run (thread, fn) to its end or a
    # suspension (it parks in `park`), hand the outcome over, wait for the next.
    # The outcome goes in a box its driver empties: a local holding it would keep
    # the last program's result alive while the greenlet sits in the pool.
    box: list = []
    while True:
        job = getcurrent().parent.switch(box)
        thread, fn = job
        job = None
        box = [thread._outcome(fn)]
        thread = fn = None


class Thread:
    """A suspendable run of a module or of one Starlark function call.

    `run()`, `resume(value)` and `resume_error(message)` return `Done`,
    `Failed` or `Suspended`. A suspended Thread pickles (pickle or
    cloudpickle) and resumes in another process.

    A Thread whose `parkable` is set runs in a greenlet, so that `park` can keep
    its stack alive across a suspension: it is then *parked* (``status ==
    "parked"``), resumes only on the OS thread it parked on, and must be captured
    (`capture`) before it can be pickled.
    """

    def __init__(self, module: Module, call: tuple | None = None,
                 max_steps: int | None = None, print: Callable[[str], None] | None = None):
        self.module = module
        self._call = call
        self.kind = "eval" if module.compiled.eval_mode else ("call" if call else "module")
        self.frames: list[FrameRecord] | None = None
        self.status = "new"
        self.max_steps = max_steps or context.DEFAULT_MAX_STEPS
        self.steps_left = self.max_steps
        self.print = print
        self.parkable = False
        self._parked: tuple | None = None   # (greenlet, context, OS thread id) while parked

    # running

    def run(self) -> Done | Failed | Suspended:
        """Start the program; returns at its end or first suspension."""
        if self.status != "new":
            raise RuntimeError(f"Thread.run() on a {self.status} thread")
        if self._call is None:
            return self._drive(self.module.globals[P + "main"])
        fn, args, kwargs = self._call
        self._call = None
        return self._drive(lambda: fn(*args, **kwargs))

    def resume(self, value: Any = None) -> Done | Failed | Suspended:
        """Continue a suspended program; `value` is the suspended call's result."""
        return self._continue((True, value))

    def resume_error(self, message: str) -> Done | Failed | Suspended:
        """Continue a suspended program with its suspended call failing with `message`."""
        return self._continue((False, str(message)))

    def capture(self) -> None:
        """Turn a parked Thread into a suspended one, on the same request: its stack
        is unwound and captured, so that it can be pickled. (Nothing if not parked.)

        A host that abandons a parked Thread must capture it first: the garbage
        collector cannot see into a suspended greenlet, so the parked stack (and the
        Thread it refers to) would never be freed, nor its loops' locks released."""
        if self.status != "parked":
            return
        r = self._unpark(_CAPTURE)
        if not isinstance(r, Suspended):
            # `park` only parks where a suspension can be captured.
            raise RuntimeError(f"a parked Thread could not be captured: {r!r}")

    def _continue(self, final):
        if self.status == "parked":
            return self._unpark(final)
        if self.status != "suspended":
            raise RuntimeError(f"Thread.resume() on a {self.status} thread")
        frames, self.frames = self.frames, None
        return self._drive(lambda: _Chain(frames, 0, final).enter())

    def _drive(self, fn) -> Done | Failed | Suspended:
        ctx = context.Context(self.print, self.max_steps)
        ctx.steps_left = self.steps_left
        if self.parkable:
            g = ctx.parker = _runner()
            return self._switch(g, ctx, (self, fn))
        prev = context.install(ctx)
        try:
            return self._outcome(fn)
        finally:
            self.steps_left = ctx.steps_left
            context.install(prev)

    def _unpark(self, msg) -> Done | Failed | Suspended:
        g, ctx, owner = self._parked
        if owner != threading.get_ident():
            raise RuntimeError("a parked Thread resumes only on the OS thread it parked on")
        self._parked = None
        self.status = "running"
        if self.print is not None:
            ctx.print = self.print
        g.parent = getcurrent()   # the host that resumes it gets its next result
        return self._switch(g, ctx, msg)

    def _switch(self, g, ctx, msg) -> Done | Failed | Suspended:
        prev = context.install(ctx)
        try:
            r = g.switch(msg)
        finally:
            self.steps_left = ctx.steps_left
            context.install(prev)
        if type(r) is _Parked:
            self.status = "parked"
            self._parked = (g, ctx, threading.get_ident())
            return Suspended(r.request)
        r = r.pop()
        free = _RUNNERS.free
        if len(free) < _RUNNERS_KEPT:
            free.append(g)
        return r

    def _outcome(self, fn) -> Done | Failed | Suspended:
        # Run `fn` (the program, from its start or resumed) to its end or a suspension.
        try:
            result = fn()
        except Suspend as s:
            release_locks(s.__traceback__)
            captured = _capture(s.__traceback__)
            s.__traceback__ = None
            if isinstance(captured, StarlarkError):
                self.status = "failed"
                return Failed(captured)
            self.frames = captured
            self.status = "suspended"
            return Suspended(s.request)
        except StarlarkError as e:
            release_locks(e.__traceback__)
            e.stack  # resolve the Starlark traceback while the Python one is alive
            e.__traceback__ = None
            self.status = "failed"
            return Failed(e)
        except RecursionError as e:
            release_locks(e.__traceback__)
            self.status = "failed"
            return Failed(_depth_error(e))
        except Exception as e:  # any other Python exception: a Starlark error
            release_locks(e.__traceback__)
            err = _conv(e)
            err.stack
            err.__traceback__ = None
            self.status = "failed"
            return Failed(err)
        self.status = "done"
        if self.kind != "module":
            return Done(result)
        self.module.freeze()
        return Done(self.module.exports())

    # inspection

    def stack(self) -> list[FrameRecord]:
        """The suspended frames, outermost first (empty unless suspended)."""
        return list(self.frames or [])

    # pickling

    def __reduce__(self):
        if self.status == "parked":
            raise pickle.PicklingError("a parked Thread pickles once captured (Thread.capture)")
        if self.status == "new" and self._call is not None:
            raise pickle.PicklingError("a Thread of a call can be pickled once it has run")
        state = (CHECKPOINT_FORMAT, self.module, self.kind, self.frames, self.status,
                 self.steps_left, self.max_steps)
        buf = io.BytesIO()
        Pickler(buf, protocol=5).dump(state)
        return (_load_thread, (buf.getvalue(),))


# Functions and classes cloudpickle pickled by name (importable): deciding that takes
# it several look-ups per object, and a checkpoint names dozens of them (the prelude's
# builtins, our value classes) every time. A hit is checked to be still what its
# module holds under that name (a rebound or reloaded name is decided again).
_BY_NAME: set = set()
_NAMED_TYPES = (types.FunctionType, type)


def _still_named(obj: Any) -> bool:
    o = sys.modules.get(obj.__module__)
    for part in obj.__qualname__.split("."):
        o = getattr(o, part, None)
    return o is obj


class Pickler(cloudpickle.Pickler):
    """Pickles Starlark functions by (module, index, defaults, closure): use it
    (or `dumps`) for any value that may hold Starlark functions."""

    def reducer_override(self, obj):
        t = type(obj)
        if t is types.FunctionType:
            info = values.STARLARK_FUNCTIONS.get(obj.__code__)
            if info is not None:
                freevars = {}
                if obj.__closure__:
                    for name, cell in zip(obj.__code__.co_freevars, obj.__closure__):
                        freevars[name] = cell.cell_contents
                return (_rebuild_function, (obj.__globals__[P + "module"], info.index,
                                            obj.__defaults__, obj.__kwdefaults__, freevars))
        if t in _NAMED_TYPES:
            if obj in _BY_NAME:
                if _still_named(obj):
                    return NotImplemented   # pickle saves it by module and name
                _BY_NAME.discard(obj)
            r = super().reducer_override(obj)
            if r is NotImplemented:
                _BY_NAME.add(obj)
            return r
        return super().reducer_override(obj)


_Pickler = Pickler  # earlier name, kept for callers that imported it


def dumps(value: Any) -> bytes:
    """Pickle a value that may contain Starlark functions (no code objects stored)."""
    buf = io.BytesIO()
    Pickler(buf, protocol=5).dump(value)
    return buf.getvalue()


def _load_thread(data: bytes) -> Thread:
    state = pickle.loads(data)
    fmt = state[0]
    if fmt != CHECKPOINT_FORMAT:
        raise StarlarkError(f"checkpoint format {fmt} is not supported (this version reads {CHECKPOINT_FORMAT})")
    _, module, kind, frames, status, steps_left, max_steps = state
    t = Thread.__new__(Thread)
    t.module = module
    t.kind = kind
    t._call = None
    t.frames = frames
    t.status = status
    t.max_steps = max_steps
    t.steps_left = steps_left
    t.print = None
    t.parkable = False
    t._parked = None
    return t


# ---------------------------------------------------------------- entry points

def new_module(source: str, filename: str, predeclared: dict | None, loader, eval_mode=False) -> Module:
    compiled = get_compiled(source, filename, (predeclared or {}).keys(), eval_mode)
    return Module(compiled, predeclared, loader)
