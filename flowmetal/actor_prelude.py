"""The actor half of the flow prelude: inboxes and messages, event flows, resources,
secrets, quotas and HTTP, as the flow sees them.

Like `flowmetal.prelude`, this module only *describes* actions: a host builtin
checks its arguments where the flow calls it (so a mistake fails at the call, with a
clear message, before anything is journaled) and raises `Suspend(request)`; the
runtime (`actors/`) performs the request. Everything here is plain data or a
picklable module-level class, so it checkpoints with the rest of a flow.

Messages cross flows and processes as *plain data* (`encode_message`): None, bools,
numbers, strings, bytes, lists, dicts, and tagged tuples for what JSON lacks —
``("t", items)`` for a tuple, ``("inbox", flow_id)`` for an inbox, ``("set", items)``,
``("struct", fields)``. External senders (`flowmetal send`) deliver JSON, which is
already in that form. Functions, flow handles and secrets are refused at the send.
"""

from __future__ import annotations

from typing import Any, Callable

from .prelude import (NO_ARGS, ArgSpec, Err, FlowContext, FlowFailed, Handle, current_host,
                      make_args)
from .secrets import Secret, SecretError, process_source, secrets_struct, to_plain
from .starlark import EvalError, Struct, Suspend, freeze, is_function, struct
from .starlark.values import FrozenDict, FrozenList, Set, to_repr, type_name

__all__ = [
    "Inbox", "EventEnd", "EVENT_END", "encode_message", "decode_message", "MessageError",
    "MAX_MESSAGE_DEPTH", "SendRequest", "ReceiveRequest", "CloseRequest", "HttpRequest",
    "OpenResourcesRequest", "ResourceSpec", "TempDirHandle", "ProcessHandle",
    "ResourcesOpened", "EventSpec", "StateSpec", "InboxSpec", "FlowArgs", "args_event",
    "args_state", "args_inbox", "action_send", "action_receive", "action_close",
    "action_http", "tempdir", "process", "HTTP_METHODS", "EXTRA_SOURCE",
]

MAX_MESSAGE_DEPTH = 64
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


# ---------------------------------------------------------------- inboxes

class Inbox:
    """A flow's inbox: `fctx.inbox`, `handle.inbox`, an `args.inbox()` argument."""

    __slots__ = ("flow_id",)
    starlark_type = "inbox"

    def __init__(self, flow_id: str):
        self.flow_id = flow_id

    def starlark_getattr(self, name: str) -> Any:
        if name == "id":
            return self.flow_id
        raise AttributeError(name)

    def starlark_attrs(self) -> list[str]:
        return ["id"]

    def starlark_freeze(self) -> None:
        pass

    def starlark_repr(self) -> str:
        return f"<inbox {self.flow_id}>"

    def __repr__(self) -> str:
        return self.starlark_repr()

    def __eq__(self, other: Any) -> bool:
        return type(other) is Inbox and other.flow_id == self.flow_id

    def __hash__(self) -> int:
        return hash(("Inbox", self.flow_id))

    def __reduce__(self):
        return (Inbox, (self.flow_id,))


class EventEnd:
    """What an event flow's receive returns once its inbox is closed and drained."""

    __slots__ = ()

    def __reduce__(self):
        return (_event_end, ())

    def starlark_repr(self) -> str:
        return "<end of inbox>"


EVENT_END = EventEnd()


def _event_end() -> EventEnd:
    return EVENT_END


class MessageError(EvalError):
    """A value that cannot be sent as a message."""


def _where(path: list[str]) -> str:
    return "msg" + "".join(path) if path else "the message"


