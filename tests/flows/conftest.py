"""Fixtures for the end-to-end flow tests: CLI runs in real processes, a loopback HTTP
server, homes with short paths (the daemon's socket path is limited)."""

from __future__ import annotations

import http.server
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FILES = Path(__file__).parent / "files"
CLI = [sys.executable, "-m", "flowmetal"]


def env_for(home: Path, extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env["FLOWMETAL_HOME"] = str(home)
    env["FLOWMETAL_SYNC"] = "0"   # a killed process loses nothing either way
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


def fm(home: Path, *args: str, timeout: float = 60, env: dict | None = None
       ) -> subprocess.CompletedProcess:
    """Run one CLI command to completion."""
    return subprocess.run(CLI + list(args), env=env_for(home, env), capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


class Background:
    """A CLI command in its own process group, its stdout read line by line."""

    def __init__(self, home: Path, *args: str, env: dict | None = None):
        self.proc = subprocess.Popen(CLI + list(args), env=env_for(home, env), cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, start_new_session=True)
        self.lines: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_line(self, predicate, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no such line within {timeout} s; saw {self.seen}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"process ended first; saw {self.seen}; stderr: "
                                     f"{self.proc.stderr.read()}")
            self.seen.append(line)
            if predicate(line):
                return line

    def kill9(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)

    def finish(self, timeout: float = 60) -> tuple[int, list[str]]:
        self.proc.wait(timeout)
        while True:
            line = self.lines.get(timeout=10)
            if line is None:
                break
            self.seen.append(line)
        return self.proc.returncode, self.seen


def run_ids(home: Path) -> list[str]:
    r = fm(home, "list", "--json")
    assert r.returncode == 0, r.stderr
    return [row["id"] for row in json.loads(r.stdout)]


@pytest.fixture
def home():
    d = Path(tempfile.mkdtemp(prefix="fmf-", dir="/tmp"))
    d.chmod(0o700)
    yield d
    shutil.rmtree(d, ignore_errors=True)


class _Echo(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):  # keep test output clean
        pass

    def do_GET(self):
        out = json.dumps({"path": self.path, "auth": self.headers.get("Authorization")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        try:
            self.wfile.write(out)
        except OSError:
            pass


@pytest.fixture
def echo_server():
    """An HTTP server on 127.0.0.1 that echoes the Authorization header it got."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    srv.seen_auth = []
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
