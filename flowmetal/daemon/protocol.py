"""The daemon's wire protocol: length-prefixed JSON frames over a Unix socket.

A frame is a 4-byte big-endian payload length followed by that many bytes of UTF-8
JSON. Frames are capped at `MAX_FRAME` bytes in both directions; nothing read from
the socket is ever unpickled — JSON only, so a peer can at worst send bad data.

A request is an object ``{"op": NAME, ...}``. Every request gets one reply object
``{"ok": true, ...}`` or ``{"ok": false, "error": TEXT, "kind": KIND}``, except the
streaming ones (``wait`` and ``submit`` with ``"wait": true``), which answer with any
number of ``{"event": "out", "text": ..., "stream": ...}`` frames and then one final
frame with ``"event": "end"``. Replies on one connection come in request order, so a
client may pipeline requests.

Error kinds let the client pick its exit status: ``usage`` and ``syntax`` (2),
everything else (1).

A frame's JSON nests at most `MAX_DEPTH` arrays/objects deep: a deeper one is
answered with a (recoverable) protocol error before it is decoded, so no peer can
make a reader run out of Python recursion.
"""

from __future__ import annotations

import json
import os
import socket
import struct
from typing import Any

from ..jsondepth import nesting_exceeds

MAX_FRAME = 16 * 1024 * 1024
# Far below what `json` can decode in any thread (Python's default recursion limit is
# 1000), far above what any request needs (a `flowmetal send` message nests <= 100).
MAX_DEPTH = 500
_HEADER = struct.Struct(">I")
SOCKET_NAME = "daemon.sock"
LOCK_NAME = "daemon.lock"
LOG_NAME = "daemon.log"


class ProtocolError(Exception):
    """A frame that breaks the protocol (too big, not JSON, not an object)."""

    def __init__(self, message: str, *, fatal: bool = False):
        super().__init__(message)
        # fatal: the stream cannot be resynchronised (the length was bad), so the
        # connection must be closed after the error reply.
        self.fatal = fatal


class PeerClosed(Exception):
    """The peer closed the connection (possibly in the middle of a frame)."""


def encode_frame(obj: Any) -> bytes:
    """One frame holding ``obj`` as JSON (raises ProtocolError if it is too big, or
    too deep to encode)."""
    try:
        data = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except RecursionError:
        raise ProtocolError("frame is nested too deeply to encode") from None
    except UnicodeEncodeError:   # a lone surrogate: bytes that were never UTF-8
        raise ProtocolError("frame holds text that is not valid UTF-8") from None
    if len(data) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(data)} bytes exceeds the {MAX_FRAME}-byte cap")
    return _HEADER.pack(len(data)) + data


def send_frame(sock: socket.socket, obj: Any) -> None:
    sock.sendall(encode_frame(obj))


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = sock.recv(min(n - len(buf), 1 << 20))
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            raise PeerClosed("connection closed mid-frame" if buf else "connection closed")
        buf += chunk
    return bytes(buf)


def recv_frame(sock: socket.socket, max_size: int = MAX_FRAME) -> Any:
    """Read one frame and decode its JSON. Raises PeerClosed at EOF and ProtocolError
    for an oversized (fatal) or undecodable (recoverable) frame."""
    try:
        header = _recv_exact(sock, _HEADER.size)
    except PeerClosed as e:
        raise PeerClosed(str(e)) from None
    (n,) = _HEADER.unpack(header)
    if n > max_size:
        raise ProtocolError(f"frame of {n} bytes exceeds the {max_size}-byte cap", fatal=True)
    data = _recv_exact(sock, n)
    # The whole frame has been read, so an error here leaves the stream in step.
    if nesting_exceeds(data, MAX_DEPTH):
        raise ProtocolError(f"frame is nested more than {MAX_DEPTH} levels deep")
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ProtocolError(f"frame is not JSON: {e}") from None
    except RecursionError:
        raise ProtocolError("frame is nested too deeply") from None


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a Unix socket (SO_PEERCRED), or
    None where the platform cannot tell."""
    opt = getattr(socket, "SO_PEERCRED", None)
    if opt is None:
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, opt, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


def peer_allowed(peer: int | None, own_uid: int | None = None) -> bool:
    """Whether a peer of uid ``peer`` may talk to a daemon running as ``own_uid``
    (default: this process's effective uid). Unknown credentials are refused."""
    if own_uid is None:
        own_uid = os.geteuid()
    return peer is not None and peer == own_uid


def error_reply(message: str, kind: str = "error") -> dict:
    return {"ok": False, "error": message, "kind": kind}
