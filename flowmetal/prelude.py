"""The flow prelude: `pkg.flowmetal.io/v1/prelude`, predeclared in every flow file.

Host builtins (Python) plus a small Starlark source (`PRELUDE_SOURCE`) holding
`sleep` and `retry`, written in Starlark because, as the seed says, "there's no
magic": they are ordinary flow code built on the actions.

Every action a flow takes reaches the runtime the same way: a host builtin
raises `Suspend(request)` with one of the request classes below, the running
Thread stops, and the runtime (`actors/`) checkpoints it and performs the
request. The one exception is `fctx.actions.run`, which only *records* a child
to start (see `FlowHost.spawn`) and returns a handle at once: starting the child
is deferred to the caller's next commit, so it needs no suspension of its own.

Everything a flow can hold (flows, results, handles, contexts) is a picklable
module-level class, so suspended Threads checkpoint with plain pickle.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Protocol

from .starlark import (Done, EvalError, Struct, Suspend, freeze, is_function, park, start,
                       struct)
from .starlark.compile import P
from .starlark.values import to_repr, type_name

MODULE_KEY = P + "module"   # where a Starlark function's globals hold its Module
from .jsondepth import MAX_JSON_DEPTH, loads_strict, nesting_exceeds
from .secrets import Secret, to_plain

__all__ = [
    "PRELUDE_MODULES", "PRELUDE_SOURCE", "FlowFailed", "Result", "Ok", "Err", "ArgSpec",
    "FlowDef", "Handle", "FlowContext", "OutputStream", "CallRequest", "WaitRequest",
    "SleepRequest", "ExecRequest", "StartRequest", "FlowHost", "predeclared", "prelude_module",
    "packages", "flow_main", "as_result", "current_host", "push_host", "pop_host", "ACTIONS",
]

PRELUDE_MODULES = ("pkg.flowmetal.io/v1/prelude", "pkg.flowmetal.io/prelude/v1")


# ---------------------------------------------------------------- errors and results

class FlowFailed(EvalError):
    """`fail(x)` / `unwrap(Err(x))`: the flow ends with `Err(x)`; `.value` is x."""

    def __init__(self, value: Any):
        self.value = value
        super().__init__(value if isinstance(value, str) else to_repr(value))

    def __reduce__(self):
        return (FlowFailed, (self.value,))


class Result:
    """Base of `Ok` and `Err` (also the `Result` type name in annotations).

    Each holds one payload, exposed to Starlark under the name `_field`
    (`Ok(v).value`, `Err(e).error`)."""

    __slots__ = ()
    starlark_type = "Result"
    ok: bool = False
    _field = ""

    def _payload(self) -> Any:
        return getattr(self, self._field)

    def starlark_freeze(self) -> None:
        setattr(self, self._field, freeze(self._payload()))

    def starlark_getattr(self, name: str) -> Any:
        if name == self._field:
            return self._payload()
        raise AttributeError(name)

    def starlark_attrs(self) -> list[str]:
        return [self._field]

    def starlark_repr(self) -> str:
        return f"{type(self).__name__}({to_repr(self._payload())})"

    def __repr__(self) -> str:
        return self.starlark_repr()

    def __eq__(self, other: Any) -> bool:
        return type(other) is type(self) and other._payload() == self._payload()

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._payload()))

    def __reduce__(self):
        return (type(self), (self._payload(),))


class Ok(Result):
    """A successful flow result; `.value` from Starlark."""

    __slots__ = ("value",)
    ok = True
    _field = "value"

    def __init__(self, value: Any = None):
        self.value = value


class Err(Result):
    """A failed flow result; `.error` from Starlark."""

    __slots__ = ("error",)
    _field = "error"

    def __init__(self, error: Any = None):
        self.error = error


def as_result(value: Any) -> Result:
    """A flow implementation's return value as the flow's Result: a Result stays
    itself (so `return check_results` ends the flow with that Err), anything else
    is `Ok(value)`."""
    return value if isinstance(value, Result) else Ok(value)


def _want_result(fname: str, r: Any) -> Result:
    if not isinstance(r, Result):
        raise EvalError(f"{fname}: want a Result (Ok or Err), got {type_name(r)}")
    return r


def is_ok(r: Any, /) -> bool:
    """is_ok(r): whether r is Ok."""
    return _want_result("is_ok", r).ok


def is_err(r: Any, /) -> bool:
    """is_err(r): whether r is Err."""
    return not _want_result("is_err", r).ok


def unwrap(r: Any, /) -> Any:
    """unwrap(r): the value of an Ok; an Err fails the current flow with its error."""
    r = _want_result("unwrap", r)
    if r.ok:
        return r.value
    raise FlowFailed(r.error)


def fail(*args: Any, sep: str = " ") -> None:
    """fail(msg): end the current flow with Err(msg)."""
    if len(args) == 1:
        raise FlowFailed(args[0])
    from .starlark.values import to_str
    raise FlowFailed(sep.join(to_str(a) for a in args))


# ---------------------------------------------------------------- argument declarations

_KINDS = {
    "string": (str,), "int": (int,), "float": (float, int), "bool": (bool,),
    "list": (list, tuple), "dict": (dict,), "any": None,
}


class ArgSpec:
    """One declared flow argument: `args.int(default = 3)`."""

    __slots__ = ("kind", "default", "has_default")
    starlark_type = "arg"

    def __init__(self, kind: str, default: Any = None, has_default: bool = False):
        self.kind = kind
        self.default = default
        self.has_default = has_default

    def check(self, flow_name: str, name: str, value: Any) -> Any:
        types_ = _KINDS[self.kind]
        if types_ is None:
            return value
        ok = isinstance(value, types_) and not (self.kind in ("int", "float") and
                                                isinstance(value, bool))
        if not ok:
            raise FlowFailed(f"flow {flow_name}: argument {name} must be {self.kind}, "
                             f"got {type_name(value)}")
        if self.kind == "float":
            return float(value)
        return value

    def from_text(self, text: str) -> Any:
        """Convert a command-line `--arg name=text` by the declared type."""
        k = self.kind
        if k == "string":
            return text
        if k == "int":
            digits = text.strip().lstrip("+-").replace("_", "")
            if len(digits) > 4000 and digits.isdigit():
                # Python's own message here names sys.set_int_max_str_digits
                raise ValueError(f"{len(digits):,} digits: at most 4,000")
            return int(text, 0) if text.strip().lower().startswith(("0x", "0o", "0b")) else int(text)
        if k == "float":
            return float(text)
        if k == "bool":
            low = text.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"not a bool: {text!r}")
        # A deeper value could be neither decoded nor checkpointed reliably: refused
        # here, before any run exists.
        if nesting_exceeds(text, MAX_JSON_DEPTH):
            raise ValueError(f"JSON nested more than {MAX_JSON_DEPTH} levels deep")
        try:
            v = loads_strict(text)
        except RecursionError:
            raise ValueError(f"JSON nested more than {MAX_JSON_DEPTH} levels deep") from None
        except ValueError:
            if k in ("list", "dict"):
                raise
            return text
        if k in ("list", "dict") and not isinstance(v, list if k == "list" else dict):
            raise ValueError(f"not a JSON {k}: {text!r}")
        return v

    def starlark_repr(self) -> str:
        d = f"default = {to_repr(self.default)}" if self.has_default else ""
        return f"args.{self.kind}({d})"

    def __reduce__(self):
        return (ArgSpec, (self.kind, self.default, self.has_default))


def _arg_ctor(kind: str) -> Callable[..., ArgSpec]:
    _missing = object()

    def ctor(*, default: Any = _missing) -> ArgSpec:
        if default is _missing:
            return ArgSpec(kind, None, False)
        spec = ArgSpec(kind, freeze(default), True)
        if default is not None:   # (None: "optional", whatever the type)
            try:
                spec.default = spec.check("", "default", spec.default)
            except FlowFailed:
                # Else the flow would get the wrong type exactly when it is not given.
                raise ValueError(f"args.{kind}: default must be {kind}, got "
                                 f"{type_name(default)}") from None
        return spec
    ctor.__name__ = ctor.__qualname__ = f"args_{kind}"
    return ctor


# Module-level names so the constructors pickle by reference.
args_string = _arg_ctor("string")
args_int = _arg_ctor("int")
args_float = _arg_ctor("float")
args_bool = _arg_ctor("bool")
args_list = _arg_ctor("list")
args_dict = _arg_ctor("dict")
args_any = _arg_ctor("any")
for _f in (args_string, args_int, args_float, args_bool, args_list, args_dict, args_any):
    _f.__module__ = __name__

# `args.event`, `args.state` and `args.inbox` join this struct with the inbox issue.
ARGS = struct(string=args_string, int=args_int, float=args_float, bool=args_bool,
              list=args_list, dict=args_dict, any=args_any)


# ---------------------------------------------------------------- flows, handles, contexts

class FlowDef:
    """A flow value, `flow(implementation = f, args = {...})`. Calling it starts a
    child flow and blocks until it ends, returning its Result."""

    __slots__ = ("name", "implementation", "params", "resources", "secrets", "derived")
    starlark_type = "flow"

    def __init__(self, name: str, implementation: Callable, params: tuple,
                 resources: dict | None = None, secrets: tuple = (), derived: bool = False):
        self.name = name
        # Named after its implementation for now (no `name=`): see `learn_name`.
        self.derived = derived
        self.implementation = implementation
        self.params = params  # ((name, ArgSpec), ...) in declaration order
        self.resources = resources  # {name: factory function} or None
        self.secrets = secrets      # declared secret names

    def learn_name(self) -> "FlowDef":
        """A flow declared without ``name=`` is named after the global it is bound to
        (``counter = flow(implementation = _impl)`` is "counter", not "impl") as soon
        as that binding exists: when it is first called or started, or looked up as
        a run's root. Until then (and if it is bound to no global) it goes by its
        implementation's name."""
        if self.derived:
            mod = getattr(self.implementation, "__globals__", {}).get(MODULE_KEY)
            if mod is not None:
                g = mod.globals
                for name, py in mod.global_names().items():
                    if g.get(py) is self:
                        self.name, self.derived = name, False
                        break
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # Parked, not raised: an inline child that ends at once needs no checkpoint
        # of its caller, whose stack then simply goes on (see `starlark.park`).
        self.learn_name()
        return park(CallRequest(self, args, actor_prelude.inherit(kwargs)))

    def bind(self, args: tuple, kwargs: dict) -> dict:
        """Bind call arguments to the declared ones; a mismatch fails the flow."""
        names = [n for n, _ in self.params]
        if len(args) > len(names):
            raise FlowFailed(f"flow {self.name}: takes {len(names)} argument(s), "
                             f"got {len(args)} positional")
        out = dict(zip(names, args))
        for k, v in kwargs.items():
            if k not in names:
                raise FlowFailed(f"flow {self.name}: unknown argument {k}")
            if k in out:
                raise FlowFailed(f"flow {self.name}: argument {k} given twice")
            out[k] = v
        bound = {}
        for name, spec in self.params:
            if name in out:
                bound[name] = spec.check(self.name, name, out[name])
            elif spec.has_default:
                bound[name] = spec.default
            else:
                raise FlowFailed(f"flow {self.name}: missing argument {name}")
        return bound

    def starlark_getattr(self, name: str) -> Any:
        if name == "name":
            return self.learn_name().name
        raise AttributeError(name)

    def starlark_attrs(self) -> list[str]:
        return ["name"]

    def starlark_freeze(self) -> None:
        pass

    def starlark_repr(self) -> str:
        return f"<flow {self.learn_name().name}>"

    def __reduce__(self):
        return (FlowDef, (self.name, self.implementation, self.params, self.resources,
                          self.secrets, getattr(self, "derived", False)))


