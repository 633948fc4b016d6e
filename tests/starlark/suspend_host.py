"""Host builtins for the suspension tests (importable, so pickles refer to them).

`act(x)` is the action: in direct mode it answers at once, in suspending mode
it raises Suspend (in parking mode it parks) and the test driver answers with the
same value, so a run interrupted at every action must behave exactly like an
uninterrupted one.
"""

from flowmetal.starlark import Suspend, park, struct

MODE = {"suspend": False, "park": False}


def answer(x):
    """What an action on `x` returns."""
    if isinstance(x, int):
        return x * 10 + 1
    return ("done", x)


def act(x=0):
    if MODE["park"]:
        return park(x)
    if MODE["suspend"]:
        raise Suspend(x)
    return answer(x)


tools = struct(act=act)
