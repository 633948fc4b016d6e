"""Giving memory back to the operating system when the runtime goes idle.

A burst of flows (thousands started at once, then asleep) leaves the C heap
full of freed blocks that glibc keeps for reuse; the flows themselves now live
in the store. `release_free_memory` asks glibc to return those pages
(`malloc_trim`), at most once per `MIN_INTERVAL` seconds. Elsewhere it is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
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