def _flow_name(impl: Callable) -> str:
    from .starlark.values import STARLARK_FUNCTIONS
    info = STARLARK_FUNCTIONS.get(getattr(impl, "__code__", None))
    name = info.name if info is not None else getattr(impl, "__name__", "flow")
    name = name.strip("_")
    if name.endswith("_impl"):
        name = name[:-5]
    return name or "flow"


def flow(implementation: Any = None, args: Any = None, *, name: Any = None,
         resources: Any = None, secrets: Any = None) -> FlowDef:
    """flow(implementation, args = {name: args.kind(...)}, resources = {name: factory},
    secrets = [NAME, ...]): declare a flow."""
    if not is_function(implementation):
        raise EvalError(f"flow: implementation must be a Starlark function, got "
                        f"{type_name(implementation)}")
    params = []
    if args is not None:
        if not isinstance(args, dict):
            raise EvalError(f"flow: args must be a dict of args.<kind>() values, got "
                            f"{type_name(args)}")
        for k, v in args.items():
            if not isinstance(k, str) or not isinstance(v, ArgSpec):
                raise EvalError(f"flow: args entry {to_repr(k)} must map a name to "
                                "args.<kind>(...)")
            params.append((k, v))
    if name is not None and not isinstance(name, str):
        raise EvalError("flow: name must be a string")
    from .actor_prelude import check_flow_extras
    res, sec = check_flow_extras(resources, secrets)
    return FlowDef(name or _flow_name(implementation), implementation, tuple(params),
                   res, sec, derived=name is None)