def encode_message(value: Any, what: str = "send") -> Any:
    """A Starlark value as plain message data (see the module docstring), or a
    `MessageError` saying what cannot be sent and where it is in the message."""
    path: list[str] = []

    def enc(v: Any, depth: int) -> Any:
        if depth > MAX_MESSAGE_DEPTH:
            raise MessageError(f"{what}: the message nests deeper than {MAX_MESSAGE_DEPTH} "
                               f"levels at {_where(path)} (a list that contains itself?)")
        t = type(v)
        if v is None or t in (bool, int, float, str, bytes):
            return v
        if t is Inbox:
            return ("inbox", v.flow_id)
        if isinstance(v, (list, FrozenList)):
            out = []
            for i, e in enumerate(v):
                path.append(f"[{i}]")
                out.append(enc(e, depth + 1))
                path.pop()
            return out
        if t is tuple:
            items = []
            for i, e in enumerate(v):
                path.append(f"[{i}]")
                items.append(enc(e, depth + 1))
                path.pop()
            return ("t", tuple(items))
        if isinstance(v, (dict, FrozenDict)):
            out_d = {}
            for k, e in v.items():
                path.append(f"[{to_repr(k)}]")
                kk = enc(k, depth + 1)
                try:
                    hash(kk)
                except TypeError:
                    raise MessageError(f"{what}: the key at {_where(path)} cannot be sent "
                                       "as a message key") from None
                out_d[kk] = enc(e, depth + 1)
                path.pop()
            return out_d
        if t is Set:
            items = []
            for i, e in enumerate(v._items):
                path.append(f"[set element {i}]")
                items.append(enc(e, depth + 1))
                path.pop()
            return ("set", tuple(items))
        if t is Struct:
            fields = {}
            for k, e in v._fields.items():
                path.append(f".{k}")
                fields[k] = enc(e, depth + 1)
                path.pop()
            return ("struct", fields)
        # Everything else is refused, with a hint for the common mistakes.
        if t is Handle:
            hint = "a flow handle cannot be sent (send handle.inbox instead)"
        elif t is Secret:
            hint = "secrets cannot be sent (declare them with flow(secrets = [...]))"
        elif type_name(v) == "flow":
            hint = "a flow cannot be sent (the receiver can load it from its file)"
        elif is_function(v) or callable(v):
            hint = "functions cannot be sent"
        else:
            hint = f"a {type_name(v)} cannot be sent"
        raise MessageError(f"{what}: {hint}: found {type_name(v)} at {_where(path)}; a "
                           "message is plain data (None, bool, int, float, string, bytes, "
                           "list, tuple, dict, set, struct, inbox)")
    return enc(value, 0)


def decode_message(data: Any) -> Any:
    """Inverse of `encode_message`: Starlark values (mutable lists and dicts, which
    the receiver owns). Untagged tuples and unknown tags (an external sender cannot
    make them from JSON) decode as tuples."""
    t = type(data)
    if data is None or t in (bool, int, float, str, bytes):
        return data
    if t is list:
        return [decode_message(e) for e in data]
    if t is dict:
        return {_decode_key(k): decode_message(e) for k, e in data.items()}
    if t is tuple:
        if len(data) == 2:
            tag, body = data
            if tag == "inbox" and isinstance(body, str):
                return Inbox(body)
            if tag == "t" and isinstance(body, tuple):
                return tuple(decode_message(e) for e in body)
            if tag == "set" and isinstance(body, tuple):
                return Set(_decode_key(e) for e in body)
            if tag == "struct" and isinstance(body, dict):
                return struct(**{k: decode_message(e) for k, e in body.items()})
        return tuple(decode_message(e) for e in data)
    return data


def _decode_key(k: Any) -> Any:
    # Keys must stay hashable: frozen containers.
    return freeze(decode_message(k))


# ---------------------------------------------------------------- requests

class SendRequest:
    """`fctx.actions.send(inbox, msg)`: append msg to the inbox of flow `to`."""

    __slots__ = ("to", "body")

    def __init__(self, to: str, body: Any):
        self.to = to
        self.body = body

    def to_json(self) -> dict:
        return {"kind": "send", "to": self.to, "body": self.body}

    def __repr__(self) -> str:
        return f"SendRequest({self.to})"


class ReceiveRequest:
    """`fctx.actions.receive(timeout)`: the next message of the flow's own inbox.
    `dispatch`: an event flow's loop, which gets `EVENT_END` once the inbox is closed
    and drained (a plain receive gets an error then)."""

    __slots__ = ("timeout", "dispatch")

    def __init__(self, timeout: float | None, dispatch: bool = False):
        self.timeout = timeout
        self.dispatch = dispatch

    def to_json(self) -> dict:
        return {"kind": "receive", "timeout": self.timeout, "dispatch": self.dispatch}

    def __repr__(self) -> str:
        return f"ReceiveRequest({self.timeout})"


