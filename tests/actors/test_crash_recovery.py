"""Crash recovery with real SIGKILLs: runs killed at random points and resumed.

The flow of 20 sequential exec steps appends one line per step to a file. After any
number of `kill -9`s and `flowmetal resume`s, every step is in the file at least once
and at most twice — twice only for a step in flight at a kill, and then adjacently —
and the final Result is right.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent
STEPS = HERE / "steps20.flow"
FLOWMETAL = [sys.executable, "-c", "from flowmetal.cli import main; main()"]


def _env(home: Path, sync: bool = False) -> dict:
    env = dict(os.environ)
    env["FLOWMETAL_HOME"] = str(home)
    # Off unless a test is about syncing: a killed process loses nothing either way.
    env["FLOWMETAL_SYNC"] = "1" if sync else "0"
    return env


def _start(args: list[str], home: Path, sync: bool = False) -> subprocess.Popen:
    return subprocess.Popen(FLOWMETAL + args, env=_env(home, sync), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_started(p: subprocess.Popen, timeout: float = 30) -> str | None:
    """Read stderr until the `run <id>` line; the run id (None if it exited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = p.stderr.readline()
        if not line:
            return None
        if line.startswith("run "):
            return line.split()[1]
    raise AssertionError("no `run <id>` line on stderr")


def _check_file(path: Path, kills: int) -> None:
    lines = path.read_text().splitlines() if path.exists() else []
    steps = [int(l.split()[1]) for l in lines]
    dedup = [s for i, s in enumerate(steps) if i == 0 or steps[i - 1] != s]
    assert dedup == list(range(20)), f"steps out of order or missing: {steps}"
    dups = len(steps) - len(dedup)
    assert dups <= kills, f"{dups} duplicated steps after {kills} kills: {steps}"
    # Each kill can repeat only the step in flight at that moment, so a step
    # runs at most once plus once per kill that landed while it was in flight.
    for s in range(20):
        limit = 2 if kills == 1 else 1 + kills
        assert steps.count(s) <= limit, f"step {s} ran {steps.count(s)} times after {kills} kills: {steps}"


@pytest.mark.timeout(240)
def test_sigkill_at_random_points_then_resume(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("FLOWMETAL_CRASH_SEED", "0")) or None)
    total_kills = 0
    scenario = 0
    # Until enough kills landed (a kill after the run ended does not count), within
    # the test's timeout: a slow machine takes longer, it does not kill less.
    deadline = time.monotonic() + 200
    while total_kills < 22 and time.monotonic() < deadline:
        scenario += 1
        home = tmp_path / f"home{scenario}"
        out = tmp_path / f"out{scenario}.txt"
        p = _start(["run", str(STEPS), "--flow", "steps", "--arg", f"path={out}"], home)
        run_id = _wait_started(p)
        assert run_id
        time.sleep(rng.uniform(0.0, 0.25))   # the run takes ~0.2-0.5 s
        kills = 0
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            kills += 1
        p.communicate()
        # Resume, killing the resumer too now and then, until a resume completes.
        while True:
            p = _start(["resume", run_id], home)
            assert _wait_started(p) == run_id
            if kills < 4 and rng.random() < 0.5:
                time.sleep(rng.uniform(0.0, 0.3))
                if p.poll() is None:
                    p.send_signal(signal.SIGKILL)
                    kills += 1
                    p.communicate()
                    continue
            stdout, stderr = p.communicate(timeout=60)
            break
        assert p.returncode == 0, stderr
        assert stdout.splitlines()[-1] == "Ok(190)"
        assert stdout.count("total 190") == 1, stdout
        _check_file(out, kills)
        total_kills += kills
    assert total_kills >= 20, f"only {total_kills} kills in the time allowed"


CALLS = HERE / "calls2000.flow"


@pytest.mark.timeout(240)
def test_sigkill_during_inline_calls_with_fsync_on_loses_and_repeats_nothing(
        tmp_path: Path) -> None:
    """A flow calling 2,000 flows that print, with fsync on (so its calls commit
    quietly, and a lone flow goes on while each commit syncs), killed at random
    points and resumed: every call printed exactly once, in order, and the right
    Result. (A kill -9 keeps what the kernel has; only a power loss could take back
    a quiet commit.)"""
    rng = random.Random(int(os.environ.get("FLOWMETAL_CRASH_SEED", "0")) or None)
    kills = 0
    scenario = 0
    deadline = time.monotonic() + 150
    while kills < 8 and time.monotonic() < deadline:
        scenario += 1
        home = tmp_path / f"home{scenario}"
        p = _start(["run", str(CALLS), "--flow", "calls"], home, sync=True)
        run_id = _wait_started(p)
        assert run_id
        time.sleep(rng.uniform(0.05, 0.5))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            kills += 1
        p.communicate()
        r = subprocess.run(FLOWMETAL + ["resume", run_id], env=_env(home, sync=True),
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[-1] == f"Ok({sum(range(2000))})", lines[-3:]
        assert lines[:-1] == [f"call {k}" for k in range(2000)], \
            [ln for ln in lines[:-1] if lines[:-1].count(ln) > 1][:5]
    assert kills >= 5, f"only {kills} kills landed in the time allowed"
