"""Unit tests of the wire protocol and of the peer credential check (no processes)."""

from __future__ import annotations

import os
import socket
import struct
import threading
from pathlib import Path

import pytest

from flowmetal.daemon import protocol as P


def _pair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)


def test_frame_round_trip() -> None:
    a, b = _pair()
    with a, b:
        P.send_frame(a, {"op": "ping", "x": [1, "é", None]})
        assert P.recv_frame(b) == {"op": "ping", "x": [1, "é", None]}


def test_oversized_frame_is_fatal_without_reading_it() -> None:
    a, b = _pair()
    with a, b:
        a.sendall(struct.pack(">I", P.MAX_FRAME + 1))
        with pytest.raises(P.ProtocolError) as e:
            P.recv_frame(b)
        assert e.value.fatal


def test_encoding_refuses_oversized() -> None:
    with pytest.raises(P.ProtocolError):
        P.encode_frame("x" * (P.MAX_FRAME + 1))


def test_malformed_frame_is_recoverable() -> None:
    a, b = _pair()
    with a, b:
        a.sendall(struct.pack(">I", 5) + b"{nope")
        P.send_frame(a, {"op": "ping"})
        with pytest.raises(P.ProtocolError) as e:
            P.recv_frame(b)
        assert not e.value.fatal
        assert P.recv_frame(b) == {"op": "ping"}   # the stream is still in sync


def test_peer_closed_mid_frame() -> None:
    a, b = _pair()
    with b:
        a.sendall(struct.pack(">I", 100) + b"{\"op\"")
        a.close()
        with pytest.raises(P.PeerClosed):
            P.recv_frame(b)


def test_peer_uid_is_ours_on_a_socketpair() -> None:
    a, b = _pair()
    with a, b:
        assert P.peer_uid(b) == os.geteuid()
        assert P.peer_allowed(P.peer_uid(b))


def test_other_uid_refused() -> None:
    me = os.geteuid()
    assert P.peer_allowed(me, me)
    assert not P.peer_allowed(me + 1, me)
    assert not P.peer_allowed(None, me)


def test_daemon_refuses_a_peer_with_another_uid(tmp_path: Path) -> None:
    """The connection handler itself: a peer whose uid is not the daemon's gets an
    error reply and a closed connection, before any request is read."""
    from flowmetal.daemon.server import Daemon
    d = Daemon(tmp_path / "home")
    d.uid = os.geteuid() + 1          # as if the daemon ran as someone else
    a, b = _pair()
    t = threading.Thread(target=d._serve_conn, args=(b,))
    t.start()
    with a:
        P.send_frame(a, {"op": "ping"})
        reply = P.recv_frame(a)
        assert reply["ok"] is False and reply["kind"] == "denied"
        assert "permission denied" in reply["error"]
        with pytest.raises(P.PeerClosed):
            P.recv_frame(a)
    t.join(5)
    assert not t.is_alive()


def test_a_daemon_that_hangs_up_gets_a_message_not_a_silent_exit(home: Path) -> None:
    from .conftest import fm
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(home / P.SOCKET_NAME))
    srv.listen(5)
    stop = threading.Event()

    def hang_up() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except socket.timeout:
                continue
            c.close()
    t = threading.Thread(target=hang_up, daemon=True)
    t.start()
    try:
        flow = home / "any.flow"
        flow.write_text("def _m(fctx):\n    return 1\n\nm = flow(implementation = _m)\n")
        r = fm(home, "submit", str(flow), "--flow", "m", timeout=60)
    finally:
        stop.set()
        t.join(5)
        srv.close()
    assert r.returncode == 3    # not an Err: nobody knows how the request went
    assert "the daemon closed the connection" in r.stderr, (r.stdout, r.stderr)