class CloseRequest:
    """`fctx.actions.close(inbox)`: refuse further messages to that inbox."""

    __slots__ = ("target",)

    def __init__(self, target: str):
        self.target = target

    def to_json(self) -> dict:
        return {"kind": "close", "inbox": self.target}

    def __repr__(self) -> str:
        return f"CloseRequest({self.target})"


class HttpRequest:
    """`fctx.actions.http(...)`. Header values may be Secrets (kept by name)."""

    __slots__ = ("method", "url", "headers", "body", "timeout")

    def __init__(self, method: str, url: str, headers: dict, body: Any,
                 timeout: float | None):
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.timeout = timeout

    def to_json(self) -> dict:
        return {"kind": "http", "method": self.method, "url": self.url,
                "headers": to_plain(dict(self.headers)), "body": self.body,
                "timeout": self.timeout}

    def __repr__(self) -> str:
        return f"HttpRequest({self.method} {self.url})"


class OpenResourcesRequest:
    """A flow's start: open its declared resources (name -> `ResourceSpec`)."""

    __slots__ = ("specs",)

    def __init__(self, specs: dict):
        self.specs = specs

    def to_json(self) -> dict:
        return {"kind": "resources",
                "open": {n: s.to_json() for n, s in self.specs.items()}}

    def __repr__(self) -> str:
        return f"OpenResourcesRequest({sorted(self.specs)})"


# ---------------------------------------------------------------- resources (flow side)

class ResourceSpec:
    """What a resource factory (`lambda fctx: tempdir()`) returns: a kind and its
    parameters (plain data; secrets by name), opened by the runtime."""

    __slots__ = ("kind", "params")
    starlark_type = "resource_spec"

    def __init__(self, kind: str, params: dict):
        self.kind = kind
        self.params = params

    def to_json(self) -> dict:
        return {"kind": self.kind, "params": to_plain(self.params)}

    def starlark_freeze(self) -> None:
        pass

    def starlark_repr(self) -> str:
        return f"<resource {self.kind}>"

    def __reduce__(self):
        return (ResourceSpec, (self.kind, self.params))


class TempDirHandle:
    """`fctx.resources.NAME` of a `tempdir()`: `.path`."""

    __slots__ = ("name", "path")
    starlark_type = "tempdir"

    def __init__(self, name: str, path: str):
        self.name = name
        self.path = path

    def starlark_getattr(self, attr: str) -> Any:
        if attr in ("name", "path"):
            return getattr(self, attr)
        raise AttributeError(attr)

    def starlark_attrs(self) -> list[str]:
        return ["name", "path"]

    def starlark_freeze(self) -> None:
        pass

    def starlark_repr(self) -> str:
        return f"<tempdir {self.path}>"

    def __eq__(self, other: Any) -> bool:
        return type(other) is TempDirHandle and other.path == self.path

    def __hash__(self) -> int:
        return hash(("TempDirHandle", self.path))

    def __reduce__(self):
        return (TempDirHandle, (self.name, self.path))


class ProcessHandle:
    """`fctx.resources.NAME` of a `process(...)`: `.argv`, `.port` (if given). The
    pid is not exposed: a reopened process has a new one, the handle stays valid."""

    __slots__ = ("name", "argv", "port")
    starlark_type = "process"

    def __init__(self, name: str, argv: tuple, port: int | None):
        self.name = name
        self.argv = tuple(argv)
        self.port = port

    def starlark_getattr(self, attr: str) -> Any:
        if attr == "argv":
            return list(self.argv)
        if attr in ("name", "port"):
            return getattr(self, attr)
        raise AttributeError(attr)

    def starlark_attrs(self) -> list[str]:
        return ["argv", "name", "port"]

    def starlark_freeze(self) -> None:
        pass

    def starlark_repr(self) -> str:
        return f"<process {self.name} {self.argv[0] if self.argv else ''}>"

    def __eq__(self, other: Any) -> bool:
        return type(other) is ProcessHandle and (other.name, other.argv) == (self.name, self.argv)

    def __hash__(self) -> int:
        return hash(("ProcessHandle", self.name, self.argv))

    def __reduce__(self):
        return (ProcessHandle, (self.name, self.argv, self.port))


