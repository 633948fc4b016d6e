"""The command warden: an owner's commands stop when the owner ends without a
goodbye, and only then."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from actors.warden import CommandWarden, guarded_pids

from ..procs import alive, assert_dies, wait_for


def _guarded(warden: CommandWarden, script: str) -> subprocess.Popen:
    return subprocess.Popen(["sh", "-c", script], env=dict(os.environ, **warden.env()),
                            start_new_session=True)


def test_close_stops_what_is_left_of_the_commands() -> None:
    # A graceful stop has signalled its commands' groups; a descendant that left its
    # group (setsid) still carries the token, and closing the warden stops it.
    w = CommandWarden(grace=0.3)
    p = _guarded(w, "exec sleep 300")
    try:
        # Popen returns once `sh` runs; its own exec of `sleep` blanks the
        # environment in /proc for an instant, so wait until the token shows.
        wait_for(lambda: guarded_pids(w.token) == [p.pid], 10)
        assert guarded_pids(w.token) == [p.pid]
        w.close()
        assert_dies(p.pid, "closing the warden left a guarded process running")
        assert guarded_pids(w.token) == []
    finally:
        p.kill()
        p.wait()


def test_the_owners_end_stops_its_commands_sigkill_after_the_grace(tmp_path) -> None:
    # The owner is a separate process that starts a warden and a command ignoring
    # SIGTERM, then dies by SIGKILL, saying nothing. (A grace of 3 s and a file the
    # command writes once its trap is set: a loaded machine must not make the TERM
    # arrive before the trap, or the check of "still alive" come after the grace.)
    ready = tmp_path / "trapped"
    owner = subprocess.Popen([sys.executable, "-c", """
import os, subprocess, sys
from actors.warden import CommandWarden
w = CommandWarden(grace=3.0)
p = subprocess.Popen(["sh", "-c", "trap '' TERM; echo > " + sys.argv[1] + "; sleep 300 & wait"],
                     env=dict(os.environ, **w.env()), start_new_session=True)
print(p.pid, w._proc.pid, flush=True)
sys.stdin.read()
""", str(ready)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        command, warden = map(int, owner.stdout.readline().split())
        wait_for(ready.exists, 30)
        time.sleep(0.2)   # the token shows in /proc once sh has run a moment
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
        time.sleep(0.2)
        assert alive(command)      # SIGTERM is ignored...
        assert_dies(command, "the command outlived its owner", 20)   # ...SIGKILL is not
        assert_dies(warden, "the warden did not exit")
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()


def test_a_process_caught_mid_exec_is_not_taken_for_gone(monkeypatch) -> None:
    # A scan that finds nothing is checked by a second one: an execve in progress
    # shows an empty environment, and the stop must not end on that one reading.
    from actors import warden
    scans = iter([[], [4242], [], []])
    signalled = []
    monkeypatch.setattr(warden, "guarded_pids", lambda token: next(scans))
    monkeypatch.setattr(warden, "_signal_all", lambda pids, sig: signalled.append((pids, sig)))
    warden.stop_guarded("t", grace=1)
    assert signalled == [([4242], signal.SIGTERM)]
