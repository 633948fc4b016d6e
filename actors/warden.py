"""CommandWarden: a process's commands stop when that process dies, however it dies.

A graceful stop of a runtime stops its running commands itself
(`ExecActor.shutdown`). A `kill -9` of the process that hosts the runtime (the
foreground `flowmetal run`, a worker process) cannot: its commands would run on,
orphaned, while `resume` issues their actions again — two copies of one step
running side by side.

So the first command a process runs starts a warden next to it: a small process
(this file, run by path with only the standard library, so it starts in
milliseconds) that reads a pipe from its owner. The kernel closes that pipe however
the owner ends (a graceful stop closes it too, once it has stopped its commands);
at end-of-file the warden looks for what is left of the owner's commands — every
process whose environment carries the owner's token,
``FLOWMETAL_WARDEN=<token>``, which each command is started with and its children
inherit — and stops their process groups: SIGTERM, then SIGKILL to what is left
after the grace period. A command that clears its environment or leaves its process
group and changes its environment escapes it.

The warden runs in a session of its own and ignores SIGINT and SIGHUP: a Ctrl-C
or a closed terminal goes to its owner, whose graceful stop handles the commands.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from typing import IO

ENV = "FLOWMETAL_WARDEN"


class CommandWarden:
    """The owner's side: `env()` (the variables a command is started with, starting
    the warden on first use) and `close()` (stop what is left, and the warden)."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.token = uuid.uuid4().hex
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._closed = False

    def env(self) -> dict[str, str]:
        """The environment entries that put a command under this warden. If the warden
        cannot be started, commands run unguarded rather than not at all."""
        with self._lock:
            if self._proc is None and not self._closed:
                try:
                    self._proc = subprocess.Popen(
                        [sys.executable, "-I", "-S", __file__, self.token, str(self.grace)],
                        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL, start_new_session=True,
                        # Not under an outer warden (a flowmetal run inside a
                        # command): its sweep must not stop this one.
                        env={k: v for k, v in os.environ.items() if k != ENV})
                except OSError:
                    self._closed = True
        return {ENV: self.token}

    def close(self) -> None:
        """End the warden, which first stops whatever still carries the token (a
        descendant that left its command's process group, say), and reap it."""
        with self._lock:
            self._closed = True
            proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(self.grace + 5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------- the warden process

def guarded_pids(token: str) -> list[int]:
    """The processes whose environment carries ``FLOWMETAL_WARDEN=token``."""
    mark = f"\0{ENV}={token}\0".encode()
    me = os.getpid()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if mark in b"\0" + f.read() + b"\0":
                    found.append(int(name))
        except OSError:   # gone meanwhile, or not ours to read
            continue
    return found


def _signal_all(pids: list[int], sig: int) -> None:
    own_group = os.getpgrp()
    for pid in pids:
        try:
            pgid = os.getpgid(pid)
            if pgid != own_group:
                os.killpg(pgid, sig)   # the command's whole group: its children too
            else:
                os.kill(pid, sig)
        except OSError:
            continue


def _scan(token: str) -> list[int]:
    """`guarded_pids`, but "none" only when two scans a moment apart agree: a process
    in the middle of an execve shows an empty environment for an instant."""
    pids = guarded_pids(token)
    if not pids:
        time.sleep(0.02)
        pids = guarded_pids(token)
    return pids


def stop_guarded(token: str, grace: float) -> None:
    """SIGTERM every guarded process's group; SIGKILL whatever is left after `grace`."""
    pids = _scan(token)
    if not pids:
        return
    _signal_all(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        time.sleep(0.05)
        pids = _scan(token)
        if not pids:
            return
    # Rescanned, so that a process forked meanwhile is not missed.
    for _ in range(3):
        _signal_all(pids, signal.SIGKILL)
        time.sleep(0.05)
        pids = _scan(token)
        if not pids:
            return


def _watch(stdin: IO[bytes], token: str, grace: float) -> None:
    stdin.read()   # until end-of-file: the owner has gone or is closing
    stop_guarded(token, grace)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    _watch(sys.stdin.buffer, sys.argv[1], float(sys.argv[2]))