class ResourcesOpened:
    """The outcome of an `OpenResourcesRequest`: the handles, or the error that ends
    the flow (naming the resource) — a value, so that the flow's Err is just the
    message, not a traceback."""

    __slots__ = ("handles", "error")

    def __init__(self, handles: dict | None, error: str | None = None):
        self.handles = handles
        self.error = error

    def starlark_repr(self) -> str:
        # As `history` shows the `resources` action's result.
        if self.error is not None:
            return f"<resources not opened: {self.error}>"
        return "<resources " + ", ".join(f"{k} = {to_repr(v)}"
                                         for k, v in sorted((self.handles or {}).items())) + ">"

    def __reduce__(self):
        return (ResourcesOpened, (self.handles, self.error))


def tempdir() -> ResourceSpec:
    """tempdir(): a private directory (mode 0700), removed when the flow ends."""
    return ResourceSpec("tempdir", {})


def process(argv: Any, env: Any = None, cwd: Any = None, port: Any = None,
            ready_timeout: Any = None) -> ResourceSpec:
    """process(argv, env=None, cwd=None, port=None, ready_timeout=None): a long-running
    subprocess (a local server), stopped when the flow ends. With `port`, the flow
    starts only once 127.0.0.1:port accepts connections (or fails after
    `ready_timeout` seconds, default 10). `env` values may be secrets."""
    if not isinstance(argv, (list, tuple)) or not argv or \
            not all(isinstance(a, str) for a in argv):
        raise EvalError("process: argv must be a non-empty list of strings")
    if env is not None and (not isinstance(env, dict) or not all(
            isinstance(k, str) and isinstance(v, (str, Secret)) for k, v in env.items())):
        raise EvalError("process: env must be a dict of strings (or secrets)")
    if cwd is not None and not isinstance(cwd, str):
        raise EvalError("process: cwd must be a string")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int)
                             or not 0 < port < 65536):
        raise EvalError("process: port must be a TCP port number")
    if ready_timeout is not None and (isinstance(ready_timeout, bool) or not isinstance(
            ready_timeout, (int, float)) or not 0 < ready_timeout <= 3600):
        raise EvalError("process: ready_timeout must be a positive number of seconds")
    return ResourceSpec("process", {
        "argv": list(argv), "env": dict(env) if env is not None else None, "cwd": cwd,
        "port": port, "ready_timeout": float(ready_timeout) if ready_timeout else None})


# ---------------------------------------------------------------- argument kinds

class EventSpec(ArgSpec):
    """`args.event()`: the message being dispatched (set by the runtime)."""

    __slots__ = ()

    def __init__(self, kind: str = "event", default: Any = None, has_default: bool = True):
        super().__init__("event", None, True)

    def check(self, flow_name: str, name: str, value: Any) -> Any:
        raise FlowFailed(f"flow {flow_name}: argument {name} is an args.event(): the "
                         "runtime sets it to each message of the flow's inbox")

    def from_text(self, text: str) -> Any:
        raise ValueError("an event argument cannot be given")

    def starlark_repr(self) -> str:
        return "args.event()"

    def __reduce__(self):
        return (EventSpec, ())


class StateSpec(ArgSpec):
    """`args.state(initial = v)`: a value the flow may change, kept between dispatches."""

    __slots__ = ()

    def __init__(self, kind: str = "state", default: Any = None, has_default: bool = True):
        super().__init__("state", default, True)

    def check(self, flow_name: str, name: str, value: Any) -> Any:
        return value  # a caller may choose the initial state

    def from_text(self, text: str) -> Any:
        return ArgSpec("any").from_text(text)   # as args.any(): JSON, else the text

    def starlark_repr(self) -> str:
        return f"args.state(initial = {to_repr(self.default)})"

    def __reduce__(self):
        return (StateSpec, ("state", self.default, True))