class Handle:
    """What `fctx.actions.run` returns: a started child flow, to `wait` on."""

    __slots__ = ("flow_id", "name")
    starlark_type = "flow_handle"

    def __init__(self, flow_id: str, name: str):
        self.flow_id = flow_id
        self.name = name

    def starlark_getattr(self, name: str) -> Any:
        if name == "id":
            return self.flow_id
        if name == "name":
            return self.name
        if name == "inbox":
            from .actor_prelude import Inbox
            return Inbox(self.flow_id)
        raise AttributeError(name)

    def starlark_attrs(self) -> list[str]:
        return ["id", "inbox", "name"]

    def starlark_repr(self) -> str:
        return f"<flow_handle {self.name} {self.flow_id}>"

    def __eq__(self, other: Any) -> bool:
        return type(other) is Handle and other.flow_id == self.flow_id

    def __hash__(self) -> int:
        return hash(("Handle", self.flow_id))

    def __reduce__(self):
        return (Handle, (self.flow_id, self.name))


class OutputStream:
    """The run's output stream (`fctx.args._stdout`), for `fctx.actions.write`."""

    __slots__ = ("name",)
    starlark_type = "stream"

    def __init__(self, name: str = "stdout"):
        self.name = name

    def starlark_repr(self) -> str:
        return f"<stream {self.name}>"

    def __reduce__(self):
        return (OutputStream, (self.name,))


