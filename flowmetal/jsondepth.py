"""How deep a JSON text nests, found without decoding it.

`json` decodes by recursion, and a value that nests deeper than a few hundred levels
can be neither decoded nor stored (pickled) reliably; a peer or a user can send one.
Every place that takes JSON from outside (`--arg` values, `send` messages, batch
inputs, daemon frames) asks `nesting_exceeds` first and refuses a deeper text with a
one-line error.
"""

from __future__ import annotations

import itertools
import re

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