class InboxSpec(ArgSpec):
    """`args.inbox()`: another flow's inbox, passed when the flow is started."""

    __slots__ = ()

    def __init__(self, kind: str = "inbox", default: Any = None, has_default: bool = False):
        super().__init__("inbox", None, False)

    def check(self, flow_name: str, name: str, value: Any) -> Any:
        if type(value) is Handle:
            return Inbox(value.flow_id)  # a handle's flow has exactly one inbox
        if type(value) is not Inbox:
            raise FlowFailed(f"flow {flow_name}: argument {name} must be an inbox "
                             f"(fctx.inbox or handle.inbox), got {type_name(value)}")
        return value

    def from_text(self, text: str) -> Any:
        # On the command line an inbox is its flow's id (a run id for a root flow).
        if not text.strip():
            raise ValueError("empty flow id")
        return Inbox(text.strip())

    def starlark_repr(self) -> str:
        return "args.inbox()"

    def __reduce__(self):
        return (InboxSpec, ())


def args_event() -> EventSpec:
    """args.event(): the argument an event flow receives each message in."""
    return EventSpec()


def args_state(*, initial: Any = None) -> StateSpec:
    """args.state(initial = v): flow state that persists between dispatches."""
    return StateSpec("state", freeze(initial), True)


def args_inbox() -> InboxSpec:
    """args.inbox(): an argument that is another flow's inbox."""
    return InboxSpec()


args_event.__name__, args_state.__name__, args_inbox.__name__ = "event", "state", "inbox"


def is_event_flow(params: tuple) -> bool:
    return any(isinstance(s, EventSpec) for _, s in params)


def has_state(params: tuple) -> bool:
    return any(isinstance(s, (EventSpec, StateSpec)) for _, s in params)


class FlowArgs:
    """`fctx.args` of a flow with `args.state()`/`args.event()` arguments: readable
    like a struct; its state arguments may be assigned (`fctx.args.count += 1`).
    It lives in the flow's checkpoint, so state survives dispatches and restarts."""

    __slots__ = ("fields", "mutable", "event")
    starlark_type = "struct"

    def __init__(self, fields: dict, mutable: frozenset, event: str | None = None):
        self.fields = dict(fields)
        self.mutable = frozenset(mutable)
        self.event = event  # the name of the args.event() argument, if any

    def starlark_getattr(self, name: str) -> Any:
        return self.fields[name]

    def starlark_attrs(self) -> list[str]:
        return sorted(self.fields)

    def starlark_setattr(self, name: str, value: Any) -> None:
        if name not in self.mutable:
            if name in self.fields:
                raise EvalError(f"cannot set argument {name}: only args.state() "
                                "arguments can change")
            raise EvalError(f"flow has no argument {name}")
        self.fields[name] = value

    def set_event(self, value: Any) -> None:
        if self.event is not None:
            self.fields[self.event] = value

    def starlark_freeze(self) -> None:
        pass  # state is the flow's own, changed in place by design

    def starlark_repr(self) -> str:
        inner = ", ".join(f"{k} = {to_repr(v)}" for k, v in sorted(self.fields.items()))
        return f"args({inner})"

    def __reduce__(self):
        return (FlowArgs, (self.fields, self.mutable, self.event))


def make_flow_args(params: tuple, bound: dict) -> FlowArgs:
    mutable = frozenset(n for n, s in params if isinstance(s, StateSpec))
    event = next((n for n, s in params if isinstance(s, EventSpec)), None)
    return FlowArgs(bound, mutable, event)


# ---------------------------------------------------------------- actions

def _want_inbox(fname: str, x: Any) -> str:
    if type(x) is Inbox:
        return x.flow_id
    if type(x) is Handle:
        return x.flow_id
    raise EvalError(f"{fname}: want an inbox (fctx.inbox, handle.inbox), got {type_name(x)}")


def action_send(inbox: Any, msg: Any, /) -> None:
    """send(inbox, msg): deliver msg (plain data) to the inbox, durably, in order."""
    to = _want_inbox("send", inbox)
    raise Suspend(SendRequest(to, encode_message(msg, "send")))


