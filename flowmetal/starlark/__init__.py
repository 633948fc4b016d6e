"""Flowmetal's Starlark dialect: an embeddable interpreter whose programs suspend.

The public embedding API (our runtime and outside harnesses use exactly these):

- `exec_file(source, filename, *, predeclared, loader)` runs a module and
  returns its frozen globals; `eval_expr(source, *, predeclared)` evaluates one
  expression.
- `start(source, filename, *, predeclared, loader)` prepares a module run as a
  `Thread`; `start_call(fn, *args, **kwargs)` one call of a Starlark function.
  `Thread.run()`, `.resume(value)` and `.resume_error(message)` return `Done`,
  `Failed` or `Suspended`; a host builtin suspends the program by raising
  `Suspend(request)`, or `park(request)` to keep the program's stack alive when
  the Thread is `parkable` (the host then resumes it at once, or `capture`s it).
  A suspended Thread pickles and resumes in another process; within
  `module_sources(sink=..., resolve=...)` its modules pickle as their sources'
  hashes, for a host that stores sources by content.
- `StarlarkError` (with `StarlarkSyntaxError`, `ResolveError`, `EvalError`),
  `struct(**fields)`, `freeze(value)`.

Layout, after starlark-go: `syntax` (parse and check), `compile` (resolve and
generate Python), `thread` (run, suspend, pickle), `values`, `builtins` and
`methods` (the value library), `context` (per-thread host hooks and limits).
"""

from __future__ import annotations

from typing import Any, Callable

from . import builtins as _builtins  # noqa: F401  (fills the method tables)
from . import methods as _methods  # noqa: F401
from .errors import EvalError, Frame, ResolveError, StarlarkError, StarlarkSyntaxError, Suspend
from .thread import (Done, Failed, FrameRecord, Pickler, Suspended, Thread, dumps, module_sources,
                     new_module, park, source_sink)
from .values import STARLARK_FUNCTIONS, Struct, freeze, struct

__all__ = [
    "exec_file", "eval_expr", "start", "start_call", "Thread", "Done", "Failed", "Suspended",
    "Suspend", "StarlarkError", "StarlarkSyntaxError", "ResolveError", "EvalError", "Frame",
    "FrameRecord", "struct", "Struct", "freeze", "is_function", "Function", "Pickler", "dumps",
    "park", "module_sources", "source_sink",
]


def start(source: str, filename: str = "<file>", *, predeclared: dict | None = None,
          loader: Callable[[str], dict] | None = None, max_steps: int | None = None,
          print: Callable[[str], None] | None = None) -> Thread:
    """Compile a module and return a Thread ready to `run()` it.

    Syntax and name-resolution errors raise `StarlarkError` here, before
    anything runs. `max_steps` bounds loop iterations (a runaway guard);
    `print` receives each line the program prints (default: stdout).
    """
    module = new_module(source, filename, predeclared, loader)
    return Thread(module, max_steps=max_steps, print=print)


def start_call(fn: Callable, *args: Any, max_steps: int | None = None,
               print: Callable[[str], None] | None = None, **kwargs: Any) -> Thread:
    """A Thread that runs one call `fn(*args, **kwargs)` of a Starlark function."""
    fn = getattr(fn, "__wrapped__", fn)
    code = getattr(fn, "__code__", None)
    if code not in STARLARK_FUNCTIONS:
        raise TypeError("start_call needs a Starlark function")
    module = fn.__globals__["_ϟmodule"]
    return Thread(module, call=(fn, args, kwargs), max_steps=max_steps, print=print)


def _finish(result) -> Any:
    if isinstance(result, Done):
        return result.value
    if isinstance(result, Failed):
        raise result.error
    raise EvalError("the program suspended, but no host is there to resume it "
                    f"(request: {result.request!r})")


def exec_file(source: str, filename: str = "<file>", *, predeclared: dict | None = None,
              loader: Callable[[str], dict] | None = None, max_steps: int | None = None,
              print: Callable[[str], None] | None = None) -> dict:
    """Run a module to its end and return its (frozen) globals.

    Top-level Starlark functions come back wrapped as `Function` so that a
    Python caller gets a StarlarkError for bad arguments too; a loader should
    hand other modules `start(...).run().value` (plain values) instead.
    """
    globals_ = _finish(start(source, filename, predeclared=predeclared, loader=loader,
                             max_steps=max_steps, print=print).run())
    return {k: Function(v) if is_function(v) else v for k, v in globals_.items()}


class Function:
    """A Starlark function handed to Python: calling it never raises anything
    but StarlarkError (argument mismatches included)."""

    __slots__ = ("__wrapped__",)

    def __init__(self, fn: Callable):
        self.__wrapped__ = fn

    @property
    def __name__(self) -> str:
        return STARLARK_FUNCTIONS[self.__wrapped__.__code__].name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from .thread import _conv, release_locks
        try:
            return self.__wrapped__(*args, **kwargs)
        except StarlarkError as e:
            release_locks(e.__traceback__)
            raise
        except Exception as e:
            release_locks(e.__traceback__)
            # The Starlark traceback is read lazily from the exception's Python
            # traceback, which gains the caller's frames as it propagates.
            raise _conv(e) from None

    def __repr__(self) -> str:
        return f"<function {self.__name__}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Function) and other.__wrapped__ is self.__wrapped__

    def __hash__(self) -> int:
        return hash(self.__wrapped__)

    def __reduce__(self):
        return (Function, (self.__wrapped__,))


def eval_expr(source: str, *, predeclared: dict | None = None, max_steps: int | None = None,
              print: Callable[[str], None] | None = None) -> Any:
    """Evaluate one Starlark expression and return its value."""
    module = new_module(source, "<expr>", predeclared, None, eval_mode=True)
    return _finish(Thread(module, max_steps=max_steps, print=print).run())


def is_function(value: Any) -> bool:
    """Is `value` a Starlark function (as opposed to a builtin or other value)?"""
    value = getattr(value, "__wrapped__", value)
    return getattr(value, "__code__", None) in STARLARK_FUNCTIONS