STDOUT = OutputStream("stdout")


class _TypeName:
    """A name usable in annotations (`fctx: FlowContext`), not callable."""

    __slots__ = ("name",)
    starlark_type = "type"

    def __init__(self, name: str):
        self.name = name

    def starlark_repr(self) -> str:
        return f"<type {self.name}>"

    def __reduce__(self):
        return (_type_name, (self.name,))


def _type_name(name: str) -> "_TypeName":
    return _TYPE_NAMES[name]


_TYPE_NAMES = {"FlowContext": _TypeName("FlowContext"), "Result": _TypeName("Result")}


class FlowContext:
    """`fctx`: the running flow's id, bound arguments and actions."""

    __slots__ = ("flow_id", "name", "args", "ext")
    starlark_type = "FlowContext"

    def __init__(self, flow_id: str, name: str, args: Any, ext: dict | None = None):
        self.flow_id = flow_id
        self.name = name
        self.args = args
        self.ext = ext  # resources, secrets, quota (see flowmetal.actor_prelude)

    def starlark_getattr(self, name: str) -> Any:
        if name == "args":
            return self.args
        if name == "actions":
            return ACTIONS
        if name == "id":
            return self.flow_id
        if name == "name":
            return self.name
        return actor_prelude.context_attr(self, name)

    def starlark_attrs(self) -> list[str]:
        return ["actions", "args", "id", "name", *actor_prelude.CONTEXT_ATTRS]

    def starlark_freeze(self) -> None:
        pass

    def starlark_repr(self) -> str:
        return f"<FlowContext {self.name} {self.flow_id}>"

    def __reduce__(self):
        return (FlowContext, (self.flow_id, self.name, self.args, self.ext))