def _want_timeout(fname: str, timeout: Any) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or \
            timeout != timeout or timeout < 0 or timeout > 1e9:
        raise EvalError(f"{fname}: timeout must be None or a number of seconds "
                        "between 0 and 1e9")
    return float(timeout)


def action_receive(timeout: Any = None) -> Any:
    """receive(timeout=None): the next message of this flow's inbox (a durable wait);
    None when the timeout expires first."""
    raise Suspend(ReceiveRequest(_want_timeout("receive", timeout)))


def action_close(inbox: Any, /) -> None:
    """close(inbox): the inbox takes no more messages (queued ones stay readable)."""
    raise Suspend(CloseRequest(_want_inbox("close", inbox)))


def action_http(method: Any, url: Any, headers: Any = None, body: Any = None,
                timeout: Any = None) -> Any:
    """http(method, url, headers=None, body=None, timeout=None): struct(status,
    headers, body). Any status is a result; failing to get one is an error."""
    import urllib.parse
    if not isinstance(method, str) or method.upper() not in HTTP_METHODS:
        raise EvalError(f"http: method must be one of {', '.join(HTTP_METHODS)}, "
                        f"got {to_repr(method)}")
    if not isinstance(url, str):
        raise EvalError(f"http: url must be a string, got {type_name(url)}")
    try:
        p = urllib.parse.urlsplit(url)
        ok = p.scheme in ("http", "https") and bool(p.hostname) and (p.port or 1) > 0
    except ValueError:
        ok = False
    if not ok:
        raise EvalError(f"http: not an http(s) URL: {to_repr(url)}")
    hdrs: dict = {}
    if headers is not None:
        if not isinstance(headers, dict):
            raise EvalError("http: headers must be a dict of strings (or secrets)")
        for k, v in headers.items():
            if not isinstance(k, str) or not k or not isinstance(v, (str, Secret)):
                raise EvalError("http: headers must be a dict of strings (or secrets)")
            if any(c in k for c in "\r\n: \t") or (isinstance(v, str) and (
                    "\r" in v or "\n" in v)):
                raise EvalError(f"http: header {to_repr(k)}: no line breaks, and no "
                                "colons or spaces in the name")
            hdrs[k] = v
    if body is not None and not isinstance(body, (str, bytes)):
        raise EvalError(f"http: body must be a string or bytes, got {type_name(body)}")
    t = _want_timeout("http", timeout)
    if t == 0:
        raise EvalError("http: timeout must be positive")
    raise Suspend(HttpRequest(method.upper(), url, hdrs, body, t))


for _f in (action_send, action_receive, action_close, action_http):
    _f.__name__ = _f.__name__[len("action_"):]

ACTIONS_EXTRA: dict[str, Callable] = {"send": action_send, "receive": action_receive,
                                      "close": action_close, "http": action_http}
ARGS_EXTRA: dict[str, Callable] = {"event": args_event, "state": args_state,
                                   "inbox": args_inbox}
HOST_NAMES_EXTRA: dict[str, Callable] = {"tempdir": tempdir, "process": process}


# ---------------------------------------------------------------- the flow's start

def flow_open(specs: Any) -> None:
    """Host builtin `_flow_open(specs)`: open the resources the factories returned."""
    if not specs:
        return None
    out = {}
    for name, spec in specs.items():
        if type(spec) is not ResourceSpec:
            raise FlowFailed(f"resource {name}: its factory must return a resource "
                             f"(tempdir(), process(...)), got {type_name(spec)}")
        out[name] = spec
    raise Suspend(OpenResourcesRequest(out))


def flow_next_event() -> Any:
    """Host builtin `_flow_next_event()`: an event flow's next message (or the end)."""
    raise Suspend(ReceiveRequest(None, dispatch=True))


def flow_is_end(x: Any) -> bool:
    return type(x) is EventEnd


def flow_set_event(fctx: Any, event: Any) -> None:
    """Host builtin `_flow_set_event(fctx, event)`: the message being dispatched."""
    args = fctx.args
    if type(args) is FlowArgs:
        args.set_event(event)


