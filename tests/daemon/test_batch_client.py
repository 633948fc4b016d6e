"""The `flowmetal batch` client: a daemon that goes away mid-batch is waited for (like
`submit --wait` does) and then given up on, and a default `--arg` the flow does not
declare is refused before the batch exists."""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from flowmetal.cli.daemon_cmds import REATTACH_WAIT

from .conftest import CLI, ROOT, env_for, fm
from .test_batch import MIXED, _items

GONE = "the daemon went away"


class _BatchRun:
    """`flowmetal batch run` (not detached) in a subprocess; its stderr collected by
    a thread, line by line."""

    def __init__(self, home: Path, n: int):
        self.home = home
        self.proc = subprocess.Popen(
            CLI + ["batch", MIXED, "--inputs", _items(home, list(range(n))), "--flow",
                   "main", "--concurrency", "2", "--arg", "t=0.3", "--home", str(home)],
            env=env_for(home), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        self.err: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.err.append(line)

    def wait_line(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.err):
            assert self.proc.poll() is None or self.reader.is_alive(), self.err
            assert time.monotonic() < deadline, f"no {text!r} in: {''.join(self.err[-5:])}"
            time.sleep(0.05)

    def batch_id(self) -> str:
        self.wait_line(" items, concurrency ", 60)
        return next(line for line in self.err if " items, concurrency " in line
                    ).split()[1].rstrip(":")

    def finish(self, timeout: float) -> tuple[int, str]:
        # Not communicate(): the reader thread owns stderr (stdout is a few lines).
        self.proc.wait(timeout)
        self.reader.join(10)
        return self.proc.returncode, self.proc.stdout.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@contextlib.contextmanager
def _batch_whose_daemon_went_away(home: Path, daemons) -> Iterator[tuple[_BatchRun, str]]:
    """A waiting `batch run` of 16 items whose daemon is killed midway, once the
    client has said so; yields it and the batch id, and kills the client after."""
    d = daemons()
    run = _BatchRun(home, 16)
    try:
        bid = run.batch_id()
        _kill_mid_batch(home, bid, d)
        run.wait_line(GONE, REATTACH_WAIT)
        yield run, bid
    finally:
        run.kill()


def _kill_mid_batch(home: Path, bid: str, d) -> None:
    """kill -9 the daemon once a few items of batch `bid` are done, not all."""
    from store import Store
    st = Store.open(home, sync=False)
    try:
        deadline = time.monotonic() + 60
        while st.get_batch(bid).meta.get("counts", {}).get("ok", 0) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        d.kill9()
        assert st.get_batch(bid).state not in ("ok", "err"), "the batch ended too soon"
    finally:
        st.close()


@pytest.mark.timeout(240)
def test_batch_run_follows_a_daemon_that_comes_back(home: Path, daemons) -> None:
    with _batch_whose_daemon_went_away(home, daemons) as (run, bid):
        gone = next(i for i, line in enumerate(run.err) if GONE in line)
        assert f"batch {bid} goes on when a daemon is started again" in run.err[gone]
        assert f"flowmetal daemon --home {home}" in run.err[gone]
        daemons()
        code, out = run.finish(180)
    assert code == 0, "".join(run.err)
    assert f"batch {bid}: ok: 16 ok, 0 failed of 16" in out
    assert sum(GONE in line for line in run.err) == 1
    # Progress went on after the daemon came back, up to the end.
    assert any(line.startswith("progress: 16/16 done") for line in run.err[gone + 1:])


@pytest.mark.timeout(240)
def test_batch_run_gives_up_on_a_daemon_that_stays_away(home: Path, daemons) -> None:
    with _batch_whose_daemon_went_away(home, daemons) as (run, bid):
        # Without a daemon the client gives up after REATTACH_WAIT s (not forever).
        code, out = run.finish(REATTACH_WAIT + 60)
    assert code == 3, "".join(run.err)   # the daemon went away: not the batch's failure
    last = run.err[-1]
    assert last.startswith("flowmetal batch: the daemon did not come back"), last
    assert f"`flowmetal batch status {bid}`" in last
    assert f"flowmetal daemon --home {home}" in last
    assert sum(GONE in line for line in run.err) == 1
    # The batch is durable: it is there to check on, and a new daemon finishes it.
    p = fm(home, "batch", "status", bid, "--json")
    assert p.returncode == 0 and json.loads(p.stdout)["state"] not in ("ok", "err")
    daemons()
    from store import Store
    st = Store.open(home, sync=False)
    try:
        deadline = time.monotonic() + 120
        while st.get_batch(bid).state != "ok":
            assert time.monotonic() < deadline, st.get_batch(bid)
            time.sleep(0.1)
    finally:
        st.close()


def test_batch_refuses_an_undeclared_default_arg(home: Path, daemon) -> None:
    inputs = _items(home, [1, 2])
    p = fm(home, "batch", MIXED, "--inputs", inputs, "--flow", "main", "--arg", "nope=1")
    assert p.returncode == 2, p.stderr
    assert p.stderr == ("flowmetal batch: flow main has no argument 'nope' "
                        "(declared: i, t)\n")
    assert p.stdout == ""
    # Refused by the daemon, for any client, before a batch exists.
    from flowmetal.daemon.client import Client, DaemonError
    with Client.connect(home) as c:
        with pytest.raises(DaemonError) as e:
            c.call("batch_create", file=MIXED, source=Path(MIXED).read_text(),
                   flow="main", args={"t": "0", "nope": "1"}, items=[{"i": 1}],
                   concurrency=1)
    assert e.value.kind == "usage" and "no argument 'nope'" in str(e.value)
    assert json.loads(fm(home, "batch", "list", "--json").stdout) == []


def test_batch_refuses_a_default_arg_of_the_wrong_type_up_front(home: Path, daemon) -> None:
    # Review: it was found only when each item ran, failing every one of them.
    inputs = _items(home, [1, 2])
    p = fm(home, "batch", MIXED, "--inputs", inputs, "--flow", "main", "--arg", "t=soon")
    assert p.returncode == 2, p.stderr
    assert p.stderr == "flowmetal batch: --arg t=soon: not a valid float\n"
    assert json.loads(fm(home, "batch", "list", "--json").stdout) == []
