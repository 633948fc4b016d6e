"""Flowmetal's durable runtime: FlowActors, resource actors, a Supervisor and worker
processes on pykka, applying DESIGN.md's durability protocol on top of `store/`.

Public entry points: `Runtime` (create, resume and watch runs), `home_dir()` (where
the store lives), `result_of()` (the root Result of a finished run).
"""

from .home import home_dir

__all__ = ["Runtime", "RunWatch", "RunError", "RunClaimed", "HomeUnusable", "home_dir", "new_run_id", "result_of"]


def __getattr__(name: str):
    # Loaded on first use: the runtime pulls in the whole language, which commands
    # that only read the store (`flowmetal list`) must not pay for at start-up.
    if name in __all__:
        from . import runtime
        return getattr(runtime, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