def flow_is_err(x: Any) -> bool:
    return type(x) is Err


def flow_bind_resources(fctx: Any, opened: Any) -> None:
    """Host builtin `_flow_bind_resources(fctx, opened)`: `fctx.resources`, or the
    flow's end with the error that names the resource that failed to open."""
    if type(opened) is not ResourcesOpened:
        raise EvalError("resources: the runtime answered with "
                        f"{type_name(opened)}")
    if opened.error is not None:
        raise FlowFailed(opened.error)
    set_context_field(fctx, "resources", struct(**opened.handles))


# ---------------------------------------------------------------- fctx fields

def set_context_field(fctx: Any, name: str, value: Any) -> None:
    """Set one of the actor-era fields of `fctx` (resources, secrets, quota)."""
    ext = getattr(fctx, "ext", None)
    if ext is None:
        ext = {}
        fctx.ext = ext
    ext[name] = value


def context_attr(fctx: Any, name: str) -> Any:
    """`fctx.inbox`, `fctx.resources`, `fctx.secrets`, `fctx.quota` (AttributeError
    for anything else: the caller reports the missing field)."""
    if name == "inbox":
        return Inbox(fctx.flow_id)
    ext = getattr(fctx, "ext", None) or {}
    if name in ext and name in CONTEXT_ATTRS:   # not its bookkeeping (depth, ...)
        return ext[name]
    if name in ("resources", "secrets"):
        return struct()   # none declared: an empty struct, so hasattr() works
    if name == "quota":
        from .quotas import process_quota_info
        return process_quota_info()
    raise AttributeError(name)


CONTEXT_ATTRS = ("inbox", "quota", "resources", "secrets")


# Host builtins the prelude's Starlark part needs (underscore names: not exported).
PRIVATE_HOST_NAMES: dict[str, Callable] = {
    "_flow_next_event": flow_next_event, "_flow_is_end": flow_is_end,
    "_flow_set_event": flow_set_event, "_flow_is_err": flow_is_err,
    "_flow_open": flow_open, "_flow_bind_resources": flow_bind_resources,
}


# Starlark added to the prelude (PRELUDE_SOURCE): the event loop, and the opening of
# a flow's resources — plain flow code on top of the host builtins above.
EXTRA_SOURCE = '''
# An event flow: its implementation runs once per message of its inbox, until the
# inbox is closed and drained. Its args.state() values live in fctx.args.
def _flow_events(impl, fctx):
    result = None
    while True:
        event = _flow_next_event()
        if _flow_is_end(event):
            return result
        _flow_set_event(fctx, event)
        result = impl(fctx)
        if _flow_is_err(result):
            return result

# Resources: each factory is called with fctx; the runtime opens what they return.
def _flow_resources(fctx, factories):
    if not factories:
        return
    specs = {name: factories[name](fctx) for name in factories}
    _flow_bind_resources(fctx, _flow_open(specs))
'''


# ---------------------------------------------------------------- flow declarations

def check_flow_extras(resources: Any, secrets: Any) -> tuple[dict | None, tuple]:
    """Validate `flow(resources = ..., secrets = ...)`."""
    from .secrets import SecretError, check_names
    res = None
    if resources is not None:
        if not isinstance(resources, dict):
            raise EvalError("flow: resources must be a dict of name: lambda fctx: "
                            "<resource>")
        for k, fn in resources.items():
            if not isinstance(k, str) or not k.isidentifier() or k.startswith("_"):
                raise EvalError(f"flow: resource name {to_repr(k)} must be an identifier")
            if not is_function(fn):
                raise EvalError(f"flow: resource {k} must be a function of fctx (like "
                                f"lambda fctx: tempdir()), got {type_name(fn)}")
        res = resources if resources else None
    try:
        sec = check_names(secrets, "flow")
    except SecretError as e:
        raise EvalError(str(e)) from None
    return res, sec


def flow_factories(f: Any) -> Any:
    """Host builtin `_flow_factories(f)`: the flow's resource factories (or None)."""
    return getattr(f, "resources", None)