def make_args(bound: dict) -> Struct:
    """The `fctx.args` struct of bound arguments (plus `_stdout`)."""
    fields = dict(bound)
    fields["_stdout"] = STDOUT
    return struct(**fields)


# `fctx.args` of every flow that declares no arguments (and of one not bound yet): a
# struct is immutable, so one serves them all.
NO_ARGS = make_args({})


# ---------------------------------------------------------------- requests (Suspend payloads)

class StartRequest:
    """A new flow's first suspension: its durable starting point, before any code runs."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "StartRequest()"


class CallRequest:
    """Calling a flow value: start a child flow and wait for its Result."""

    __slots__ = ("flow", "args", "kwargs")

    def __init__(self, flow: FlowDef, args: tuple, kwargs: dict):
        self.flow = flow
        self.args = args
        self.kwargs = kwargs

    def __repr__(self) -> str:
        return f"CallRequest({self.flow.name})"


class WaitRequest:
    """`fctx.actions.wait`: the Results of these child flows, in order."""

    __slots__ = ("flow_ids", "single")

    def __init__(self, flow_ids: list[str], single: bool):
        self.flow_ids = flow_ids
        self.single = single

    def __repr__(self) -> str:
        return f"WaitRequest({self.flow_ids})"


class SleepRequest:
    """`fctx.actions.sleep(seconds)`: a durable timer."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float):
        self.seconds = seconds

    def __repr__(self) -> str:
        return f"SleepRequest({self.seconds})"


class ExecRequest:
    """`fctx.actions.exec(argv, ...)`: run a command."""

    __slots__ = ("argv", "env", "cwd", "timeout", "input")

    def __init__(self, argv: list[str], env: dict | None, cwd: str | None,
                 timeout: float | None, input: str | None):
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.timeout = timeout
        self.input = input

    def to_json(self) -> dict:
        return {"kind": "exec", "argv": self.argv, "env": to_plain(self.env), "cwd": self.cwd,
                "timeout": self.timeout, "input": self.input}

    def __repr__(self) -> str:
        return f"ExecRequest({self.argv})"


# ---------------------------------------------------------------- the current flow

class FlowHost(Protocol):
    """What the runtime provides to the flow running on this OS thread."""

    fctx: FlowContext

    def spawn(self, flow: FlowDef, args: tuple, kwargs: dict) -> Handle: ...

    def write(self, text: str) -> None: ...


_local = threading.local()


def current_host() -> FlowHost:
    """The FlowHost of the flow running on this OS thread (an error outside flows)."""
    stack = getattr(_local, "stack", None)
    if not stack:
        raise EvalError("no flow is running here: actions belong in a flow's "
                        "implementation (or the `__flow__` block), not at top level")
    return stack[-1]


def push_host(host: FlowHost) -> None:
    """Make `host` the current flow of this OS thread (the runtime calls this around
    each run of a flow's Thread; nested for a child flow run inline)."""
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    stack.append(host)


def pop_host() -> None:
    _local.stack.pop()


def current_flow() -> FlowContext:
    """current_flow(): the running flow's context (`fctx`)."""
    return current_host().fctx


# ---------------------------------------------------------------- actions

def action_run(flow: Any, *args: Any, **kwargs: Any) -> Handle:
    """run(flow, *args, **kwargs): start a child flow; returns a handle at once."""
    if not isinstance(flow, FlowDef):
        raise EvalError(f"run: want a flow, got {type_name(flow)}")
    return current_host().spawn(flow.learn_name(), freeze(args),
                                freeze(actor_prelude.inherit(kwargs)))


