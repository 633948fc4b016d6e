"""Errors and the suspension signal of the Starlark dialect.

`StarlarkError` is the one exception type a host ever needs to catch: syntax,
resolve and runtime errors all derive from it. `EvalError` is what the value
library and builtins raise for a failed operation; the compiled code's error
handling turns every other Python exception into one, so the position and the
Starlark traceback can be attached. `Suspend` is the signal a host builtin
raises to stop the running program; it derives from BaseException so that no
`except Exception` on the way swallows it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Frame:
    """One line of a Starlark traceback."""

    filename: str
    line: int
    col: int
    function: str

    def __str__(self) -> str:
        return f"{self.filename}:{self.line}:{self.col} in {self.function}"


class StarlarkError(Exception):
    """Any error of a Starlark program: syntax, resolution or evaluation.

    `.msg` is the bare message, `.filename`, `.line`, `.col` the position of
    the error (line and column are 1-based; 0 when unknown), `.stack` the
    Starlark traceback, outermost frame first. `str(err)` renders all of it.
    """

    # Frames of a module that failed while `load()` ran it: they follow the frames
    # of the load itself in this error's traceback.
    loaded: tuple = ()

    def __init__(self, msg: str, filename: str = "", line: int = 0, col: int = 0,
                 stack: list[Frame] | None = None):
        super().__init__(msg)
        self.msg = msg
        self.filename = filename
        self.line = line
        self.col = col
        self._stack = stack

    @property
    def stack(self) -> list[Frame]:
        if self._stack is None:
            # Computed lazily from the Python traceback the error travelled
            # through: only the compiled Starlark frames on it are kept.
            from . import thread as _thread
            self._stack = _thread.starlark_stack(self.__traceback__) + list(self.loaded)
            if self._stack and not self.filename:
                top = self._stack[-1]
                self.filename, self.line, self.col = top.filename, top.line, top.col
        return self._stack

    @stack.setter
    def stack(self, frames: list[Frame]) -> None:
        self._stack = frames
        if frames and not self.filename:
            top = frames[-1]
            self.filename, self.line, self.col = top.filename, top.line, top.col

    def position(self) -> str:
        self.stack  # fills the position from the traceback when it is unset
        if not self.filename:
            return ""
        if self.line:
            return f"{self.filename}:{self.line}:{self.col}"
        return self.filename

    def __str__(self) -> str:
        stack = self.stack
        lines = []
        if stack:
            lines.append("Traceback (most recent call last):")
            lines.extend(f"  {f}" for f in stack)
            lines.append(f"Error: {self.msg}")
            return "\n".join(lines)
        pos = self.position()
        return f"{pos}: {self.msg}" if pos else self.msg

    def __reduce__(self):
        return (_rebuild_error, (type(self), self.msg, self.filename, self.line,
                                 self.col, list(self.stack)))


def _rebuild_error(cls, msg, filename, line, col, stack):
    err = cls.__new__(cls)
    StarlarkError.__init__(err, msg, filename, line, col, stack)
    return err


class StarlarkSyntaxError(StarlarkError):
    """A program that does not parse, or uses syntax outside the dialect.

    `str()` shows `file:line:col: message`, the source line and a caret.
    """

    def __init__(self, msg: str, filename: str, line: int, col: int, source_line: str = ""):
        super().__init__(msg, filename, line, col, stack=[])
        self.source_line = source_line

    def __str__(self) -> str:
        head = f"{self.filename}:{self.line}:{self.col}: {self.msg}"
        if not self.source_line:
            return head
        text = self.source_line.rstrip("\n")
        stripped = text.lstrip()
        indent = len(text) - len(stripped)
        caret = " " * max(0, self.col - 1 - indent)
        return f"{head}\n    {stripped}\n    {caret}^"

    def __reduce__(self):
        return (_rebuild_syntax_error, (type(self), self.msg, self.filename, self.line,
                                        self.col, self.source_line))


def _rebuild_syntax_error(cls, msg, filename, line, col, source_line):
    return cls(msg, filename, line, col, source_line)


class ResolveError(StarlarkSyntaxError):
    """A static name-resolution error (`undefined: x`), found before anything runs."""


class EvalError(StarlarkError):
    """A failed operation at run time, raised by builtins and the value library."""


class Suspend(BaseException):
    """Raised by a host builtin to suspend the running Starlark program.

    `.request` is handed to the host as `Suspended(request)`; the host later
    continues the program with `Thread.resume(value)`, which becomes the
    result of the suspended call.
    """

    def __init__(self, request=None):
        super().__init__(request)
        self.request = request
