"""How deep a JSON text nests, found without decoding it.

`json` decodes by recursion, and a value that nests deeper than a few hundred levels
can be neither decoded nor stored (pickled) reliably; a peer or a user can send one.
Every place that takes JSON from outside (`--arg` values, `send` messages, batch
inputs, daemon frames) asks `nesting_exceeds` first and refuses a deeper text with a
one-line error.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from typing import Any

MAX_JSON_DEPTH = 100
"""How deep a flow argument or a message may nest (far more than any real one)."""

# A JSON string with escapes (an unterminated one runs to the end of the text).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?', re.S)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = {91: 1, 123: 1, 93: -1, 125: -1}   # [ { ] }


def nesting_exceeds(text: str | bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON ``text`` nests arrays and objects more than ``limit`` deep
    (brackets inside strings do not count). Iterative, so safe on any input."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if data.count(b"[") + data.count(b"{") <= limit:
        return False  # the common case, decided without a scan
    if b'\\"' in data:
        data = _STRING.sub(b"", data)
    else:  # no escaped quote: every other quote ends a string (much faster)
        data = b"".join(data.split(b'"')[::2])
    steps = map(_STEP.__getitem__, data.translate(None, _NOT_BRACKETS))
    return max(itertools.accumulate(steps), default=0) > limit


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (numbers must be finite)")


def _finite(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise ValueError(f"{text} is out of range for a number")
    return v


def loads_strict(text: str | bytes) -> Any:
    """`json.loads`, but refusing what JSON (RFC 8259) does not have and Python's
    decoder lets through: NaN, Infinity, and numbers too large for a float (1e400
    decodes as infinity). ValueError for those as for any bad text."""
    return json.loads(text, parse_constant=_no_constant, parse_float=_finite)
