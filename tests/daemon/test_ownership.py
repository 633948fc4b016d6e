"""A daemon and a foreground `flowmetal run` on one home: the run stays with the
process that runs it, and a cancel through the daemon still ends it."""

from __future__ import annotations

import time
from pathlib import Path

from ..procs import assert_dies, foreground_run, numbers_in, wait_for, words_in
from .conftest import CLI, ROOT, env_for, fm

SLOW = ROOT / "tests" / "actors" / "slow_steps.flow"


def _run_argv(home: Path, out: Path, n: int, gate: Path | None = None) -> list[str]:
    return CLI + ["run", str(SLOW), "--flow", "steps", "--arg", f"n={n}",
                  "--arg", f"path={out}", "--arg", f"gate={gate or ''}", "--home", str(home)]


def test_a_daemon_leaves_a_foreground_run_alone_and_cancel_through_it_ends_the_run(
        home: Path, daemons, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    with foreground_run(_run_argv(home, out, 400), env_for(home), ROOT) as (p, rid):
        wait_for(lambda: len(numbers_in(out)) >= 2)
        daemons()   # recovers the live runs of the home, but not this one
        time.sleep(1.0)
        steps = numbers_in(out)
        assert len(steps) == len(set(steps)), f"a step ran twice: {steps}"
        r = fm(home, "cancel", rid)
        assert r.returncode == 0, r.stderr
        stdout, stderr = p.communicate(timeout=30)
        assert p.returncode == 1, stderr
        assert stdout.strip().endswith('Err("cancelled")'), stdout
        steps = numbers_in(out)
        assert len(steps) == len(set(steps)) and len(steps) < 400, steps


def test_resume_through_a_daemon_takes_over_a_run_whose_process_died(
        home: Path, daemons, tmp_path: Path) -> None:
    # Its second step waits for `gate`, made only after the refusal: however slow the
    # machine, the run is still running (and owned) when the resume is refused.
    out, gate = tmp_path / "out.txt", tmp_path / "gate"
    with foreground_run(_run_argv(home, out, 20, gate), env_for(home), ROOT) as (p, rid):
        wait_for(lambda: len(numbers_in(out)) >= 2)
        daemons()
        r = fm(home, "resume", rid)
        assert r.returncode == 1 and f"being run by process {p.pid}" in r.stderr, r.stderr
    gate.touch()
    r = fm(home, "resume", rid, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("Ok(20)"), r.stdout
    steps = numbers_in(out)
    assert sorted(set(steps)) == list(range(20)) and len(steps) <= 21, steps


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
    wait_for(lambda: len(words_in(out)) >= 2)
    first = int(words_in(out)[1])
    d.kill9()
    assert_dies(first, "the command outlived the daemon's workers", timeout=15)
    dur.write_text("0")
    daemons(workers=2)
    r = fm(home, "resume", rid, timeout=120)
    assert r.returncode == 0 and r.stdout.strip().endswith("Ok(0)"), (r.stdout, r.stderr)
    assert [l.split()[0] for l in out.read_text().splitlines()] == ["start", "start", "end"]


def test_a_daemon_carries_on_a_run_whose_foreground_process_was_killed(
        home: Path, daemons, tmp_path: Path) -> None:
    import json
    out = tmp_path / "out.txt"
    daemons()
    with foreground_run(_run_argv(home, out, 12), env_for(home), ROOT) as (p, rid):
        wait_for(lambda: len(numbers_in(out)) >= 2)
    # The `with` SIGKILLed it: no one resumes the run by hand, yet it ends.
    def state() -> str:
        return json.loads(fm(home, "status", rid, "--json").stdout)["state"]
    wait_for(lambda: state() == "ok", timeout=60)
    assert state() == "ok"
    steps = numbers_in(out)
    assert sorted(set(steps)) == list(range(12)) and len(steps) <= 13, steps
    assert not (home / "owners" / rid).exists()   # its claim went with its end
