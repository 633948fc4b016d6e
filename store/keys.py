"""Key layouts of the named databases.

Ids are UTF-8 strings without NUL; a NUL ends an id inside a composite key so that a
prefix scan for ``id + NUL`` finds exactly that id's entries. Numbers are fixed-width
big-endian so that LMDB's byte order is numeric order.
"""

from __future__ import annotations

import struct

from .errors import StoreError

SEP = b"\x00"
MAX_ID_BYTES = 200  # LMDB keys are at most 511 bytes; composite keys hold two ids

_U64 = struct.Struct(">Q")
# Ids seen valid, with their bytes: a step encodes the same few ids several times.
# Emptied when full, so that it holds the ids in use now, not the first ones seen.
_ENCODED: dict[str, bytes] = {}
_ENCODED_MAX = 100_000


def enc_id(value: str, what: str = "id") -> bytes:
    b = _ENCODED.get(value) if type(value) is str else None
    if b is not None:
        return b
    if not isinstance(value, str) or not value:
        raise StoreError(f"{what} must be a non-empty string, not {value!r}")
    b = value.encode("utf-8")
    if SEP in b:
        raise StoreError(f"{what} must not contain NUL: {value!r}")
    if len(b) > MAX_ID_BYTES:
        raise StoreError(f"{what} is longer than {MAX_ID_BYTES} bytes: {value[:40]!r}...")
    if len(_ENCODED) >= _ENCODED_MAX:
        _ENCODED.clear()
    _ENCODED[value] = b
    return b


def u64(n: int) -> bytes:
    if n < 0:
        raise StoreError(f"sequence numbers must be >= 0, not {n}")
    return _U64.pack(n)


def read_u64(b: bytes, offset: int = 0) -> int:
    return _U64.unpack_from(b, offset)[0]


def prefix(id_: str) -> bytes:
    """All keys of one owner: ``id NUL``."""
    return enc_id(id_) + SEP


def id_seq(id_: str, seq: int) -> bytes:
    """``id NUL seq`` — journal, intents, inbox entries, output chunks, batch items."""
    return enc_id(id_) + SEP + u64(seq)


def split_id_seq(key: bytes) -> tuple[str, int]:
    i = key.index(SEP)
    return key[:i].decode("utf-8"), read_u64(key, i + 1)


def pair(a: str, b: str) -> bytes:
    """``a NUL b`` — index entries (children of a flow, flows of a run, ...)."""
    return enc_id(a) + SEP + enc_id(b)


def split_pair(key: bytes) -> tuple[str, str]:
    i = key.index(SEP)
    return key[:i].decode("utf-8"), key[i + 1:].decode("utf-8")


def time_ns(t: float) -> int:
    return max(0, int(round(t * 1e9)))


def timer_key(due: float, flow_id: str, seq: int) -> bytes:
    """``due_ns flow NUL seq`` — due-time order, ties broken by flow and action."""
    return _U64.pack(time_ns(due)) + enc_id(flow_id) + SEP + u64(seq)


def split_timer_key(key: bytes) -> tuple[float, str, int]:
    due = read_u64(key) / 1e9
    flow, seq = split_id_seq(key[8:])
    return due, flow, seq


def created_key(created: float, id_: str) -> bytes:
    """``created_ns id`` — runs in creation order."""
    return _U64.pack(time_ns(created)) + enc_id(id_)


def state_created_key(state: str, created: float, id_: str) -> bytes:
    """``state NUL created_ns id`` — runs of one state in creation order."""
    return state.encode() + SEP + _U64.pack(time_ns(created)) + enc_id(id_)


def next_prefix(p: bytes) -> bytes | None:
    """The smallest key greater than every key starting with ``p`` (None: no bound)."""
    b = bytearray(p)
    while b:
        if b[-1] < 0xFF:
            b[-1] += 1
            return bytes(b)
        b.pop()
    return None
