"""A daemon and a foreground `flowmetal run` on one home: the run stays with the
process that runs it, and a cancel through the daemon still ends it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from .conftest import CLI, ROOT, env_for, fm

SLOW = ROOT / "tests" / "actors" / "slow_steps.flow"


def _start_run(home: Path, out: Path, n: int) -> tuple[subprocess.Popen, str]:
    p = subprocess.Popen(CLI + ["run", str(SLOW), "--flow", "steps", "--arg", f"n={n}",
                                "--arg", f"path={out}", "--home", str(home)],
                         env=env_for(home), cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    line = p.stderr.readline()
    assert line.startswith("run "), line + p.stderr.read()
    return p, line.split()[1]


def _steps_done(out: Path) -> list[int]:
    return [int(x) for x in out.read_text().split()] if out.exists() else []


def test_a_daemon_leaves_a_foreground_run_alone_and_cancel_through_it_ends_the_run(
        home: Path, daemons, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    p, rid = _start_run(home, out, 400)
    try:
        deadline = time.monotonic() + 30
        while len(_steps_done(out)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        daemons()   # recovers the live runs of the home, but not this one
        time.sleep(1.0)
        steps = _steps_done(out)
        assert len(steps) == len(set(steps)), f"a step ran twice: {steps}"
        r = fm(home, "cancel", rid)
        assert r.returncode == 0, r.stderr
        stdout, stderr = p.communicate(timeout=30)
        assert p.returncode == 1, stderr
        assert stdout.strip().endswith('Err("cancelled")'), stdout
        steps = _steps_done(out)
        assert len(steps) == len(set(steps)) and len(steps) < 400, steps
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)


def test_resume_through_a_daemon_takes_over_a_run_whose_process_died(
        home: Path, daemons, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    p, rid = _start_run(home, out, 20)
    try:
        deadline = time.monotonic() + 30
        while len(_steps_done(out)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        daemons()
        r = fm(home, "resume", rid)
        assert r.returncode == 1 and f"being run by process {p.pid}" in r.stderr, r.stderr
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(10)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)
    r = fm(home, "resume", rid, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("Ok(20)"), r.stdout
    steps = _steps_done(out)
    assert sorted(set(steps)) == list(range(20)) and len(steps) <= 21, steps


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_killed_daemons_commands_stop_with_its_workers_and_run_again_once(
        home: Path, daemons, tmp_path: Path) -> None:
    flow = ROOT / "tests" / "actors" / "napping.flow"
    out, dur = tmp_path / "out.txt", tmp_path / "dur.txt"
    dur.write_text("30")
    d = daemons(workers=2)
    r = fm(home, "submit", str(flow), "--flow", "nap", "--arg", f"out={out}",
           "--arg", f"dur={dur}")
    assert r.returncode == 0, r.stderr
    rid = r.stdout.split()[-1]
    deadline = time.monotonic() + 30
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    first = int(out.read_text().split()[1])
    d.kill9()
    deadline = time.monotonic() + 15
    while _pid_alive(first) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _pid_alive(first), "the command outlived the daemon's workers"
    dur.write_text("0")
    daemons(workers=2)
    r = fm(home, "resume", rid, timeout=120)
    assert r.returncode == 0 and r.stdout.strip().endswith("Ok(0)"), (r.stdout, r.stderr)
    assert [l.split()[0] for l in out.read_text().splitlines()] == ["start", "start", "end"]
