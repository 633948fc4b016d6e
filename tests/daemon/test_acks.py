"""How a daemon connection holds back the replies to pipelined submissions: while the
client has more requests queued (up to `MAX_ACKS` of them), then all at once, in
request order. Driven through `Daemon._serve_conn` on a socket pair, with a stand-in
for the submit op, so that when each reply left can be observed exactly."""

from __future__ import annotations

import socket
import threading

import pytest

from flowmetal.daemon import protocol as P
from flowmetal.daemon import server as S


class _Ack:
    """A submission's reply, ready at once (the run is durable)."""

    def __init__(self, n: int):
        self.n = n

    def reply(self) -> dict:
        return {"ok": True, "n": self.n}


def _serve(monkeypatch: pytest.MonkeyPatch, requests: int, half_close: bool) -> tuple:
    """Send `requests` submissions in one burst; returns (replies in arrival order,
    replies sent before each request was handled)."""
    srv = S.Daemon.__new__(S.Daemon)   # only what `_serve_conn` uses
    srv._wlock = threading.Lock()
    srv.conns = set()
    srv.stopping = threading.Event()
    sent: list[int] = []
    sent_before: list[int] = []
    monkeypatch.setattr(srv, "_check_peer", lambda conn: True, raising=False)
    real_reply = S.Daemon._reply

    def reply(conn, obj):
        sent.append(obj["n"])
        real_reply(srv, conn, obj)
    monkeypatch.setattr(srv, "_reply", reply, raising=False)

    def handle(conn, req, acks):
        sent_before.append(len(sent))
        acks.append(_Ack(req["n"]))
        return True
    monkeypatch.setattr(srv, "handle", handle, raising=False)
    client, conn = socket.socketpair()
    with client:
        client.sendall(b"".join(P.encode_frame({"op": "submit", "n": i})
                                for i in range(requests)))
        if half_close:
            client.shutdown(socket.SHUT_WR)
        t = threading.Thread(target=srv._serve_conn, args=(conn,), daemon=True)
        t.start()
        client.settimeout(10)
        got = [P.recv_frame(client)["n"] for _ in range(requests)]
        srv.stopping.set()
    t.join(10)
    return got, sent_before


def test_replies_wait_while_more_is_queued_and_go_out_in_order_every_max_acks(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(S, "MAX_ACKS", 4)
    got, sent_before = _serve(monkeypatch, 10, half_close=True)
    assert got == list(range(10))
    # Held while the burst was still queued, four at a time; the last two at the end.
    assert sent_before == [0, 0, 0, 0, 4, 4, 4, 4, 8, 8]


def test_held_replies_go_out_once_the_client_has_nothing_more_queued(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The client neither closes nor sends more: it waits, and gets all its replies.
    got, sent_before = _serve(monkeypatch, 6, half_close=False)
    assert got == list(range(6))
    assert sent_before == [0] * 6
