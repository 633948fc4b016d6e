"""Inboxes and messages end to end: pingpong, kill -9 between messages, event flows
driven by `flowmetal send`, receive timeouts, and the bad-input cases."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .conftest import FILES, ROOT, Background, fm, run_ids

PINGPONG = ROOT.parent / "shared" / "examples" / "pingpong.flow"
EXPECTED = ["ping 0 -> pong 1", "ping 1 -> pong 2", "ping 2 -> pong 3"]


@pytest.mark.skipif(not PINGPONG.exists(), reason="shared examples not present")
def test_pingpong_example(home: Path) -> None:
    r = fm(home, "run", str(PINGPONG))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == EXPECTED + ["Ok(None)"]


def test_pingpong_survives_kill9_between_messages(home: Path) -> None:
    flow = str(FILES / "pingpong_slow.flow")
    p = Background(home, "run", flow)
    p.wait_line(lambda s: s == EXPECTED[0])
    p.kill9()
    [rid] = run_ids(home)
    # Resume, and kill again after the second reply.
    p = Background(home, "resume", rid)
    p.wait_line(lambda s: s == EXPECTED[1])
    p.kill9()
    r = fm(home, "resume", rid)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    # The whole output, each line once, the counter never reset.
    assert lines[:3] == EXPECTED
    assert lines[3] == "Ok(None)"


def test_event_flow_driven_by_flowmetal_send(home: Path) -> None:
    p = Background(home, "run", str(FILES / "inbox_cases.flow"), "--flow", "counter")
    deadline = time.monotonic() + 20
    while not run_ids(home):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    [rid] = run_ids(home)
    for msg in ('{"add": 2}', '{"add": 5}'):
        r = fm(home, "send", rid, msg)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(f"sent to flow {rid}")
    # Idempotent by --id: the second send with the same id delivers nothing.
    assert fm(home, "send", rid, '{"add": 10}', "--id", "x1").returncode == 0
    r = fm(home, "send", rid, '{"add": 10}', "--id", "x1")
    assert r.returncode == 0 and "delivered before" in r.stdout
    # ... but the same id for a different message is an error, and delivers nothing.
    r = fm(home, "send", rid, '{"add": 99}', "--id", "x1")
    assert r.returncode == 1 and "used before, for a different message" in r.stderr, r
    p.wait_line(lambda s: s == "got 10, total 17")
    p.kill9()   # state survives a kill between dispatches
    p = Background(home, "resume", rid)
    p.wait_line(lambda s: s == "got 10, total 17")
    assert fm(home, "send", rid, '{"add": 1}').returncode == 0
    assert fm(home, "send", rid, '{"stop": true}').returncode == 0
    code, lines = p.finish()
    assert code == 0
    assert lines == ["got 2, total 2", "got 5, total 7", "got 10, total 17",
                     "got 1, total 18", "total 18", "Ok(18)"]
    # The inbox is closed now: the sender hears it; bad JSON is a usage error.
    r = fm(home, "send", rid, '{"add": 1}')
    assert r.returncode == 1 and "closed" in r.stderr and "Traceback" not in r.stderr
    # ... but a retry of a message it took is answered as delivered, not as a failure.
    r = fm(home, "send", rid, '{"add": 10}', "--id", "x1")
    assert r.returncode == 0 and "delivered before" in r.stdout, r
    r = fm(home, "send", rid, "{nope")
    assert r.returncode == 2 and "not valid JSON" in r.stderr
    r = fm(home, "send", "r-no-such-run", "1")
    assert r.returncode == 2 and "no run or flow" in r.stderr


@pytest.mark.parametrize("flow, code, expect", [
    ("timeout", 0, "Ok(None)"),
    ("self_send", 0, 'Ok([(1, "two"), "hi", True])'),
    ("closed", 1, "is closed"),
    ("unsendable", 1, "functions cannot be sent"),
])
def test_inbox_cases(home: Path, flow: str, code: int, expect: str) -> None:
    r = fm(home, "run", str(FILES / "inbox_cases.flow"), "--flow", flow)
    assert r.returncode == code, r.stdout + r.stderr
    assert expect in r.stdout
    assert 'File "' not in r.stdout + r.stderr   # a Starlark traceback at most