def flow_is_event(f: Any) -> bool:
    """Host builtin `_flow_is_event(f)`: whether the flow declares an args.event()."""
    return is_event_flow(f.params)


PRIVATE_HOST_NAMES["_flow_factories"] = flow_factories
PRIVATE_HOST_NAMES["_flow_is_event"] = flow_is_event


# ---------------------------------------------------------------- context inheritance

# A key no Starlark caller can write (not an identifier): the context a child flow
# inherits from the flow that starts it, carried in its start arguments.
INHERIT_KEY = "\0inherit"


# Flows nested deeper than this (a flow calling itself with no end, each call a
# flow record and a waiting parent in the store) fail the call instead.
MAX_FLOW_DEPTH = 1000


def inherit(kwargs: dict) -> dict:
    """`kwargs` plus what a child inherits from the running flow: the secrets it may
    use (the root's declaration, passed down), the quota of the submitting user and
    its depth (a child deeper than `MAX_FLOW_DEPTH` is an error of the call)."""
    if INHERIT_KEY in kwargs:
        raise EvalError("invalid keyword argument")
    try:
        fctx = current_host().fctx
    except EvalError:
        return kwargs
    ext = getattr(fctx, "ext", None) or {}
    depth = ext.get("depth", 0) + 1
    if depth > MAX_FLOW_DEPTH:
        raise EvalError(f"flow calls nested more than {MAX_FLOW_DEPTH} deep "
                        "(a flow that calls itself without end?)")
    out = dict(kwargs)
    out[INHERIT_KEY] = (tuple(ext.get("secret_names") or ()), ext.get("quota"), depth)
    return out


def bind_context(f: Any, host_fctx: Any, args: tuple, kwargs: dict) -> Any:
    """The `fctx` of flow `f` started with (args, kwargs): bound arguments (mutable
    state for event flows), inherited and declared secrets — a missing secret fails
    the flow here, before any of its code runs — and the user's quota."""
    inherited = kwargs.pop(INHERIT_KEY, None)
    bound = f.bind(args, kwargs)
    prev = getattr(host_fctx, "ext", None) or {}
    names: tuple = ()
    quota = prev.get("quota")
    depth = 0
    if inherited is not None:
        names, q = inherited[:2]
        quota = q if q is not None else quota
        depth = inherited[2] if len(inherited) > 2 else 0   # older start specs: 2
    names = tuple(prev.get("secret_names") or ()) + tuple(names)
    own = tuple(getattr(f, "secrets", ()) or ())
    if own:
        try:
            process_source().require(own)
        except SecretError as e:
            raise FlowFailed(f"flow {f.name}: {e}") from None
    names = tuple(dict.fromkeys(names + own))
    ext: dict = {}
    if names:
        ext["secret_names"] = names
        ext["secrets"] = secrets_struct(names)
    if quota is not None:
        ext["quota"] = quota
    if depth:
        ext["depth"] = depth
    if not f.params:
        fargs = NO_ARGS   # most called flows: nothing to bind, freeze or build
    else:
        frozen = freeze(bound)
        fargs = make_flow_args(f.params, frozen) if has_state(f.params) else make_args(frozen)
    return FlowContext(host_fctx.flow_id, f.name, fargs, ext or None)



# ---------------------------------------------------------------- joining the prelude

def _install() -> None:
    """Add this half to `flowmetal.prelude`: `args.event/state/inbox`, the actions
    `send/receive/close/http`, `tempdir` and `process`, and the Starlark event loop.
    Runs once, when this module finishes loading (the prelude imports it last, and
    importing this module first loads the prelude before it)."""
    from . import prelude as P
    if getattr(P, "_actor_half", False):
        return
    P.ARGS = struct(**P.ARGS._fields, **ARGS_EXTRA)
    P.ACTIONS = struct(**P.ACTIONS._fields, **ACTIONS_EXTRA)
    P.PRELUDE_SOURCE += EXTRA_SOURCE
    P._HOST_NAMES.update(HOST_NAMES_EXTRA)
    P._HOST_NAMES["args"] = P.ARGS
    P._actor_half = True


_install()