def action_wait(handles: Any, /) -> Any:
    """wait(handles): the Results of the handles' flows, in order (one handle: its Result)."""
    if isinstance(handles, Handle):
        raise Suspend(WaitRequest([handles.flow_id], True))
    if isinstance(handles, (list, tuple)):
        ids = []
        for h in handles:
            if not isinstance(h, Handle):
                raise EvalError(f"wait: want a handle or a list of handles, got a "
                                f"{type_name(handles)} holding {type_name(h)}")
            ids.append(h.flow_id)
        if not ids:
            return []
        raise Suspend(WaitRequest(ids, False))
    raise EvalError(f"wait: want a handle or a list of handles, got {type_name(handles)}")


def action_sleep(seconds: Any, /) -> None:
    """sleep(seconds): a durable timer."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise EvalError(f"sleep: want a number of seconds, got {type_name(seconds)}")
    if seconds != seconds or seconds < 0 or seconds > 1e9:
        raise EvalError(f"sleep: seconds must be between 0 and 1e9, got {seconds}")
    raise Suspend(SleepRequest(float(seconds)))


def action_exec(argv: Any, env: Any = None, cwd: Any = None, timeout: Any = None,
                input: Any = None) -> Any:
    """exec(argv, env=None, cwd=None, timeout=None, input=None): run a command; returns
    struct(exit_code, stdout, stderr)."""
    if not isinstance(argv, (list, tuple)) or not argv or \
            not all(isinstance(a, str) for a in argv):
        raise EvalError("exec: argv must be a non-empty list of strings")
    if env is not None and (not isinstance(env, dict) or not all(
            isinstance(k, str) and isinstance(v, (str, Secret)) for k, v in env.items())):
        raise EvalError("exec: env must be a dict of strings (or secrets)")
    if cwd is not None and not isinstance(cwd, str):
        raise EvalError("exec: cwd must be a string")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(
            timeout, (int, float)) or not 0 < timeout <= 1e9):   # (NaN fails too)
        raise EvalError("exec: timeout must be a number of seconds above 0, at most 1e9")
    if input is not None and not isinstance(input, str):
        raise EvalError("exec: input must be a string")
    raise Suspend(ExecRequest(list(argv), dict(env) if env is not None else None, cwd,
                              float(timeout) if timeout is not None else None, input))


def action_write(stream: Any, text: Any, /) -> None:
    """write(stream, text): append text to the run's output (`fctx.args._stdout`)."""
    if not isinstance(stream, OutputStream):
        raise EvalError(f"write: want an output stream (fctx.args._stdout), got "
                        f"{type_name(stream)}")
    if not isinstance(text, str):
        raise EvalError(f"write: want a string, got {type_name(text)}")
    current_host().write(text)


for _f in (action_run, action_wait, action_sleep, action_exec, action_write):
    _f.__name__ = _f.__name__[len("action_"):]  # repr `<built-in function sleep>`

ACTIONS = struct(run=action_run, wait=action_wait, sleep=action_sleep, exec=action_exec,
                 write=action_write)


def _flow_start() -> None:
    # A child the runtime runs inline, inside its caller's step, needs no durable
    # start point of its own (if it acts on the world, the runtime discards this run
    # and starts it properly): skipping the suspension saves a capture and a resume
    # per call. Every other flow stops here.
    # The flag is spent here, so that a flow the child starts in turn (`run`, whose
    # Thread is made while the child's host is current) still gets its start point.
    stack = getattr(_local, "stack", None)
    if stack and getattr(stack[-1], "inline_start", False):
        stack[-1].inline_start = False
        return
    raise Suspend(StartRequest())


def _flow_bind(f: Any, args: Any, kwargs: Any) -> tuple:
    host = current_host()
    fctx = actor_prelude.bind_context(f, host.fctx, tuple(args), dict(kwargs))
    host.fctx = fctx
    return (f.implementation, fctx)


def ok_(value: Any = None, /) -> Ok:
    """Ok(value): a successful Result."""
    return Ok(freeze(value))


