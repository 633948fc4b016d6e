"""The daemon with inboxes: `flowmetal send` through its socket, a receive nobody
answers (durable across a daemon kill; `cancel` ends it), quotas that end one flow
and leave the daemon and other flows alone."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.daemon.conftest import DaemonProc

from .conftest import FILES, fm

FLOWS = str(FILES / "inbox_cases.flow")


@pytest.fixture
def daemon(home: Path):
    d = DaemonProc(home, workers=1).start()
    yield d
    d.stop()


def _state(home: Path, rid: str) -> str:
    r = fm(home, "status", rid, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["state"]


def _wait_state(home: Path, rid: str, want: set, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        s = _state(home, rid)
        if s in want or time.monotonic() > deadline:
            return s
        time.sleep(0.1)


def test_send_through_the_daemon(home: Path, daemon: DaemonProc) -> None:
    r = fm(home, "submit", FLOWS, "--flow", "counter")
    assert r.returncode == 0, r.stderr
    rid = r.stdout.strip()
    for msg in ('{"add": 3}', '{"add": 4}'):
        r = fm(home, "send", rid, msg, "--id", f"m{msg}")
        assert r.returncode == 0, r.stderr
    # The same id for another message is refused, not dropped as a duplicate.
    r = fm(home, "send", rid, '{"add": 5}', "--id", 'm{"add": 4}')
    assert r.returncode == 1 and "used before, for a different message" in r.stderr, r
    assert fm(home, "send", rid, '{"stop": true}').returncode == 0
    assert _wait_state(home, rid, {"ok", "err"}) == "ok"
    r = fm(home, "logs", rid)
    assert r.stdout.splitlines() == ["got 3, total 3", "got 4, total 7", "total 7"]
    r = fm(home, "send", rid, '{"add": 1}')
    assert r.returncode == 1 and "closed" in r.stderr


def test_unanswered_receive_waits_durably_and_cancel_ends_it(home: Path,
                                                              daemon: DaemonProc) -> None:
    r = fm(home, "submit", FLOWS, "--flow", "forever")
    rid = r.stdout.strip()
    assert _wait_state(home, rid, {"waiting"}) == "waiting"
    daemon.kill9()
    daemon.start()
    assert _state(home, rid) == "waiting"
    r = fm(home, "cancel", rid)
    assert r.returncode == 0, r.stderr
    assert _wait_state(home, rid, {"cancelled"}) == "cancelled"
    # A message to a cancelled flow is refused, not lost silently.
    assert fm(home, "send", rid, "1").returncode == 1
    # An id that names nothing is a usage error, as without a daemon.
    r = fm(home, "send", "r-no-such-run", "1")
    assert r.returncode == 2 and "no run or flow" in r.stderr, r


def test_cancel_closes_resources(home: Path, daemon: DaemonProc) -> None:
    r = fm(home, "submit", str(FILES / "resources.flow"), "--flow", "waiting")
    rid = r.stdout.strip()
    assert _wait_state(home, rid, {"waiting"}) == "waiting"
    [m] = list((home / "resources").glob("*.json"))
    work = Path(json.loads(m.read_text())["resources"]["work"]["state"]["path"])
    assert work.is_dir()
    assert fm(home, "cancel", rid).returncode == 0
    deadline = time.monotonic() + 10
    while work.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not work.exists() and not m.exists()


def test_quota_ends_one_flow_only(home: Path) -> None:
    (home / "quotas.toml").write_text("[default]\noutput_bytes_per_run = 500\n")
    d = DaemonProc(home, workers=1).start()
    try:
        loud = fm(home, "submit", str(FILES / "quotas.flow"), "--flow", "chatty").stdout.strip()
        calm = fm(home, "submit", str(FILES / "quotas.flow"), "--flow", "who").stdout.strip()
        assert _wait_state(home, loud, {"ok", "err"}) == "err"
        assert _wait_state(home, calm, {"ok", "err"}) == "ok"
        r = fm(home, "list", "--json")
        rows = {row["id"]: row for row in json.loads(r.stdout)}
        assert "quota exceeded: output bytes per run" in rows[loud]["result"]
        assert fm(home, "status", loud).returncode == 0
        from flowmetal.daemon.client import Client
        with Client.connect(home) as c:
            assert c.ping()["pid"] == d.proc.pid   # the daemon is unaffected
    finally:
        d.stop()
