"""Flowmetal's durable runtime: FlowActors, resource actors, a Supervisor and worker
processes on pykka, applying DESIGN.md's durability protocol on top of `store/`.

Public entry points: `Runtime` (create, resume and watch runs), `home_dir()` (where
the store lives), `result_of()` (the root Result of a finished run).
"""

from .home import home_dir
from .runtime import RunError, Runtime, RunWatch, new_run_id, result_of

__all__ = ["Runtime", "RunWatch", "RunError", "home_dir", "new_run_id", "result_of"]