def err_(error: Any = None, /) -> Err:
    """Err(error): a failed Result."""
    return Err(freeze(error))


# Python's messages for a bad call (`Ok(1, 2)`) name the function by its qualname.
ok_.__name__ = ok_.__qualname__ = "Ok"
err_.__name__ = err_.__qualname__ = "Err"


# ---------------------------------------------------------------- the Starlark part

PRELUDE_SOURCE = '''\
# The Starlark half of the Flowmetal prelude: no magic, just flow code.

def sleep(duration):
    current_flow().actions.sleep(duration)

def retry(subflow,
          should_retry = None,
          limit = 3,
          backoff = lambda count: 2 * count * count):
    def _inner(*args,
               limit = limit,
               should_retry = should_retry,
               backoff = backoff,
               **kwargs):
        result = None
        for count in range(limit):
            result = subflow(*args, **kwargs)
            if is_ok(result):
                return result
            if should_retry:
                if not should_retry(result):
                    return result
            sleep(backoff(count))
        return result
    return _inner

# Every flow instance's Thread runs this: a durable starting point, then the
# binding of its arguments (a mismatch is the flow's Err), then its implementation.
def _flow_main(f, args, kwargs):
    _flow_start()
    impl, fctx = _flow_bind(f, args, kwargs)
    _flow_resources(fctx, _flow_factories(f))
    if _flow_is_event(f):
        return _flow_events(impl, fctx)
    return impl(fctx)
'''

_HOST_NAMES: dict[str, Any] = {
    "flow": flow, "args": ARGS, "FlowContext": _TYPE_NAMES["FlowContext"],
    "current_flow": current_flow, "fctx": current_flow, "Ok": ok_, "Err": err_,
    "Result": _TYPE_NAMES["Result"], "is_ok": is_ok, "is_err": is_err, "unwrap": unwrap, "fail": fail,
}

_module_lock = threading.Lock()
_module: dict | None = None


def prelude_module() -> dict:
    """The prelude's exported names (host builtins + `sleep`, `retry`), built once per
    process; the Starlark part is frozen, so every flow may share it."""
    global _module
    if _module is None:
        with _module_lock:
            if _module is None:
                pre = dict(_HOST_NAMES)
                pre["_flow_start"] = _flow_start
                pre["_flow_bind"] = _flow_bind
                pre.update(actor_prelude.PRIVATE_HOST_NAMES)
                # Plain Starlark functions (not exec_file's Python-facing wrappers):
                # flows suspend inside `sleep`, `retry` and `_flow_main`.
                r = start(PRELUDE_SOURCE, "pkg.flowmetal.io/v1/prelude",
                          predeclared=pre).run()
                if not isinstance(r, Done):
                    raise RuntimeError(f"the prelude failed to load: {r!r}")
                g = r.value
                mod = dict(_HOST_NAMES)
                mod["sleep"] = g["sleep"]
                mod["retry"] = g["retry"]
                mod["_flow_main"] = g["_flow_main"]
                _module = mod
    return _module


def flow_main() -> Callable:
    """The Starlark entry function every flow's Thread starts in."""
    return prelude_module()["_flow_main"]


def predeclared(name: str = "__flow__") -> dict:
    """Names predeclared in a flow file: the prelude, and `__name__` (``"__flow__"``
    when the file's main block is the run's root, else ``"__main__"``)."""
    mod = prelude_module()
    out = {k: v for k, v in mod.items() if not k.startswith("_")}
    out["__name__"] = name
    return out


def packages() -> dict[str, Callable[[], dict]]:
    """`FileLoader` packages serving the prelude under both of its names."""
    def load() -> dict:
        return {k: v for k, v in prelude_module().items() if not k.startswith("_")}
    return {name: load for name in PRELUDE_MODULES}


# The actor half of the prelude builds on everything above and extends it when loaded.
# Functions above call into it through this module global (not a function-level
# import: those cost microseconds per call, and some run on every flow call).
from . import actor_prelude  # noqa: E402
