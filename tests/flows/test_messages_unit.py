"""Unit tests of message encoding and of the inbox router on a real store."""

from __future__ import annotations

import threading
import time

import pytest

from actors.codec import outcome_from_record
from actors.inbox import InboxError, InboxRouter
from flowmetal.actor_prelude import (EVENT_END, Inbox, MessageError, decode_message,
                                     encode_message)
from flowmetal.prelude import Handle
from flowmetal.secrets import Secret
from flowmetal.starlark import exec_file, struct
from store import Batch, Store


def test_round_trip():
    msg = {"n": 1, "t": (1, "a"), "reply_to": Inbox("r1"), "l": [None, True, 2.5, b"x"],
           "s": struct(a=1)}
    plain = encode_message(msg)
    assert plain["reply_to"] == ("inbox", "r1")
    assert decode_message(plain) == msg


def test_starlark_values_round_trip():
    g = exec_file('m = {"k": [1, 2], (1, 2): set([3])}\n')
    assert decode_message(encode_message(g["m"])) == {"k": [1, 2], (1, 2): g["m"][(1, 2)]}


@pytest.mark.parametrize("value, msg", [
    ({"f": len}, r"functions cannot be sent: found .* at msg\[\"f\"\]"),
    ([Handle("r1.1", "pong")], r"send handle.inbox instead"),
    ({"k": Secret("X")}, r"secrets cannot be sent"),
])
def test_refused(value, msg):
    with pytest.raises(MessageError, match=msg):
        encode_message(value)


def test_cycle_is_refused():
    g = exec_file("l = []\nl.append(l)\n")
    with pytest.raises(MessageError, match="nests deeper"):
        encode_message(g["l"])


@pytest.fixture
def store(tmp_path):
    st = Store.open(tmp_path, sync=False)
    st.commit(Batch().create_run("r", file="x", root_flow="r")
              .create_flow("r", run_id="r", name="main", state="running")
              .create_flow("r.1", run_id="r", name="srv", parent="r", state="running"))
    yield st
    st.close()


class Resumes:
    def __init__(self):
        self.got = []
        self.event = threading.Event()

    def __call__(self, flow_id, seq, outcome):
        self.got.append((flow_id, seq, outcome))
        self.event.set()


def test_send_then_receive_in_order(store):
    res = Resumes()
    router = InboxRouter(store, res, poll=None)
    for i in range(3):
        assert router.send("r", 10 + i, "r.1", {"n": i}) == ("ok", None)
    assert router.send("r", 10, "r.1", {"n": 0}) == ("ok", None)   # re-issued: no dup
    assert store.inbox_count("r.1") == 3
    for i in range(3):
        router.wait("r.1", 5 + i)
        assert res.got[-1] == ("r.1", 5 + i, ("ok", {"n": i}))
        j = store.get_journal("r.1", 5 + i)
        assert outcome_from_record(j.result) == ("ok", {"n": i})
    assert store.inbox_count("r.1") == 0


def test_waiting_flow_is_woken_and_timeout_races(store):
    res = Resumes()
    router = InboxRouter(store, res, poll=None)
    router.wait("r.1", 1, due=time.time() + 60)
    assert res.got == []
    router.send("r", 2, "r.1", "hi")
    assert res.got == [("r.1", 1, ("ok", "hi"))]
    assert router.timed_out("r.1", 1) is False      # the message won
    router.wait("r.1", 2, due=time.time())
    assert router.timed_out("r.1", 2) is True
    assert res.got[-1] == ("r.1", 2, ("ok", None))


def test_closed_inbox(store):
    res = Resumes()
    router = InboxRouter(store, res, poll=None)
    router.send("r", 1, "r.1", "last")
    assert router.close_inbox("r.1") == ("ok", None)
    kind, msg = router.send("r", 2, "r.1", "late")
    assert kind == "err" and "inbox of flow r.1 is closed" in msg
    router.wait("r.1", 1, dispatch=True)          # queued messages stay readable
    assert res.got[-1][2] == ("ok", "last")
    router.wait("r.1", 2, dispatch=True)          # then the event loop ends
    assert res.got[-1][2] == ("ok", EVENT_END)
    router.wait("r.1", 3)                          # a plain receive gets an error
    assert res.got[-1][2][0] == "err"
    with pytest.raises(InboxError, match="closed"):
        router.deliver_external("r.1", {"x": 1})
    with pytest.raises(InboxError, match="no flow"):
        router.deliver_external("nope", {"x": 1})


def test_poll_sees_other_writers(store):
    res = Resumes()
    router = InboxRouter(store, res, poll=0.05)
    try:
        router.wait("r.1", 1)
        store.commit(Batch().inbox_append("r.1", "from outside"))
        assert res.event.wait(5)
        assert res.got == [("r.1", 1, ("ok", "from outside"))]
    finally:
        router.close()
