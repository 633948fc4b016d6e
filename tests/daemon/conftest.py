"""Fixtures for the daemon tests: real daemon processes, always killed afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).parent
CLI = [sys.executable, "-m", "flowmetal"]


def env_for(home: Path) -> dict:
    env = dict(os.environ)
    env["FLOWMETAL_HOME"] = str(home)
    env["FLOWMETAL_SYNC"] = "0"   # a killed process loses nothing either way
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def fm(home: Path, *args: str, timeout: float = 60, input: str | None = None
       ) -> subprocess.CompletedProcess:
    """Run one CLI command to completion."""
    return subprocess.run(CLI + list(args), env=env_for(home), capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, input=input)


class DaemonProc:
    """A `flowmetal daemon` subprocess in its own process group."""

    def __init__(self, home: Path, workers: int = 2, nofile: tuple[int, int] | None = None):
        self.home = home
        self.workers = workers
        self.nofile = nofile   # (soft, hard) limit on open files to start it with
        self.proc: subprocess.Popen | None = None

    def _limits(self) -> None:
        if self.nofile is not None:
            import resource
            resource.setrlimit(resource.RLIMIT_NOFILE, self.nofile)

    def start(self, wait: bool = True) -> "DaemonProc":
        self.proc = subprocess.Popen(
            CLI + ["daemon", "--home", str(self.home), "--workers", str(self.workers)],
            env=env_for(self.home), cwd=ROOT, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True, start_new_session=True,
            preexec_fn=self._limits if self.nofile else None)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        from flowmetal.daemon.client import Client, DaemonNotRunning
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}: "
                                     f"{self.proc.stderr.read()}")
            try:
                with Client.connect(self.home) as c:
                    if c.ping()["pid"] == self.proc.pid:
                        return
            except (DaemonNotRunning, OSError):
                pass
            time.sleep(0.05)
        raise AssertionError("daemon did not come up")

    def kill9(self) -> None:
        """SIGKILL the daemon alone (its workers notice and exit by themselves)."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                pass
        # Anything left in its group (workers, commands) goes too.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc.stderr:
            self.proc.stderr.close()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    # Unix socket paths are short (108 bytes): keep the home near the root.
    import tempfile
    d = Path(tempfile.mkdtemp(prefix="fmd-", dir="/tmp"))
    yield d
    import shutil
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def daemons(home: Path):
    """A factory of daemons on `home`; every one is stopped at the end."""
    made: list[DaemonProc] = []

    def make(workers: int = 2, start: bool = True, wait: bool = True,
             nofile: tuple[int, int] | None = None) -> DaemonProc:
        d = DaemonProc(home, workers, nofile)
        made.append(d)
        if start:
            d.start(wait=wait)
        return d
    yield make
    for d in made:
        d.stop()


@pytest.fixture
def daemon(daemons):
    return daemons()
