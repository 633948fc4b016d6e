"""The per-OS-thread execution context of running Starlark code.

Builtins that need the host (``print``) or the limits (the step budget) read
them from here; `Thread.run` installs the thread's context for the duration of
a run. Code run outside any Thread (a Starlark function called straight from
Python) gets a default context that prints to stdout.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
from typing import Callable

from .errors import EvalError

DEFAULT_MAX_STEPS = 200_000_000
"""Default step budget: loop iterations plus loop entries, about 10 s of work."""

STEP_CHUNK = 256
"""Loops count iterations in a frame-local countdown and draw from the budget in
chunks; a frame gives back what it did not use when it returns. So a budget of N
allows N iterations, less what the frames on the stack hold (under 256 each)."""


def _stdout_print(text: str) -> None:
    sys.stdout.write(text + "\n")


class Context:
    """What running code may ask of its host: printing and the step budget."""

    __slots__ = ("print", "steps_left", "max_steps", "parker")

    def __init__(self, print: Callable[[str], None] | None = None,
                 max_steps: int = DEFAULT_MAX_STEPS):
        self.print = print or _stdout_print
        self.max_steps = max_steps
        self.steps_left = max_steps
        # The greenlet running a parkable Thread (see `thread.park`), else None.
        self.parker = None


_local = threading.local()


def current() -> Context:
    """The context of the Starlark code running on this OS thread."""
    ctx = getattr(_local, "ctx", None)
    if ctx is None:
        ctx = _local.ctx = Context()
    return ctx


def install(ctx: Context | None) -> Context | None:
    """Make `ctx` current on this OS thread; returns the previous one."""
    prev = getattr(_local, "ctx", None)
    _local.ctx = ctx
    return prev


def draw_steps(n: int = STEP_CHUNK) -> int:
    """A loop's tick found its frame's steps spent: take up to `n` more from the
    current budget (what is left, near its end). Returns how many the frame may
    still take, the one ticking now excluded; an exhausted budget is an error."""
    ctx = current()
    left = ctx.steps_left
    if left <= 0:
        raise EvalError(f"step budget exhausted ({ctx.max_steps} steps): "
                        "the program runs too long (a runaway loop or recursion?)")
    if n > left >> 4:
        # Near the end, small draws: a frame's unused steps are not its callees'.
        n = max(1, left >> 4)
    ctx.steps_left = left - n
    return n - 1


# Function calls a module draws from the budget at a time (each call takes a step):
# few, since what a module holds unused when its flow is checkpointed is not given
# back, yet enough that the draw's cost is spread thin.
CALL_CHUNK = 16


def draw_calls() -> int:
    """A function call found its module's drawn calls spent: draw more (see
    `draw_steps`; an exhausted budget is an error, as for loops)."""
    return draw_steps(CALL_CHUNK)


def charge_steps(n: int) -> None:
    """Take exactly `n` steps from the current budget (a comprehension's length,
    charged up front); more than is left is an error."""
    ctx = current()
    ctx.steps_left -= n
    if ctx.steps_left < 0:
        ctx.steps_left = 0
        raise EvalError(f"step budget exhausted ({ctx.max_steps} steps): "
                        "the program runs too long (a runaway loop or recursion?)")


def refund_steps(k: int) -> None:
    """A frame returns the steps it drew and did not take (see `draw_steps`)."""
    if k > 0:
        current().steps_left += k


# A program may allocate many values each under the per-value size cap; what
# must never happen is that it takes the host's memory. Large allocations
# (checked only from MEMORY_CHECK_MIN elements up, so small ones cost nothing)
# first look at the process's size against a limit.
MEMORY_CHECK_MIN = 1 << 20
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _memory_limit() -> int:
    env = os.environ.get("FLOWMETAL_MEMORY_LIMIT_MB")
    if env and env.isdigit():
        return int(env) << 20
    return 4 << 30


def check_memory(nbytes: int) -> None:
    """Refuse an allocation of about `nbytes` that would take the process past
    its memory limit (4 GiB resident by default, and short of any RLIMIT_AS)."""
    try:
        with open("/proc/self/statm") as f:
            size, resident = (int(x) * _PAGE for x in f.read().split()[:2])
    except (OSError, ValueError):
        return
    if resident + nbytes > _memory_limit():
        raise EvalError(f"memory limit exceeded: allocating {nbytes >> 20} MiB more "
                        f"would pass {_memory_limit() >> 20} MiB")
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (OSError, ValueError):
        return
    if soft != resource.RLIM_INFINITY and size + 2 * nbytes > soft:
        raise EvalError(f"memory limit exceeded: allocating {nbytes >> 20} MiB more "
                        "would pass the process's address-space limit")
