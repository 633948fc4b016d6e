"""Helpers for the tests that drive real processes: foreground `flowmetal run`s they
kill, commands they expect to die, files their flows append to."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterator


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, killed but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def assert_dies(pid: int, what: str, timeout: float = 10) -> None:
    """Wait up to `timeout` s for `pid` to stop running; fail with `what` if it does not."""
    deadline = time.monotonic() + timeout
    while alive(pid):
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def wait_for(pred: Callable[[], bool], timeout: float = 30) -> None:
    """Poll `pred` until it holds (or `timeout` s pass: the caller's asserts then tell)."""
    deadline = time.monotonic() + timeout
    while not pred() and time.monotonic() < deadline:
        time.sleep(0.02)


def _whole_lines(path: Path) -> str:
    """What `path` holds up to its last newline ("" while it does not exist). A reader
    may see a line its writer has only partly written ("start 12" of "start 1234"):
    the words of a line count once its newline is there."""
    text = path.read_text() if path.exists() else ""
    return text[:text.rfind("\n") + 1]


def words_in(path: Path) -> list[str]:
    """The whitespace-separated words of `path`'s whole lines (none yet: []). A shell's
    `>>` makes the file before it writes: wait for the words, not for the file."""
    return _whole_lines(path).split()


def numbers_in(path: Path) -> list[int]:
    """The whitespace-separated integers of the whole lines a flow appended to `path`
    (none yet: [])."""
    return [int(x) for x in _whole_lines(path).split()]


@contextlib.contextmanager
def foreground_run(argv: list[str], env: dict, cwd: Path | None = None
                   ) -> Iterator[tuple[subprocess.Popen, str]]:
    """Start `flowmetal run ...` (`argv`) in a session of its own; yields the process
    and the run id it announced, and SIGKILLs its whole group on the way out."""
    p = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        line = p.stderr.readline()
        assert line.startswith("run "), line + p.stderr.read()
        yield p, line.split()[1]
    finally:
        kill_group(p)


def kill_group(p: subprocess.Popen) -> None:
    """SIGKILL the process's group (it leads one) and reap it."""
    if p.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait(10)
