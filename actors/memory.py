"""Memory housekeeping of a runtime process: giving memory back to the operating
system when the runtime goes idle, and keeping the garbage collector's work small.

A burst of flows (thousands started at once, then asleep) leaves the C heap
full of freed blocks that glibc keeps for reuse; the flows themselves now live
in the store. `release_free_memory` asks glibc to return those pages
(`malloc_trim`), at most once per `MIN_INTERVAL` seconds. Elsewhere it is a no-op.

Flows allocate fast, so Python's cyclic collector runs often, and each of its full
passes walks every object the process holds — mostly what it loaded at start-up
(modules, the language, the prelude), which lives as long as the process.
`freeze_startup_objects` takes those out of its walk (bench/runtime.py (b): about
15% more steps/s in-process).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import threading
import time

MIN_INTERVAL = 5.0

_lock = threading.Lock()
_last = 0.0
_trim = None
try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _trim = _libc.malloc_trim
    _trim.argtypes = [ctypes.c_size_t]
    _trim.restype = ctypes.c_int
except (OSError, AttributeError):  # not glibc: nothing to trim
    _trim = None


def release_free_memory(force: bool = False) -> bool:
    """Return freed heap pages to the OS; True if a trim ran."""
    global _last
    if _trim is None:
        return False
    now = time.monotonic()
    with _lock:
        if not force and now - _last < MIN_INTERVAL:
            return False
        _last = now
    _trim(0)
    return True


def freeze_startup_objects() -> int:
    """Exempt every object the process holds now from cyclic garbage collection
    (`gc.freeze`, after one collection); returns how many are frozen. For a process's
    entry point once it has started up (the CLI's `run`/`resume`, the daemon, a
    worker): a frozen object is never collected, even once it is garbage, so never
    call it from code a host process embeds."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
